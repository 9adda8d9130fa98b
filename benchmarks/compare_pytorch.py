#!/usr/bin/python3
"""Compare one DCGAN training iteration in advgan and in PyTorch on the CPU.

The workload is one iteration of the reference DCGAN at batch 64 on 32x32
images, in the order of PyTorch's DCGAN example: D on the real batch, G on
fresh noise, D on the detached fake batch, D's Adam step, D on the fake batch
for G's loss, G's Adam step. advgan runs it as gan_trainer::step through the
Google Benchmark program benchmarks/dcgan_cpu.cpp; PyTorch runs the same
models, loss (BCE on logits) and optimizers here.

Every measurement is its own process, and the PyTorch and advgan processes
of each case alternate, so a change in machine load hits both. For each case
the script prints the median, minimum and maximum over the processes of the
seconds per iteration, the achieved GFLOP/s, its share of a square sgemm
measured in the same run, the peak resident set size, and lines

    RESULT C=1 threads=2 torch_s=... advgan_s=... ratio=...

with ratio = torch / advgan. It also compares generator inference at batch
1, and prints advgan's iteration time over the time of the same iteration's
GEMMs alone.

Run with Debian's Python, which has torch:
    /usr/bin/python3 benchmarks/compare_pytorch.py
ADVGAN_BUILD_DIR names a CMake build folder that already contains
benchmarks/dcgan_cpu; without it the script configures and builds one in
build-benchmarks/ (Release, benchmarks only).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 64
LATENT = 100


# -- FLOP counts ----------------------------------------------------------------


def conv_flops(channels):
    """Return (generator_flops, discriminator_flops, first_conv_flops) of one
    forward pass at batch 64: 2 * N * C_in * C_out * K * K per output pixel of
    a convolution and per input pixel of a transposed convolution."""
    k2 = 16
    # Transposed convolutions: (in channels, out channels, input side).
    generator = [(LATENT, 512, 1), (512, 256, 4), (256, 128, 8), (128, channels, 16)]
    # Convolutions: (in channels, out channels, output side).
    discriminator = [(channels, 64, 16), (64, 128, 8), (128, 256, 4), (256, 1, 1)]
    g = sum(2 * BATCH * cin * cout * k2 * side * side for cin, cout, side in generator)
    d = sum(2 * BATCH * cin * cout * k2 * side * side for cin, cout, side in discriminator)
    return g, d


def iteration_flops(channels):
    """Return the convolution FLOPs of one iteration: G forward once, D
    forward three times, and for each of those four passes a backward pass
    with a weight and an input gradient of every layer (each as many FLOPs
    as the forward pass). This counts 45.9 GFLOP for one channel. PyTorch
    skips the input gradient of the first layer where the input needs none,
    and advgan also skips D's weight gradients in the generator step, so
    both run somewhat fewer."""
    g, d = conv_flops(channels)
    return 3 * g + 9 * d


# -- Child processes ------------------------------------------------------------


def torch_models(channels):
    import torch.nn as nn

    generator = nn.Sequential(
        nn.ConvTranspose2d(LATENT, 512, 4, 1, 0, bias=False), nn.BatchNorm2d(512), nn.ReLU(True),
        nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
        nn.ConvTranspose2d(128, channels, 4, 2, 1, bias=False), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(channels, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, True),
        nn.Conv2d(256, 1, 4, 1, 0, bias=False), nn.Flatten())
    return generator, discriminator


def child_torch_iteration(channels, threads, warmup, iterations):
    """Time `iterations` training iterations after `warmup` ones; print JSON."""
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator, discriminator = torch_models(channels)
    criterion = nn.BCEWithLogitsLoss()
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(BATCH, channels, 32, 32) * 2 - 1
    ones = torch.ones(BATCH, 1)
    zeros = torch.zeros(BATCH, 1)

    def step():
        discriminator.zero_grad()
        criterion(discriminator(real), ones).backward()
        fake = generator(torch.randn(BATCH, LATENT, 1, 1))
        criterion(discriminator(fake.detach()), zeros).backward()
        optimizer_d.step()
        generator.zero_grad()
        criterion(discriminator(fake), ones).backward()
        optimizer_g.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    print(json.dumps({"seconds": (time.perf_counter() - start) / iterations}))


def child_torch_inference(batch, threads, calls):
    """Time generator inference in evaluation mode; print JSON."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator, _ = torch_models(1)
    generator.eval()
    latent = torch.randn(batch, LATENT, 1, 1)
    with torch.no_grad():
        for _ in range(max(5, calls // 10)):
            generator(latent)
        start = time.perf_counter()
        for _ in range(calls):
            generator(latent)
    print(json.dumps({"seconds": (time.perf_counter() - start) / calls}))


# -- Running processes ----------------------------------------------------------


def run_measured(command, env):
    """Run a command; return (stdout, peak RSS in MiB).

    The child is reaped with os.wait4, whose resource usage is the child's
    own, where subprocess would leave only the total over all children.
    stderr goes to a temporary file, so a child that writes much to it never
    blocks while stdout is read."""
    with tempfile.TemporaryFile() as error_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=error_file, env=env)
        stdout = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            error_file.seek(0)
            sys.exit(f"command failed with exit status {process.returncode}: "
                     f"{' '.join(command)}\n{error_file.read().decode(errors='replace')}")
    return stdout.decode(), usage.ru_maxrss / 1024.0


def child_env(threads, wait_policy):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    return env


def torch_iteration(channels, threads, args):
    command = [sys.executable, __file__, "--child", "torch-iteration", "--channels",
               str(channels), "--threads", str(threads), "--iterations", str(args.iterations)]
    stdout, rss = run_measured(command, child_env(threads, args.wait_policy))
    return json.loads(stdout.strip().splitlines()[-1])["seconds"], rss


def torch_inference(batch, threads, args):
    command = [sys.executable, __file__, "--child", "torch-inference", "--batch", str(batch),
               "--threads", str(threads), "--inference-calls", str(args.inference_calls)]
    stdout, rss = run_measured(command, child_env(threads, args.wait_policy))
    return json.loads(stdout.strip().splitlines()[-1])["seconds"], rss


def advgan_case(binary, name, threads, min_time, args):
    """Run one Google Benchmark case; return (seconds per iteration,
    counters, peak RSS in MiB)."""
    pattern = f"^{name}/threads:{threads}/"
    command = [binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
               f"--benchmark_min_time={min_time}"]
    stdout, rss = run_measured(command, child_env(threads, args.advgan_wait_policy))
    benchmarks = json.loads(stdout)["benchmarks"]
    if len(benchmarks) != 1:
        sys.exit(f"expected one benchmark for {pattern}, found {len(benchmarks)}")
    result = benchmarks[0]
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[result["time_unit"]]
    return result["real_time"] * scale, result, rss


# -- Building -------------------------------------------------------------------


def benchmark_binary():
    """Return the path of dcgan_cpu, building it when ADVGAN_BUILD_DIR is not set."""
    build_dir = os.environ.get("ADVGAN_BUILD_DIR")
    if build_dir:
        binary = os.path.join(build_dir, "benchmarks", "dcgan_cpu")
        if not os.path.isfile(binary):
            sys.exit(f"ADVGAN_BUILD_DIR={build_dir} has no benchmarks/dcgan_cpu; configure it with "
                     "-DADVGAN_BUILD_BENCHMARKS=ON and build the dcgan_cpu target")
        return binary
    build_dir = os.path.join(REPO, "build-benchmarks")
    cmake = shutil.which("cmake")
    if cmake is None:
        sys.exit("cmake not found; install it or set ADVGAN_BUILD_DIR to a build with dcgan_cpu")
    subprocess.run([cmake, "-S", REPO, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DADVGAN_BUILD_BENCHMARKS=ON", "-DADVGAN_BUILD_TESTS=OFF",
                    "-DADVGAN_BUILD_EXAMPLES=OFF", "-DADVGAN_INSTALL=OFF"], check=True)
    subprocess.run([cmake, "--build", build_dir, "--target", "dcgan_cpu", "-j", "1"], check=True)
    return os.path.join(build_dir, "benchmarks", "dcgan_cpu")


# -- Report ---------------------------------------------------------------------


def summary(values):
    return statistics.median(values), min(values), max(values)


def machine_description():
    model = platform.processor() or "unknown"
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in output.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5,
                        help="processes per case and implementation (default 5)")
    parser.add_argument("--iterations", type=int, default=4,
                        help="timed PyTorch iterations per process, after 2 untimed (default 4)")
    parser.add_argument("--min-time", type=float, default=2.0,
                        help="Google Benchmark's minimum seconds per advgan case (default 2)")
    parser.add_argument("--inference-calls", type=int, default=200,
                        help="timed PyTorch generator calls per inference process (default 200)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to compare (default 1 2)")
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3],
                        help="image channels to compare (default 1 3)")
    parser.add_argument("--wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of the PyTorch processes (default PASSIVE; "
                             "an empty string leaves it unset)")
    parser.add_argument("--advgan-wait-policy", default="",
                        help="OMP_WAIT_POLICY of the advgan processes (default unset, as a "
                             "program runs without the variable)")
    parser.add_argument("--child", choices=["torch-iteration", "torch-inference"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "torch-iteration":
        child_torch_iteration(args.channels[0], args.threads[0], 2, args.iterations)
        return
    if args.child == "torch-inference":
        child_torch_inference(args.batch, args.threads[0], args.inference_calls)
        return

    binary = benchmark_binary()
    started = time.time()
    print(f"machine: {machine_description()}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"advgan benchmark: {binary}")
    print(f"OMP_WAIT_POLICY: PyTorch {args.wait_policy or 'unset'}, "
          f"advgan {args.advgan_wait_policy or 'unset'}")
    print(f"{args.repetitions} processes per case and implementation, interleaved\n")

    # Square sgemm through advgan's gemm (OpenBLAS), the reference for
    # "share of peak".
    peak = {}
    for threads in args.threads:
        rates = [advgan_case(binary, "gemm_square/size:2048", threads, 0.5, args)[1]
                 ["gflop_per_s"] for _ in range(3)]
        peak[threads] = max(rates)
        print(f"sgemm 2048^3 peak, {threads} thread(s): {peak[threads]:.1f} GFLOP/s "
              f"(best of 3)")
    print()

    cases = [(c, t) for c in args.channels for t in args.threads]
    torch_times = {case: [] for case in cases}
    advgan_times = {case: [] for case in cases}
    torch_rss = {case: [] for case in cases}
    advgan_rss = {case: [] for case in cases}
    gemm_times = {case: [] for case in cases}
    gemm_flops = {}
    for repetition in range(args.repetitions):
        for case in cases:
            channels, threads = case
            order = ["torch", "advgan"] if repetition % 2 == 0 else ["advgan", "torch"]
            for implementation in order:
                if implementation == "torch":
                    seconds, rss = torch_iteration(channels, threads, args)
                    torch_times[case].append(seconds)
                    torch_rss[case].append(rss)
                else:
                    seconds, _, rss = advgan_case(binary, f"iteration/channels:{channels}",
                                                  threads, args.min_time, args)
                    advgan_times[case].append(seconds)
                    advgan_rss[case].append(rss)
                    # The same iteration's GEMMs alone, right after it, so both
                    # see the same machine load.
                    seconds, result, _ = advgan_case(
                        binary, f"iteration_gemm_only/channels:{channels}", threads,
                        args.min_time, args)
                    gemm_times[case].append(seconds)
                    gemm_flops[case] = result["gflop"]
        print(f"repetition {repetition + 1}/{args.repetitions} done "
              f"({time.time() - started:.0f} s)", file=sys.stderr)

    header = (f"{'case':18} {'implementation':14} {'median s':>9} {'min s':>8} {'max s':>8} "
              f"{'GFLOP/s':>8} {'% peak':>7} {'peak RSS MiB':>13}")
    print(header)
    print("-" * len(header))
    results = []
    for case in cases:
        channels, threads = case
        flops = iteration_flops(channels)
        label = f"C={channels} threads={threads}"
        for name, times, rss in (("pytorch", torch_times[case], torch_rss[case]),
                                 ("advgan", advgan_times[case], advgan_rss[case])):
            median, low, high = summary(times)
            rate = flops / median * 1e-9
            print(f"{label:18} {name:14} {median:9.3f} {low:8.3f} {high:8.3f} {rate:8.1f} "
                  f"{100 * rate / peak[threads]:6.1f}% {max(rss):13.0f}")
        torch_median = statistics.median(torch_times[case])
        advgan_median = statistics.median(advgan_times[case])
        results.append(f"RESULT C={channels} threads={threads} torch_s={torch_median:.4f} "
                       f"advgan_s={advgan_median:.4f} ratio={torch_median / advgan_median:.2f}")
        results.append(f"RESULT rss C={channels} threads={threads} torch_mib={max(torch_rss[case]):.0f} "
                       f"advgan_mib={max(advgan_rss[case]):.0f} "
                       f"ratio={max(torch_rss[case]) / max(advgan_rss[case]):.2f}")
    print(f"\nGFLOP/s counts {iteration_flops(1) * 1e-9:.1f} GFLOP per iteration for C=1 and "
          f"{iteration_flops(3) * 1e-9:.1f} for C=3 (see iteration_flops()).\n")

    # Generator inference at batch 1, in evaluation mode without gradients.
    inference_repetitions = max(3, args.repetitions // 2)
    for threads in args.threads:
        torch_values, advgan_values, openblas_values = [], [], []
        for _ in range(inference_repetitions):
            torch_values.append(torch_inference(1, threads, args)[0])
            advgan_values.append(
                advgan_case(binary, "generator_inference/batch:1", threads, 1.0, args)[0])
            openblas_values.append(
                advgan_case(binary, "generator_inference_openblas/batch:1", threads, 1.0, args)[0])
        torch_median = statistics.median(torch_values)
        advgan_median = statistics.median(advgan_values)
        print(f"generator inference batch 1, {threads} thread(s): PyTorch "
              f"{1e3 * torch_median:.2f} ms, advgan {1e3 * advgan_median:.2f} ms, advgan with "
              f"OpenBLAS for every GEMM {1e3 * statistics.median(openblas_values):.2f} ms "
              f"(medians of {inference_repetitions})")
        results.append(f"RESULT inference batch=1 threads={threads} "
                       f"torch_ms={1e3 * torch_median:.3f} advgan_ms={1e3 * advgan_median:.3f} "
                       f"ratio={torch_median / advgan_median:.2f}")
    print()

    # The iteration against its GEMMs alone.
    for case in cases:
        channels, threads = case
        gemm_median = statistics.median(gemm_times[case])
        iteration_median = statistics.median(advgan_times[case])
        print(f"C={channels} threads={threads}: advgan's GEMMs alone {gemm_median:.3f} s "
              f"({gemm_flops[case]:.1f} GFLOP, {gemm_flops[case] / gemm_median:.1f} GFLOP/s); "
              f"iteration {iteration_median:.3f} s; outside GEMM "
              f"{100 * (1 - gemm_median / iteration_median):.1f}%")
        results.append(f"RESULT gemm_only C={channels} threads={threads} "
                       f"iteration_s={iteration_median:.4f} gemm_s={gemm_median:.4f} "
                       f"ratio={iteration_median / gemm_median:.2f}")

    print()
    for line in results:
        print(line)
    print(f"\ntotal {time.time() - started:.0f} s; load average at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
