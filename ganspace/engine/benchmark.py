"""Generation benchmark: generator and audio stages timed separately, warm-up excluded.

Each stage is timed with the device synchronised before and after, over ``repeats`` round-robin
runs after ``warmup`` runs, and reported as the median. The faithful (unfolded) generator can be
timed in the same run as a baseline, so the speed-up of the folded path is a side-by-side ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from ganspace.engine import audio
from ganspace.engine.model import GANSynthModel
from ganspace.formats import load_model


@dataclass
class StageTiming:
    """Median time of one stage at one batch size."""

    stage: str  # "generator", "generator_baseline", "audio", "total"
    batch: int
    ms_per_note: float
    notes_per_s: float


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); no-op on the CPU. Call around timed code."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_interleaved(
    fns: Sequence[Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> list[float]:
    """Median seconds of each function, timed round-robin (one call of each per repeat) so that
    load from other processes falls on every stage alike and their ratios stay fair."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def time_load(path: str | Path, device: str | None, repeats: int) -> float:
    """Median seconds of ``load_model(path, device)`` (files in the OS cache after the first)."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model = load_model(path, device=device)
        synchronize(model.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.inference_mode()
def run_bench(model: GANSynthModel, batches: Sequence[int], warmup: int = 1, repeats: int = 3,
              baseline: bool = False) -> list[StageTiming]:
    """Time generator, audio and both together for each batch size (random z, spread pitches)."""
    out: list[StageTiming] = []
    dev = model.device
    for b in batches:
        z = model.random_z(b, seed=b)
        pitches = [model.pitches[i % len(model.pitches)] for i in range(b)]
        old_bs = model.batch_size
        model.batch_size = max(b, 1)
        try:
            spec = model.generate_specgram(z, pitches)
            stages: list[tuple[str, Callable[[], object]]] = [
                ("generator", partial(model.generate_specgram, z, pitches)),
                ("audio", partial(audio.melspecgrams_to_audio, spec)),
                ("total", partial(model.generate, z, pitches)),
            ]
            if baseline:
                zt = torch.as_tensor(z, device=dev)
                labels = model.labels(pitches, b)
                stages.insert(1, ("generator_baseline", partial(model.generator, zt, labels)))
            secs = _time_interleaved([fn for _, fn in stages], dev, warmup, repeats)
            for (name, _), sec in zip(stages, secs, strict=True):
                out.append(StageTiming(name, b, 1000.0 * sec / b, b / sec))
        finally:
            model.batch_size = old_bs
    return out


def timings_as_dicts(timings: Sequence[StageTiming]) -> list[dict[str, float | int | str]]:
    """JSON-ready list."""
    return [asdict(t) for t in timings]
