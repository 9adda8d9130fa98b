#!/usr/bin/python3
"""Checks advgan's FID InceptionV3 against PyTorch with random weights.

1. Builds torchvision's inception_v3 (weights=None, aux_logits=False,
   init_weights=True) from a fixed seed and turns its Mixed blocks into the
   FID variants: average pools that leave the padding out of the mean in
   Mixed_5b-5d, 6b-6e and 7b, and a 3 x 3 max pool in Mixed_7c's pool branch.
2. Gives every batch norm random scales and shifts, and running statistics
   measured on the test images and then perturbed, so that no batch norm is
   an identity and the activations stay of order one through all layers.
3. Saves the state_dict (fc.* included), converts it with
   scripts/convert_inception_weights.py, and runs the C++ program
   tests/interop/inception_features.cpp on 4 grayscale 28 x 28 and 4 RGB
   32 x 32 images.
4. Compares advgan's features with PyTorch's, computed in float64 the way
   pytorch-fid does (bilinear resize to 299 x 299, then 2x - 1), as
   max|a - b| / max|b|: the float32 extractor to 1e-4, the float64 network to
   1e-9.

usage: inception_interop.py FEATURE_PROGRAM WORK_DIR
"""

import json
import pathlib
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import inception as tv_inception

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import convert_inception_weights  # noqa: E402

FLOAT_TOLERANCE = 1e-4
DOUBLE_TOLERANCE = 1e-9
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    blob = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    data = blob[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=DTYPES[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"]).copy()
    return tensors


class FidInceptionA(tv_inception.InceptionA):
    """InceptionA whose pool branch leaves the padding out of the average."""

    def _forward(self, x):
        pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(pool),
        ]


class FidInceptionC(tv_inception.InceptionC):
    """InceptionC whose pool branch leaves the padding out of the average."""

    def _forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), branch7x7, double, self.branch_pool(pool)]


class FidInceptionE(tv_inception.InceptionE):
    """InceptionE with the pool branch of Mixed_7b (max_pool=False) or Mixed_7c (True)."""

    max_pool = False

    def _forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        if self.max_pool:
            pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), branch3x3, double, self.branch_pool(pool)]


class FidInceptionE2(FidInceptionE):
    max_pool = True


FID_BLOCKS = {
    "Mixed_5b": FidInceptionA,
    "Mixed_5c": FidInceptionA,
    "Mixed_5d": FidInceptionA,
    "Mixed_6b": FidInceptionC,
    "Mixed_6c": FidInceptionC,
    "Mixed_6d": FidInceptionC,
    "Mixed_6e": FidInceptionC,
    "Mixed_7b": FidInceptionE,
    "Mixed_7c": FidInceptionE2,
}

TORCHVISION_BLOCKS = {
    name: tv_inception.InceptionA if name.startswith("Mixed_5")
    else tv_inception.InceptionC if name.startswith("Mixed_6")
    else tv_inception.InceptionE
    for name in FID_BLOCKS
}


def set_blocks(model, block_classes):
    """Switch the Mixed blocks of `model` to other classes with the same parameters."""
    for name, block_class in block_classes.items():
        getattr(model, name).__class__ = block_class


FEATURE_LAYERS = [
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
    "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
    "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
]


def pool_features(model, images01):
    """Return pytorch-fid's features of images in [0, 1]: resize, 2x - 1, blocks, mean."""
    if images01.shape[1] == 1:
        images01 = images01.repeat(1, 3, 1, 1)
    x = F.interpolate(images01, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    for name in FEATURE_LAYERS:
        x = getattr(model, name)(x)
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def build_model(calibration_sets):
    """Return the FID InceptionV3 with random weights and batch-norm statistics."""
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
    set_blocks(model, FID_BLOCKS)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in batch_norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
        model.train()
        for images in calibration_sets:
            pool_features(model, images)
        for bn in batch_norms:
            bn.momentum = 0.1
            bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.2 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.4))
    return model.eval()


def relative_error(computed, reference):
    return float(np.max(np.abs(computed - reference)) / np.max(np.abs(reference)))


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    program, work = sys.argv[1], pathlib.Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)

    # Images in [-1, 1], as float32 values; PyTorch gets (v + 1) / 2 in [0, 1].
    generator = torch.Generator().manual_seed(1)
    images = {
        "gray28": (torch.rand(4, 1, 28, 28, generator=generator) * 2 - 1),
        "rgb32": (torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1),
    }
    images01 = {name: (value.double() + 1) / 2 for name, value in images.items()}

    model = build_model([value.float() for value in images01.values()])
    state_path = work / "inception_state.pth"
    torch.save(model.state_dict(), state_path)
    weights_path = work / "inception.safetensors"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_inception_weights.py"), str(state_path), str(weights_path)],
        check=True,
    )
    convert_inception_weights.write_safetensors(
        work / "images.safetensors", {f"images.{name}": value.numpy() for name, value in images.items()}
    )
    subprocess.run([program, str(weights_path), str(work / "images.safetensors"), str(work / "features.safetensors")],
                   check=True)
    computed = read_safetensors(work / "features.safetensors")

    model = model.double()
    failures = 0
    with torch.no_grad():
        for name, value in images01.items():
            reference = pool_features(model, value).numpy()
            spread = float(reference.std(axis=0).mean())
            float_error = relative_error(computed[f"features.{name}"], reference)
            double_error = relative_error(computed[f"features64.{name}"], reference)
            print(f"{name}: max|feature| {np.max(np.abs(reference)):.3g}, mean spread across images {spread:.3g}")
            print(f"{name}: float32 extractor max|a - b| / max|b| = {float_error:.3g} (bound {FLOAT_TOLERANCE})")
            print(f"{name}: float64 network   max|a - b| / max|b| = {double_error:.3g} (bound {DOUBLE_TOLERANCE})")
            if not float_error < FLOAT_TOLERANCE or not double_error < DOUBLE_TOLERANCE:
                failures += 1
            if not spread > 1e-3:
                print(f"{name}: the features hardly differ between images; the check would be weak")
                failures += 1
            # The FID blocks must matter: torchvision's own blocks give other features.
            set_blocks(model, TORCHVISION_BLOCKS)
            plain_error = relative_error(pool_features(model, value).numpy(), reference)
            set_blocks(model, FID_BLOCKS)
            print(f"{name}: torchvision's blocks differ from the FID blocks by {plain_error:.3g}")
            if not plain_error > 100 * FLOAT_TOLERANCE:
                failures += 1
    print("inception interop: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
