#!/bin/sh
# Feeds the fid tool folders of images it must reject: one with a file that
# is not a PNG, one with PNG files of two sizes. Each run must end with exit
# status 1 and a message naming the offending file, never a crash. An
# unknown --features name and a missing --inception-weights file must be
# rejected the same way.
# Usage: fid_bad_folders.sh FID CLASSIFIER WORK
set -eu
fid=$1
classifier=$2
work=$3

python=$(command -v /usr/bin/python3 || command -v python3 || true)
if [ -z "$python" ]; then
  echo "python3 not found; skipping"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work/not_png" "$work/mixed_sizes"
"$python" - "$work" <<'PY'
import struct
import sys
import zlib

def write_png(path, width, height):
    """Writes a black 8-bit grayscale PNG of width x height pixels."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                  chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

work = sys.argv[1]
write_png(f"{work}/not_png/a.png", 28, 28)
with open(f"{work}/not_png/b_notes.txt", "w") as notes:
    notes.write("not an image\n")
write_png(f"{work}/mixed_sizes/a.png", 28, 28)
write_png(f"{work}/mixed_sizes/b.png", 32, 32)
PY

# expect_rejection FOLDER FILE [TEXT]: fid on FOLDER must exit with 1 and
# name FILE (and TEXT, when given) on stderr.
expect_rejection() {
  status=0
  "$fid" --classifier "$classifier" "$1" "$1" >"$work/out.txt" 2>"$work/err.txt" || status=$?
  message=$(cat "$work/err.txt")
  echo "$1: exit status $status: $message"
  if [ "$status" -ne 1 ]; then
    echo "FAIL: exit status $status, expected 1"
    exit 1
  fi
  case "$message" in
    *"$2"*) ;;
    *) echo "FAIL: the message does not name $2"; exit 1 ;;
  esac
  if [ $# -ge 3 ]; then
    case "$message" in
      *"$3"*) ;;
      *) echo "FAIL: the message does not contain \"$3\""; exit 1 ;;
    esac
  fi
}

expect_rejection "$work/not_png" "$work/not_png/b_notes.txt" "not a PNG file"
expect_rejection "$work/mixed_sizes" "$work/mixed_sizes/b.png" "32 x 32"
expect_rejection "$work/mixed_sizes" "$work/mixed_sizes/a.png" "28 x 28"
status=0
"$fid" --features resnet "$work/not_png" "$work/not_png" 2>"$work/err.txt" || status=$?
message=$(cat "$work/err.txt")
echo "--features resnet: exit status $status: $message"
case "$status:$message" in
  1:*"accepted names: classifier, inception"*) ;;
  *) echo "FAIL: expected exit status 1 and the list of accepted names"; exit 1 ;;
esac
status=0
"$fid" --features inception --inception-weights "$work/no_weights.safetensors" \
  --classifier "$classifier" "$work/not_png" "$work/not_png" 2>"$work/err.txt" || status=$?
message=$(cat "$work/err.txt")
echo "--features inception with missing weights: exit status $status: $message"
case "$status:$message" in
  1:*"$work/no_weights.safetensors"*) ;;
  *) echo "FAIL: expected exit status 1 and the name of the missing weights file"; exit 1 ;;
esac
echo "both folders, the unknown extractor and the missing weights rejected"
