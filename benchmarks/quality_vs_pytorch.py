#!/usr/bin/env python3
"""Best samples per CPU-minute: advgan's demo against PyTorch's DCGAN recipe.

Trains PyTorch's standard DCGAN recipe (the pytorch/examples dcgan model cut
to 32x32: transposed convolutions with batch norm and ReLU, convolutions
with batch norm and LeakyReLU 0.2, BCE, Adam(2e-4, 0.5, 0.999), batch 64)
on Fashion-MNIST padded to 32x32 for a fixed wall-clock budget at each of
several widths, then advgan's demo for the same budget and thread count.
Each run writes 10,000 samples as a uint8 IDX file of 28x28 images (PyTorch's
with batch norm in training and in evaluation mode) and a grid of the first
64 of them as PNG, and
advgan's fid tool scores them against the 10,000-image test set with the
committed Fashion-MNIST classifier (domain FID, KID, mode coverage).

usage: quality_vs_pytorch.py [--minutes 5] [--threads 2] [--build build]
                             [--widths 64,32] [--out quality-out]
Needs /usr/bin/python3 with torch and numpy, and an advgan build with the
examples (dcgan_fashion_mnist, generate, fid) in BUILD/examples.
"""

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import time
import zlib

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx_images(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        blob = f.read()
    count, rows, cols = (int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(blob[16:], dtype=np.uint8).reshape(count, rows, cols)


def write_idx_images(path, images):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]))
        for extent in images.shape:
            f.write(int(extent).to_bytes(4, "big"))
        f.write(images.tobytes())


def write_png_grid(idx_path, png_path, side=8, border=2):
    """Writes the first side*side images of a uint8 IDX file as one grayscale
    PNG grid, with the standard library only, so both runs' grids look alike."""
    with open(idx_path, "rb") as f:
        blob = f.read()
    count, rows, cols = (int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    if count < side * side:
        raise ValueError(f"{idx_path}: {count} images, the grid needs {side * side}")
    width = side * cols + (side + 1) * border
    height = side * rows + (side + 1) * border
    canvas = bytearray(width * height)
    for index in range(side * side):
        top = border + (index // side) * (rows + border)
        left = border + (index % side) * (cols + border)
        image = blob[16 + index * rows * cols:16 + (index + 1) * rows * cols]
        for y in range(rows):
            start = (top + y) * width + left
            canvas[start:start + cols] = image[y * cols:(y + 1) * cols]
    raw = b"".join(b"\x00" + bytes(canvas[y * width:(y + 1) * width]) for y in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    with open(png_path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def train_pytorch(width, seconds, threads, out_dir):
    """Runs in a child process so that thread settings apply before torch loads."""
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    images = read_idx_images(os.path.join(DATA, "train-images-idx3-ubyte.gz"))
    data = torch.from_numpy(np.pad(images, ((0, 0), (2, 2), (2, 2)))).float()
    data = (data / 127.5 - 1.0).unsqueeze(1)

    ngf, ndf, nz = width, width, 100
    generator = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Flatten())

    def init(module):  # the recipe's weights_init
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
    generator.apply(init)
    discriminator.apply(init)
    loss = nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batch = 64
    start = time.monotonic()
    steps = 0
    while time.monotonic() - start < seconds:
        order = torch.randperm(len(data))
        for i in range(0, len(data) - batch + 1, batch):
            if time.monotonic() - start >= seconds:
                break
            real = data[order[i:i + batch]]
            ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
            discriminator.zero_grad()
            error_real = loss(discriminator(real), ones)
            error_real.backward()
            fake = generator(torch.randn(batch, nz, 1, 1))
            error_fake = loss(discriminator(fake.detach()), zeros)
            error_fake.backward()
            opt_d.step()
            generator.zero_grad()
            loss(discriminator(fake), ones).backward()
            opt_g.step()
            steps += 1
    # The recipe draws its samples with batch norm in training mode (batch
    # statistics); evaluation mode uses the running averages. Both are
    # written, and the table reports each, so PyTorch gets the better one.
    noise = torch.randn(10000, nz, 1, 1)
    for mode in ("train", "eval"):
        generator.train(mode == "train")
        with torch.no_grad():
            samples = torch.cat([generator(chunk) for chunk in noise.split(500)])
        pixels = ((samples[:, 0, 2:30, 2:30] + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        write_idx_images(os.path.join(out_dir, f"samples_{mode}.idx"), pixels)
    with open(os.path.join(out_dir, "steps.json"), "w") as f:
        json.dump({"steps": steps, "seconds": time.monotonic() - start}, f)


def run(command, env=None):
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, check=True, env=env, stdout=subprocess.PIPE,
                          text=True).stdout


def score(build, samples, test_idx):
    text = run([os.path.join(build, "examples", "fid"), "--json", test_idx, samples])
    return json.loads(text.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build", default="build")
    parser.add_argument("--widths", default="64,32")
    parser.add_argument("--out", default="quality-out")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # width, folder
    args = parser.parse_args()
    seconds = args.minutes * 60
    if args.child:
        train_pytorch(int(args.child[0]), seconds, args.threads, args.child[1])
        return 0

    os.makedirs(args.out, exist_ok=True)
    test_idx = os.path.join(DATA, "t10k-images-idx3-ubyte.gz")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads))
    rows = []
    for width in (int(w) for w in args.widths.split(",")):
        folder = os.path.join(args.out, f"pytorch_w{width}")
        os.makedirs(folder, exist_ok=True)
        run(["/usr/bin/python3", __file__, "--minutes", str(args.minutes), "--threads",
             str(args.threads), "--child", str(width), folder], env=env)
        with open(os.path.join(folder, "steps.json")) as f:
            steps = json.load(f)["steps"]
        for mode in ("train", "eval"):
            samples = os.path.join(folder, f"samples_{mode}.idx")
            write_png_grid(samples, os.path.join(folder, f"grid_{mode}.png"))
            rows.append((f"PyTorch DCGAN width {width}, BN {mode}", steps,
                         score(args.build, samples, test_idx)))

    # The demo's defaults, with its training time set to the budget. Its
    # end-of-epoch metrics are left out, as PyTorch's run has none.
    folder = os.path.join(args.out, "advgan")
    run([os.path.join(args.build, "examples", "dcgan_fashion_mnist"), "--out", folder,
         "--threads", str(args.threads), "--max-seconds", str(int(seconds)), "--no-metrics"])
    run([os.path.join(args.build, "examples", "generate"), "--generator",
         os.path.join(folder, "generator.safetensors"), "--count", "10000", "--out",
         os.path.join(folder, "samples.idx")])
    write_png_grid(os.path.join(folder, "samples.idx"), os.path.join(folder, "grid.png"))
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        iterations = max((json.loads(line).get("iteration", 0) for line in f), default=0)
    rows.append(("advgan demo defaults", iterations,
                 score(args.build, os.path.join(folder, "samples.idx"), test_idx)))

    print(f"\nbudget {args.minutes} min, {args.threads} threads; domain metrics "
          "(Fashion-MNIST classifier features, not Inception FID)")
    print(f"{'run':32} {'steps':>7} {'FID':>9} {'KID':>9} {'coverage':>9} {'min class %':>12}")
    for name, steps, metrics in rows:
        print(f"{name:32} {steps:>7} {metrics['fid']:>9.3f} {metrics['kid']:>9.5f} "
              f"{metrics.get('mode_coverage', float('nan')):>9.2f} "
              f"{100 * metrics.get('min_class_share', float('nan')):>12.1f}")
    best_torch = min(m["fid"] for name, _, m in rows if name.startswith("PyTorch"))
    ours = rows[-1][2]["fid"]
    print(f"RESULT advgan_fid={ours:.3f} best_pytorch_fid={best_torch:.3f} "
          f"ratio={ours / best_torch:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
