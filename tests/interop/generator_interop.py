#!/usr/bin/env python3
"""Moves a DCGAN generator between advgan and PyTorch and compares images.

1. Loads the generator file that advgan's demo wrote into the equivalent
   torch.nn.Sequential and checks that it reproduces advgan's images from
   the same noise, to 1e-5.
2. Builds a PyTorch generator of the same architecture with its own random
   weights and batch-norm statistics, saves it under the same names, runs
   advgan's generate tool on it and checks advgan reproduces PyTorch's
   images from the same noise, to 1e-5.

Safetensors files are read and written with json and numpy only.

usage: generator_interop.py GENERATE_TOOL ADVGAN_GENERATOR_FILE WORK_DIR
"""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch
from torch import nn

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    data = blob[8 + length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=DTYPES[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"]).copy()
    return tensors


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.array(tensors[name], order="C")  # keeps 0-d shapes, unlike ascontiguousarray
        raw = array.tobytes()
        header[name] = {"dtype": NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def dcgan_generator(width):
    """The generator of examples/dcgan_models.hpp as nn.Sequential."""
    def block(cin, cout, stride, padding):
        return [nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*block(100, 4 * width, 1, 0), *block(4 * width, 2 * width, 2, 1),
                         *block(2 * width, width, 2, 1),
                         nn.ConvTranspose2d(width, 1, 4, 2, 1, bias=False), nn.Tanh())


def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def advgan_to_pytorch(tool, generator_file, work):
    state = read_safetensors(generator_file)
    width = state["0.weight"].shape[1] // 4
    model = dcgan_generator(width)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.eval()
    dump = os.path.join(work, "advgan_images.safetensors")
    subprocess.run([tool, "--generator", generator_file, "--count", "16", "--seed", "3",
                    "--out", os.path.join(work, "advgan_images.png"), "--save-tensors", dump],
                   check=True)
    tensors = read_safetensors(dump)
    with torch.no_grad():
        torch_images = model(torch.from_numpy(tensors["latent"])).numpy()
    error = relative_error(torch_images, tensors["images"])
    print(f"advgan -> PyTorch: relative error {error:.3g} over {torch_images.size} values")
    return error


def pytorch_to_advgan(tool, width, work):
    torch.manual_seed(11)
    model = dcgan_generator(width)
    for module in model:
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
            module.num_batches_tracked.fill_(7)
    model.eval()
    generator_file = os.path.join(work, "pytorch_generator.safetensors")
    write_safetensors(generator_file, {k: v.numpy() for k, v in model.state_dict().items()})
    latent = torch.randn(16, 100, 1, 1)
    latent_file = os.path.join(work, "latent.safetensors")
    write_safetensors(latent_file, {"latent": latent.numpy()})
    dump = os.path.join(work, "pytorch_model_in_advgan.safetensors")
    subprocess.run([tool, "--generator", generator_file, "--latent", latent_file,
                    "--out", os.path.join(work, "pytorch_model_in_advgan.png"),
                    "--save-tensors", dump], check=True)
    with torch.no_grad():
        torch_images = model(latent).numpy()
    error = relative_error(read_safetensors(dump)["images"], torch_images)
    print(f"PyTorch -> advgan: relative error {error:.3g} over {torch_images.size} values")
    return error


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    tool, generator_file, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    width = read_safetensors(generator_file)["0.weight"].shape[1] // 4
    errors = [advgan_to_pytorch(tool, generator_file, work),
              pytorch_to_advgan(tool, width, work)]
    if max(errors) > 1e-5:
        print("FAILED: images differ by more than 1e-5")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
