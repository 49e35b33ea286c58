"""Is bfloat16 fast on this CPU? Times one 3x3 convolution 256 -> 256 on 32x128, batch 8
(channels-last), in float32, under bfloat16 autocast and with bfloat16 tensors, and names the
kernel PyTorch picks for bfloat16 (``aten::_slow_conv2d_forward`` means no oneDNN bfloat16).

    python scripts/bench_conv_bf16.py [--threads 2] [--repeats 3]

Figures for this project's machines are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganspace.engine.precision import cpu_bf16_hardware, describe_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(8, 256, 32, 128).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).contiguous(memory_format=torch.channels_last)
    xb, wb = x.bfloat16(), w.bfloat16()

    def autocast() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.conv2d(x, w, padding=1)

    fns: dict[str, Callable[[], torch.Tensor]] = {
        "float32": lambda: F.conv2d(x, w, padding=1),
        "bfloat16 autocast": autocast,
        "bfloat16 tensors": lambda: F.conv2d(xb, wb, padding=1),
    }
    flop = 2 * 8 * 256 * 256 * 9 * 32 * 128
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(args.repeats):  # round-robin
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print(f"{describe_cpu()}, {args.threads} threads; bfloat16 detected: {cpu_bf16_hardware()}")
    for name, t in times.items():
        sec = statistics.median(t)
        print(f"{name:<18} {1e3 * sec:8.0f} ms {flop / sec / 1e9:8.0f} GFLOP/s")
    with torch.profiler.profile() as prof:
        fns["bfloat16 tensors"]()
    generic = {"aten::conv2d", "aten::convolution", "aten::_convolution"}
    kernels = sorted(e.key for e in prof.key_averages() if "conv" in e.key)
    print("bfloat16 kernels:", ", ".join(k for k in kernels if k not in generic))


if __name__ == "__main__":
    main()
