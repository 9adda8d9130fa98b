#!/usr/bin/env bash
# Feeds the generate tool files that are not valid generators: each must end
# with exit status 1 and a message naming the file, never a crash.
# usage: generate_bad_files.sh GENERATE WORK
set -uo pipefail
generate=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
: > "$work/empty.safetensors"
printf 'this is not a safetensors file at all' > "$work/text.safetensors"
# A valid safetensors file with no tensors: header "{}" padded to 8 bytes.
printf '\x08\x00\x00\x00\x00\x00\x00\x00{}      ' > "$work/no_tensors.safetensors"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' > "$work/huge_header.safetensors"
# A tensor named like the generator's first layer but with the wrong shape.
header='{"0.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
printf "\\x$(printf %02x ${#header})\\x00\\x00\\x00\\x00\\x00\\x00\\x00%s" "$header" \
  > "$work/wrong_shape.safetensors"
head -c 16 /dev/zero >> "$work/wrong_shape.safetensors"
status=0
for name in empty text no_tensors huge_header wrong_shape missing; do
  path="$work/$name.safetensors"
  message=$("$generate" --generator "$path" --out "$work/$name.png" 2>&1 >/dev/null)
  code=$?
  echo "$name: exit $code: $message"
  if [[ $code -ne 1 ]]; then
    echo "FAILED: $name: exit status $code, expected 1"
    status=1
  fi
  if [[ "$message" != *"$path"* ]]; then
    echo "FAILED: $name: the message does not name $path"
    status=1
  fi
done
exit $status
