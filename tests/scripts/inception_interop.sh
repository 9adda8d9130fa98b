#!/usr/bin/env bash
# Checks the FID InceptionV3 against PyTorch with random weights
# (tests/interop/inception_interop.py). Exits with 77, which CTest reports as
# skipped, when python3-torch or python3-torchvision is missing.
# usage: inception_interop.sh FEATURE_PROGRAM SCRIPT WORK
set -euo pipefail
program=$1 script=$2 work=$3
if ! /usr/bin/python3 -c "import torch, torchvision, numpy" 2>/dev/null; then
  echo "skipped: python3-torch, python3-torchvision and python3-numpy are not all installed"
  exit 77
fi
rm -rf "$work"
/usr/bin/python3 "$script" "$program" "$work"
