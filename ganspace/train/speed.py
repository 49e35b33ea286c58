"""Training speed: images/s of full-resolution training steps, per precision, side by side.

``ganspacesynth bench-train`` and ``scripts/gpu_check.py`` measure with :func:`train_speed`: a
small synthetic dataset (:func:`~ganspace.train.synthdata.render_dataset`), one
:class:`~ganspace.train.trainer.Trainer` per precision placed at the last stage (full
resolution, 128 x 1024), warm-up steps, then steps timed round-robin over the precisions so that
load from other processes falls on each alike. Wall time on CUDA; on the CPU also the process
CPU time (``images_per_cpu_s``), which a loaded, shared machine distorts less.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ganspace.engine.benchmark import synchronize
from ganspace.train.synthdata import render_dataset
from ganspace.train.trainer import Trainer, TrainOptions

PITCHES = [48, 55, 60]
"""Pitches of the measuring dataset (two notes each)."""


def train_speed(config: str, precisions: list[str], device: str | None = None,
                steps: int = 5, warmup: int = 1, batch: int | None = None,
                threads: int | None = None) -> dict[str, Any]:
    """Images per second of ``config``'s training steps at full resolution, per precision.

    Args:
        config: a training config name (``ganspace.train.schedule.CONFIGS``).
        precisions: training precisions to compare (``auto``, ``float32``, ``bfloat16``).
        device: ``cpu``, ``cuda``, ``cuda:N``; None: CUDA when available.
        steps: timed steps per precision (round-robin).
        warmup: untimed steps per precision first.
        batch: global batch (None: the config's batch at its last stage).
        threads: torch CPU threads (None: torch's default).
    Returns:
        ``{"config", "batch", "device", "steps", "rows": {precision: {"dtype",
        "images_per_s", "images_per_cpu_s", "ms_per_step"}}}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        ds = render_dataset(Path(tmp) / "ds", PITCHES, notes_per_pitch=2, seed=0)
        trainers = {}
        for precision in precisions:
            t = Trainer.create(TrainOptions(dataset=ds.path, out=Path(tmp) / precision,
                                            config=config, device=device, batch=batch,
                                            threads=threads, progress_bar=False,
                                            precision=precision))
            hp = t.hparams
            t.images = int(hp["total_num_images"]) - 1  # the last stage: full resolution
            trainers[precision] = t
        for _ in range(warmup):
            for t in trainers.values():
                t.step()
        wall = dict.fromkeys(trainers, 0.0)
        cpu = dict.fromkeys(trainers, 0.0)
        images = dict.fromkeys(trainers, 0)
        for _ in range(steps):
            for name, t in trainers.items():
                before = t.images
                synchronize(t.device)
                w0, c0 = time.perf_counter(), time.process_time()
                t.step()
                synchronize(t.device)
                wall[name] += time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
                images[name] += t.images - before
        first = next(iter(trainers.values()))
        rows = {name: {"dtype": t.precision,
                       "images_per_s": round(images[name] / wall[name], 2),
                       "images_per_cpu_s": round(images[name] / max(cpu[name], 1e-9), 2),
                       "ms_per_step": round(1000 * wall[name] / steps, 1)}
                for name, t in trainers.items()}
        return {"config": config, "batch": images[precisions[0]] // steps,
                "device": str(first.device), "steps": steps, "rows": rows}


def format_speed(report: dict[str, Any]) -> str:
    """A table of :func:`train_speed`'s report, with each precision's ratio to the first."""
    rows = report["rows"]
    base = next(iter(rows.values()))["images_per_s"]
    lines = [f"training speed: config {report['config']}, batch {report['batch']}, "
             f"{report['device']}, full resolution, {report['steps']} steps each (round-robin)",
             f"{'precision':<10} {'runs in':<9} {'img/s':>8} {'img/cpu-s':>10} {'ms/step':>9} "
             f"{'vs first':>9}"]
    for name, r in rows.items():
        lines.append(f"{name:<10} {r['dtype']:<9} {r['images_per_s']:>8.2f} "
                     f"{r['images_per_cpu_s']:>10.2f} {r['ms_per_step']:>9.1f} "
                     f"{r['images_per_s'] / base:>8.2f}x")
    return "\n".join(lines)
