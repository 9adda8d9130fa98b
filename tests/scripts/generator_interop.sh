#!/usr/bin/env bash
# Trains a tiny generator with the demo, then moves it to PyTorch and a
# PyTorch generator back, comparing images (tests/interop/generator_interop.py).
# Exits with 77, which CTest reports as skipped, when python3-torch is missing.
# usage: generator_interop.sh DEMO GENERATE SCRIPT WORK
set -euo pipefail
demo=$1 generate=$2 script=$3 work=$4
if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  echo "skipped: python3-torch and python3-numpy are not installed"
  exit 77
fi
rm -rf "$work"
"$demo" --epochs 1 --limit 128 --threads 2 --out "$work/demo"
/usr/bin/python3 "$script" "$generate" "$work/demo/generator.safetensors" "$work"
