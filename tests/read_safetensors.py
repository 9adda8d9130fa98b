"""Read a safetensors file with json and numpy only and compare it to expected values.

Usage: read_safetensors.py FILE EXPECTED_JSON

EXPECTED_JSON contains {"metadata": {key: value}, "tensors": {name: {"dtype": "F32",
"shape": [2, 3], "values": [...]}}}, with the values flattened in row-major order.
The script checks the file's layout on its own (header length, contiguous offsets
that cover the data section) and compares every tensor exactly, so it serves as an
independent reader for the C++ writer's tests. It exits with 0 when the file
matches, 1 with one line per mismatch when it does not, and 2 when the file cannot
be read.
"""

import json
import struct
import sys

import numpy as np

# Little-endian numpy types of the safetensors dtypes. BF16 has no numpy type and
# is decoded by hand below.
NUMPY_TYPES = {
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "I8": "i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "?",
}
SIZES = {name: np.dtype(code).itemsize for name, code in NUMPY_TYPES.items()}
SIZES["BF16"] = 2


def read_file(path):
    """Parse the file into (metadata, {name: (dtype, shape, array)})."""
    with open(path, "rb") as stream:
        content = stream.read()
    if len(content) < 8:
        raise ValueError(f"file has {len(content)} bytes, fewer than the 8-byte length")
    (header_length,) = struct.unpack("<Q", content[:8])
    if 8 + header_length > len(content):
        raise ValueError(f"header length {header_length} exceeds the file size {len(content)}")
    header = json.loads(content[8 : 8 + header_length].decode("utf-8"))
    data = content[8 + header_length :]

    metadata = header.pop("__metadata__", {})
    tensors = {}
    position = 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, end = entry["data_offsets"]
        if begin != position:
            raise ValueError(f"{name}: data starts at {begin}, expected {position}")
        dtype, shape = entry["dtype"], entry["shape"]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end - begin != count * SIZES[dtype]:
            raise ValueError(f"{name}: {end - begin} bytes for shape {shape} of {dtype}")
        raw = data[begin:end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=NUMPY_TYPES[dtype])
        tensors[name] = (dtype, shape, array.reshape(shape))
        position = end
    if position != len(data):
        raise ValueError(f"tensors cover {position} of {len(data)} data bytes")
    return metadata, tensors


def compare(metadata, tensors, expected):
    """Return a list of differences between the file and the expectation."""
    problems = []
    if metadata != expected["metadata"]:
        problems.append(f"metadata {metadata!r}, expected {expected['metadata']!r}")
    expected_tensors = expected["tensors"]
    for name in sorted(set(tensors) | set(expected_tensors)):
        if name not in tensors:
            problems.append(f"{name}: expected, but not in the file")
            continue
        if name not in expected_tensors:
            problems.append(f"{name}: in the file, but not expected")
            continue
        dtype, _, array = tensors[name]
        expected_tensor = expected_tensors[name]
        if dtype != expected_tensor["dtype"]:
            problems.append(f"{name}: dtype {dtype}, expected {expected_tensor['dtype']}")
        shape = list(array.shape)
        if shape != expected_tensor["shape"]:
            problems.append(f"{name}: shape {shape}, expected {expected_tensor['shape']}")
        # tolist() turns every element into a Python bool, int or float (float16
        # and float32 widen to double exactly), so == compares exact values.
        values = array.reshape(-1).tolist()
        if values != expected_tensor["values"]:
            problems.append(f"{name}: values {values}, expected {expected_tensor['values']}")
    return problems


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        metadata, tensors = read_file(sys.argv[1])
    except (OSError, ValueError, KeyError, TypeError) as failure:
        print(f"{sys.argv[1]}: cannot read: {failure}", file=sys.stderr)
        return 2
    with open(sys.argv[2], encoding="utf-8") as stream:
        expected = json.load(stream)
    problems = compare(metadata, tensors, expected)
    for problem in problems:
        print(f"{sys.argv[1]}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
