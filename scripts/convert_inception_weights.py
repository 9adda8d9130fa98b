#!/usr/bin/python3
"""Convert PyTorch weights of the FID InceptionV3 to advgan's safetensors file.

The input is a PyTorch state_dict with torchvision's InceptionV3 names, such
as the weights that pytorch-fid publishes (pt_inception-2015-12-05-6726825d.pth,
from the GitHub releases of mseitzer/pytorch-fid) or the state_dict of a
torchvision.models.inception_v3. The output is the file that
advgan::inception_features and `fid --features inception --inception-weights
FILE` load.

The conversion
- keeps the tensors of Conv2d_* and Mixed_* (the layers up to the 2048 pool
  features) and drops the rest, such as fc.* and AuxLogits.*, listing them;
- stores floating-point tensors as F32;
- adds num_batches_tracked = 0 to every batch-norm layer that lacks it (older
  state_dicts have none, and evaluation mode never reads it).

Writing uses json and numpy only; reading the .pth file needs torch
(python3-torch on Debian).

usage: convert_inception_weights.py INPUT.pth OUTPUT.safetensors
"""

import argparse
import json
import pathlib
import struct
import sys

import numpy as np

SAFETENSORS_DTYPES = {
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64",
}

# Top-level modules whose tensors the feature extractor uses.
KEPT_PREFIXES = ("Conv2d_", "Mixed_")


def write_safetensors(path, tensors, metadata=None):
    """Write numpy arrays to a safetensors file.

    The file is an 8-byte little-endian header length, a JSON header that
    maps each name to its dtype, shape and [begin, end) byte offsets, then the
    data. Tensors follow in sorted name order, and the header is padded with
    spaces to a multiple of 8 bytes, as the reference implementation does.
    """
    header = {"__metadata__": metadata or {}}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[np.dtype(array.dtype)],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for data in chunks:
            file.write(data)


def load_state_dict(path):
    """Return the state_dict stored in a PyTorch file as a dict of tensors."""
    import torch  # imported here so that --help works without torch

    loaded = torch.load(path, map_location="cpu")
    if isinstance(loaded, torch.nn.Module):
        loaded = loaded.state_dict()
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(loaded).__name__}")
    return loaded


def convert(state_dict, source_name):
    """Return the tensors to write and the names dropped from `state_dict`."""
    tensors = {}
    dropped = []
    for name, value in state_dict.items():
        if not name.startswith(KEPT_PREFIXES):
            dropped.append(name)
            continue
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        if name.endswith("num_batches_tracked"):
            tensors[name] = np.asarray(array, dtype=np.int64).reshape(())
        elif np.issubdtype(array.dtype, np.floating):
            tensors[name] = np.ascontiguousarray(array, dtype=np.float32)
        else:
            raise ValueError(f"{source_name}: tensor {name} has dtype {array.dtype}; expected floating point")
    for name in list(tensors):
        if name.endswith(".running_mean"):
            counter = name[: -len("running_mean")] + "num_batches_tracked"
            tensors.setdefault(counter, np.zeros((), dtype=np.int64))
    if "Mixed_7c.branch_pool.conv.weight" not in tensors:
        raise ValueError(
            f"{source_name}: no tensor Mixed_7c.branch_pool.conv.weight; "
            "expected a state_dict with torchvision's InceptionV3 names"
        )
    return tensors, dropped


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=(
            "Convert a PyTorch state_dict of the FID InceptionV3 (torchvision names, such as "
            "pytorch-fid's pt_inception-2015-12-05-6726825d.pth) to the safetensors file that "
            "advgan's inception_features and `fid --features inception` load."
        ),
        epilog=(
            "example: convert_inception_weights.py pt_inception-2015-12-05-6726825d.pth "
            "inception_fid.safetensors"
        ),
    )
    parser.add_argument("input", type=pathlib.Path, help="PyTorch file with the state_dict (.pth)")
    parser.add_argument("output", type=pathlib.Path, help="safetensors file to write")
    args = parser.parse_args(argv)

    if not args.input.is_file():
        print(f"convert_inception_weights: {args.input}: file not found", file=sys.stderr)
        return 1
    try:
        state_dict = load_state_dict(args.input)
        tensors, dropped = convert(state_dict, str(args.input))
    except (ValueError, RuntimeError, OSError) as failure:
        print(f"convert_inception_weights: {failure}", file=sys.stderr)
        return 1
    metadata = {"source": args.input.name, "converter": "scripts/convert_inception_weights.py"}
    write_safetensors(args.output, tensors, metadata)
    if dropped:
        print(f"dropped {len(dropped)} tensors outside the feature layers: {', '.join(sorted(dropped))}")
    print(f"wrote {len(tensors)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
