"""Generation benchmark: generator and audio stages timed separately, warm-up excluded.

Each stage is timed with the device synchronised before and after, over ``repeats`` round-robin
runs after ``warmup`` runs, and reported as the median. Baselines are timed in the same run, so
speed-ups are side-by-side ratios: the faithful (unfolded) generator, the float32 path when the
model runs in reduced precision, and (:func:`compare_trees`) other source trees of this project,
e.g. the main branch checked out into a temporary folder.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

import ganspace
from ganspace.engine import audio, bench_worker
from ganspace.engine.model import GANSynthModel
from ganspace.errors import InputError
from ganspace.formats import load_model


@dataclass
class StageTiming:
    """Median time of one stage at one batch size."""

    stage: str  # "generator", "generator_baseline", "audio", "total", "total_float32"
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
    """Time generator, audio and both together for each batch size (random z, spread pitches).

    With ``baseline``, also the faithful unfolded float32 generator (``generator_baseline``) and,
    when the model runs in reduced precision, its float32 path end to end (``total_float32``,
    the same weights), round-robin with the others.
    """
    out: list[StageTiming] = []
    dev = model.device
    float32 = model.with_precision("float32") if baseline else model
    for b in batches:
        z = model.random_z(b, seed=b)
        pitches = [model.pitches[i % len(model.pitches)] for i in range(b)]
        old_bs = model.batch_size, float32.batch_size
        model.batch_size = float32.batch_size = max(b, 1)
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
                if float32 is not model:
                    stages.append(("total_float32", partial(float32.generate, z, pitches)))
            secs = _time_interleaved([fn for _, fn in stages], dev, warmup, repeats)
            for (name, _), sec in zip(stages, secs, strict=True):
                out.append(StageTiming(name, b, 1000.0 * sec / b, b / sec))
        finally:
            model.batch_size, float32.batch_size = old_bs
    return out


@dataclass
class TreeTiming:
    """End-to-end generation time (z to audio) of one source tree in :func:`compare_trees`."""

    tree: str  # the folder holding the tree's ganspace package
    batch: int
    ms_per_note: float  # median over the rounds
    rounds_ms_per_note: list[float] = field(default_factory=list)


def _tree_of(package_file: str) -> Path:
    return Path(package_file).resolve().parents[1]


def compare_trees(workers: Sequence[tuple[Path, dict[str, Any]]], repeats: int = 5,
                  timeout_s: float = 1800.0) -> list[TreeTiming]:
    """Time ``generate`` in one worker process per (source tree, configuration), round-robin.

    Every worker runs :mod:`ganspace.engine.bench_worker` with its tree's ``ganspace`` first on
    ``sys.path`` (use :func:`this_tree` for this one); each round asks every worker in turn for
    one timed call, so load from other processes falls on all of them alike. All workers run
    with the same environment.

    Args:
        workers: ``(tree, config)``: a folder holding a ``ganspace`` package (a checkout of this
            project) and the worker's configuration (see
            :func:`ganspace.engine.bench_worker.main`; the same ``batch`` for all).
        repeats: rounds.
    Returns:
        One :class:`TreeTiming` per worker, in order.
    Raises:
        InputError when a folder holds no ``ganspace`` package or a worker fails.
    """
    procs: list[subprocess.Popen[str]] = []

    def read(i: int) -> str:
        out = procs[i].stdout
        line = out.readline() if out is not None else ""
        if not line:
            raise InputError(f"{workers[i][0]}: the timing worker failed (see its error above)")
        return line

    try:
        for tree, config in workers:
            if not (Path(tree) / "ganspace" / "__init__.py").is_file():
                raise InputError(f"{tree}: no ganspace package there (give a checkout's root)")
            code = (f"import runpy, sys; sys.path.insert(0, {str(Path(tree).resolve())!r}); "
                    f"runpy.run_path({bench_worker.__file__!r}, run_name='__main__')")
            procs.append(subprocess.Popen([sys.executable, "-c", code, json.dumps(config)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True))
        for i, (tree, _) in enumerate(workers):
            ready, _, package = read(i).strip().partition(" ")
            if ready != "ready" or _tree_of(package) != Path(tree).resolve():
                raise InputError(f"{tree}: the worker imported ganspace from {package}")
        rounds: list[list[float]] = [[] for _ in workers]
        for _ in range(repeats):
            for i, proc in enumerate(procs):
                assert proc.stdin is not None
                proc.stdin.write("time\n")
                proc.stdin.flush()
                rounds[i].append(float(read(i)))
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout_s)
    return [TreeTiming(str(tree), int(cfg["batch"]),
                       1000.0 * statistics.median(t) / int(cfg["batch"]),
                       [round(1000.0 * x / int(cfg["batch"]), 2) for x in t])
            for (tree, cfg), t in zip(workers, rounds, strict=True)]


def this_tree() -> Path:
    """The source tree this ``ganspace`` package was imported from."""
    return _tree_of(ganspace.__file__)


def timings_as_dicts(timings: Sequence[StageTiming]) -> list[dict[str, float | int | str]]:
    """JSON-ready list."""
    return [asdict(t) for t in timings]
