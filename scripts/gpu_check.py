"""The measurements of scripts/gpu_check.sh (issue 11, item 4), run by it after installing.

    python scripts/gpu_check.py OUT_DIR [--device cuda|cpu] [--quick] [--budget-s 420]

Writes OUT_DIR/results.json (every figure, the errors, the commands' settings) and
OUT_DIR/results.md (a summary with the targets). Steps run in order of priority; each is timed
and guarded (an error is recorded and the next step runs), and a step that would start after
the time budget is skipped and marked so, so the whole check ends in time. ``--quick`` shrinks
every step (tiny models, few notes) so a CPU test can run the same code in a minute or two.

Steps: environment; CUDA parity with Magenta's fixture (float32); bfloat16 and float16 fidelity
on the trained default model (log-mel dB, in-tune fraction); notes/s per precision and batch
(``ganspacesynth bench``'s ``run_bench``); one-note latency p50/p95; the server's one-note OSC
round trip on loopback (``bench-server``'s code, the model as ``serve`` runs it: precision
auto); PCA throughput of the ``cov`` estimator on conv0 of a published-size model (and the time
it implies for 4,194,304 samples); training images/s (small and published configs, final
stage); notes/s with torch.compile and CUDA graphs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "magenta_small"  # gpu_check.sh finds it too
PCA_TARGET_SAMPLES = 4_194_304
QUICK_NOTE = "quick (tiny workloads: the targets do not apply)"
TARGETS = {
    "notes_per_s_reduced": 5000.0,  # at large batch, reduced precision (H100/H200)
    "one_note_ms": 10.0,
    "osc_round_trip_p50_ms": 10.0,
    "pca_4m_s": 60.0,
}


class Check:
    """Run steps against a deadline and collect their results."""

    def __init__(self, device: str, quick: bool, budget_s: float, fixture: Path) -> None:
        self.device = device
        self.quick = quick
        self.fixture = fixture
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.steps: dict[str, dict[str, Any]] = {}

    def left(self) -> float:
        """Seconds left in the budget."""
        return self.deadline - time.monotonic()

    def run(self, name: str, fn: Callable[[], Any], need_s: float) -> None:
        """Run one step unless fewer than ``need_s`` (its expected time) seconds are left."""
        if self.left() < need_s:
            self.steps[name] = {"skipped": f"{self.left():.0f} s left of the budget, the step "
                                f"needs about {need_s:.0f} s"}
            print(f"[gpu_check] {name}: skipped (time budget)", flush=True)
            return
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            result: dict[str, Any] = {"result": fn()}
        except Exception as exc:  # every step is independent: record and go on
            result = {"error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=6)}
            print(f"[gpu_check] {name}: {result['error']}", flush=True)
        result["seconds"] = round(time.monotonic() - t0, 1)
        self.steps[name] = result
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def environment(device: str) -> dict[str, Any]:
    import ganspace
    from ganspace.engine.precision import cpu_supports_bf16, describe_cpu

    env: dict[str, Any] = {
        "ganspace": str(Path(ganspace.__file__).parent),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cpu": describe_cpu(),
        "cpu_bf16": cpu_supports_bf16(), "threads": torch.get_num_threads(), "device": device,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}",
                   bf16=torch.cuda.is_bf16_supported())
    return env


def parity(check: Check) -> dict[str, Any]:
    from ganspace.formats import load_model

    if not (check.fixture / "experiment.json").is_file():
        raise FileNotFoundError(f"{check.fixture} (the shared fixture; pass --fixture)")
    with np.load(check.fixture / "reference_io.npz") as f:
        ref = {k: f[k] for k in ("z", "pitches", "generator_output_denorm", "audio_api")}
    model = load_model(check.fixture, device=check.device)
    spec = model.generate_specgram(ref["z"], ref["pitches"]).cpu().numpy()
    notes = model.generate(ref["z"], ref["pitches"])

    def rel(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x.astype(np.float64) - y).max() / np.abs(y).max())

    out = {"generator_rel": rel(spec, ref["generator_output_denorm"]),
           "audio_rel": rel(notes, ref["audio_api"])}
    out["ok"] = out["generator_rel"] <= 1e-4 and out["audio_rel"] <= 1e-3
    return out


def default_model(device: str, precision: str = "float32") -> Any:
    from ganspace.formats import default_model_dir, load_model

    return load_model(default_model_dir(), device=device, precision=precision)


def fidelity(check: Check) -> dict[str, Any]:
    from ganspace.engine.fidelity import measure_fidelity
    from ganspace.errors import InputError
    from ganspace.train.evaluate import pitch_report

    model = default_model(check.device)
    out: dict[str, Any] = {"model": "models/default (trained)"}
    for precision in ("bfloat16", "float16"):
        try:
            fid = measure_fidelity(model, precision, count=2 if check.quick else 200,
                                   in_tune=lambda n, p, sr: float(
                                       pitch_report(n, p, sr)["in_tune_fraction"]))
            out[precision] = {**fid.as_dict(), "text": fid.describe()}
        except InputError as exc:  # a precision this device does not offer
            out[precision] = {"refused": str(exc)}
    return out


def precisions(device: str) -> list[str]:
    from ganspace.engine.precision import PRECISIONS, resolve_precision
    from ganspace.errors import InputError

    ok = []
    for p in PRECISIONS:
        try:
            resolve_precision(p, device)
            ok.append(p)
        except InputError:
            pass
    return ok


def throughput(check: Check, compile_mode: str | None = None) -> dict[str, Any]:
    """notes/s (z to audio; ``bench``'s run_bench) per precision and batch, one model per
    precision (compiled: only ``auto``'s precision, every batch on the same compiled model, so
    it compiles twice: static, then with a dynamic batch); larger batches stop at an error."""
    from ganspace.engine.benchmark import run_bench
    from ganspace.engine.model import random_model
    from ganspace.engine.precision import precision_name, resolve_precision

    batches = [1, 2] if check.quick else [1, 8, 64, 256, 1024, 2048]
    chosen = ([precision_name(resolve_precision("auto", check.device))] if compile_mode
              else precisions(check.device))
    out: dict[str, Any] = {}
    for p in chosen:
        model = random_model("tiny" if check.quick else "published", device=check.device,
                             precision=p)
        if compile_mode:
            model.compile(compile_mode)
        rows: dict[str, Any] = {}
        for b in batches:
            if check.left() < (10 if check.quick else 30):
                rows[str(b)] = "skipped (time budget)"
                break
            try:
                timings = run_bench(model, [b], repeats=1 if check.quick else 3)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                rows[str(b)] = f"{type(exc).__name__}: {str(exc)[:200]}"
                break
            t = {x.stage: x for x in timings}
            rows[str(b)] = {"notes_per_s": round(t["total"].notes_per_s, 1),
                            "generator_notes_per_s": round(t["generator"].notes_per_s, 1),
                            "audio_notes_per_s": round(t["audio"].notes_per_s, 1)}
        out[p] = rows
        del model
    return out


def latency(check: Check) -> dict[str, Any]:
    """One note (z to audio as numpy) per call: p50/p95 ms per precision."""
    from ganspace.engine.model import random_model

    out = {}
    runs = 3 if check.quick else 50
    for p in precisions(check.device):
        model = random_model("tiny" if check.quick else "published", device=check.device,
                             precision=p)
        z = model.random_z(1, seed=0)
        for _ in range(3):
            model.generate(z, 60)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model.generate(z, 60)
            times.append(1000.0 * (time.perf_counter() - t0))
        out[p] = {"p50_ms": round(statistics.median(times), 2),
                  "p95_ms": round(float(np.percentile(times, 95)), 2), "runs": runs}
    return out


def osc_round_trip(check: Check) -> dict[str, Any]:
    """The server's one-note /synth round trip on loopback, model as serve runs it (auto)."""
    from ganspace_server.bench_server import run_bench

    with tempfile.TemporaryDirectory() as tmp:
        if check.quick:
            spec = "tiny"
        else:
            from ganspace.engine.model import random_model

            spec = str(random_model("published", device="cpu").save(Path(tmp) / "published"))
        reports = run_bench(spec, 3 if check.quick else 50, check.device, precision="auto")
    return {r.mode: {"total_p50_ms": round(r.total_p50, 2),
                     "generate_p50_ms": round(r.generate_p50, 2),
                     "overhead_p50_ms": round(r.overhead_p50, 2),
                     "overhead_p95_ms": round(r.overhead_p95, 2), "requests": r.requests}
            for r in reports}


def pca(check: Check) -> dict[str, Any]:
    """cov on conv0 of a published-size model (quick: the tiny one): two sample counts, a
    linear fit of the time (the fixed part is mostly the eigendecomposition)."""
    from ganspace.engine.benchmark import synchronize
    from ganspace.engine.model import random_model
    from ganspace.space.pca import compute_directions

    model = random_model("tiny" if check.quick else "published", device=check.device)
    sizes = (256, 1024) if check.quick else (131_072, 524_288)
    batch = 256 if check.quick else 8192
    times = []
    for n in sizes:
        synchronize(model.device)
        t0 = time.perf_counter()
        compute_directions(model, "conv0", samples=n, seed=0, components=16 if check.quick
                           else 512, batch=batch, estimator="cov")
        synchronize(model.device)
        times.append(time.perf_counter() - t0)
    rate = (sizes[1] - sizes[0]) / max(times[1] - times[0], 1e-9)
    fixed = max(0.0, times[0] - sizes[0] / rate)
    return {"model": "tiny" if check.quick else "published", "layer": "conv0",
            "dim": int(np.prod(model.layer_shape("conv0"))), "batch": batch,
            "samples": list(sizes), "seconds": [round(t, 2) for t in times],
            "samples_per_s": round(rate, 1), "fixed_s": round(fixed, 2),
            "implied_4m_s": round(fixed + PCA_TARGET_SAMPLES / rate, 1)}


def training(check: Check) -> dict[str, Any]:
    """Images/s of training steps at the final stage (full resolution), per config and training
    precision (ganspace.train.speed, as ``ganspacesynth bench-train``)."""
    from ganspace.train.speed import train_speed

    out: dict[str, Any] = {}
    configs = ["tiny"] if check.quick else ["small", "default", "published"]
    for config in configs:
        if check.left() < 60:
            out[config] = "skipped (time budget)"
            continue
        out[config] = train_speed(config, ["float32", "auto"], check.device,
                                  steps=1 if check.quick else 5)
    return out


def summary(check: Check) -> dict[str, Any]:
    """The targets against what was measured (None when not measured)."""
    s = check.steps

    def res(name: str) -> Any:
        return s.get(name, {}).get("result") or {}

    best_reduced = None
    for step in ("throughput", "throughput_compile", "throughput_cudagraphs"):
        for p, rows in res(step).items():
            if p == "float32":
                continue
            for b, row in rows.items():
                if isinstance(row, dict) and int(b) >= 256:
                    v = row["notes_per_s"]
                    best_reduced = v if best_reduced is None else max(best_reduced, v)
    lat = [v["p50_ms"] for v in res("latency").values()]
    osc = [v["total_p50_ms"] for v in res("osc_round_trip").values()]
    pca_s = res("pca").get("implied_4m_s")
    got = {"notes_per_s_reduced": best_reduced, "one_note_ms": min(lat) if lat else None,
           "osc_round_trip_p50_ms": min(osc) if osc else None, "pca_4m_s": pca_s}
    met = {k: None if v is None else (v >= TARGETS[k] if k == "notes_per_s_reduced"
                                      else v <= TARGETS[k]) for k, v in got.items()}
    return {"measured": got, "targets": TARGETS, "met": met}


def markdown(results: dict[str, Any]) -> str:
    """results.md: the environment, the targets, then every step as JSON."""
    env = results["steps"].get("environment", {}).get("result", {})
    lines = ["# GANSpaceSynth GPU check", "",
             f"- date: {env.get('date')}", f"- device: {env.get('device')} "
             f"{env.get('gpu', env.get('cpu'))}", f"- torch {env.get('torch')}, CUDA "
             f"{env.get('cuda')}, Python {env.get('python')}",
             f"- mode: {QUICK_NOTE if results['quick'] else 'full'}, "
             f"total {results['total_s']} s", "",
             "Targets for an H100/H200 (issue 11); every figure below is in results.json.", "",
             "| target | wanted | measured | met |",
             "| --- | --- | --- | --- |"]
    summ = results["summary"]
    for key, want in summ["targets"].items():
        op = ">=" if key == "notes_per_s_reduced" else "<="
        lines.append(f"| {key} | {op} {want:g} | {summ['measured'][key]} | "
                     f"{summ['met'][key]} |")
    lines += ["", "| step | seconds | status |", "| --- | --- | --- |"]
    for name, step in results["steps"].items():
        status = ("skipped: " + step["skipped"] if "skipped" in step
                  else "error: " + step["error"] if "error" in step else "ok")
        lines.append(f"| {name} | {step.get('seconds', '')} | {status} |")
    for name, step in results["steps"].items():
        if "result" in step:
            lines += ["", f"## {name}", "", "```json",
                      json.dumps(step["result"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for results.json and results.md")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny workloads (the CPU test)")
    ap.add_argument("--budget-s", type=float, default=400.0,
                    help="seconds for all steps (default 400; the install takes the rest of 8 "
                    "minutes)")
    ap.add_argument("--fixture", type=Path, default=FIXTURE,
                    help=f"Magenta's fixture checkpoint (default {FIXTURE})")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("[gpu_check] no CUDA GPU visible; use --device cpu", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.device, args.quick, args.budget_s, args.fixture)
    quick = args.quick
    check.run("environment", lambda: environment(args.device), 0)
    check.run("parity", lambda: parity(check), 10)
    check.run("fidelity", lambda: fidelity(check), 20 if quick else 40)
    check.run("throughput", lambda: throughput(check), 20 if quick else 90)
    check.run("latency", lambda: latency(check), 10 if quick else 30)
    check.run("osc_round_trip", lambda: osc_round_trip(check), 10 if quick else 30)
    check.run("pca", lambda: pca(check), 10 if quick else 30)
    check.run("training", lambda: training(check), 20 if quick else 60)
    check.run("throughput_compile", lambda: throughput(check, "default"), 40 if quick else 120)
    if args.device.startswith("cuda"):
        check.run("throughput_cudagraphs", lambda: throughput(check, "reduce-overhead"), 120)
    results = {"device": args.device, "quick": quick, "steps": check.steps,
               "total_s": round(time.monotonic() - check.start, 1)}
    results["summary"] = summary(check)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(f"[gpu_check] wrote {args.out / 'results.json'} and {args.out / 'results.md'} "
          f"({results['total_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
