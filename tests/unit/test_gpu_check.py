"""scripts/gpu_check.sh, the one-call GPU check, runs on the CPU (--device cpu --quick), install
step included (from an empty wheel folder: everything it needs is already installed here)."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["environment", "parity", "fidelity", "throughput", "latency", "osc_round_trip", "pca",
         "training", "throughput_compile"]


def test_requirements_are_setup_cfgs_without_torch() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    wanted = [r for r in cfg["options"]["install_requires"].split() if not r.startswith("torch")]
    lines = [line for line in (ROOT / "scripts" / "gpu_check_requirements.txt").read_text()
             .splitlines() if line and not line.startswith("#")]
    assert lines == [*wanted, "setuptools>=68"]


def test_gpu_check_quick_on_cpu(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed for scripts/gpu_check.sh"
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "GANSPACE_CPU_BF16"}
    done = subprocess.run(
        [bash, str(ROOT / "scripts" / "gpu_check.sh"), str(out), "--python", sys.executable,
         "--wheels", str(tmp_path / "wheels"), "--device", "cpu", "--quick", "--budget-s", "600"],
        capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["steps"]) == STEPS
    for name, step in results["steps"].items():
        assert "result" in step, (name, step)
    steps = {k: v["result"] for k, v in results["steps"].items()}
    # the installed copy ran, not the checkout
    assert not Path(steps["environment"]["ganspace"]).is_relative_to(ROOT)
    assert steps["parity"]["ok"] and steps["parity"]["generator_rel"] <= 1e-4
    assert steps["throughput"]["float32"]["2"]["notes_per_s"] > 0
    assert steps["latency"]["float32"]["p50_ms"] > 0
    assert steps["osc_round_trip"]["stream"]["total_p50_ms"] > 0
    assert steps["pca"]["implied_4m_s"] > 0
    assert steps["training"]["tiny"]["rows"]["float32"]["images_per_s"] > 0
    assert set(results["summary"]["measured"]) == {"notes_per_s_reduced", "one_note_ms",
                                                   "osc_round_trip_p50_ms", "pca_4m_s"}
    md = (out / "results.md").read_text()
    assert md.startswith("# GANSpaceSynth GPU check") and "| osc_round_trip | " in md


def test_gpu_check_refuses_bad_options_and_a_python_without_torch(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    script = str(ROOT / "scripts" / "gpu_check.sh")
    bad = subprocess.run([bash, script, str(tmp_path / "o"), "--bogus"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
    nopy = subprocess.run([bash, script, str(tmp_path / "o"), "--python", "/nonexistent/py"],
                          capture_output=True, text=True, timeout=60)
    assert nopy.returncode == 2 and "cannot import torch" in nopy.stderr


def test_train_default_gpu_continues_a_committed_state(tmp_path: Path) -> None:
    """scripts/train_default_gpu.sh on the CPU, install included: it resumes the given state
    (a tiny recon run here, instead of models/default/training), trains to the end, evaluates."""
    from ganspace.train.synthdata import render_dataset
    from ganspace.train.trainer import TrainOptions, train

    bash = shutil.which("bash")
    assert bash, "bash is needed for scripts/train_default_gpu.sh"
    ds = render_dataset(tmp_path / "ds", [48, 55, 60], notes_per_pitch=2, seed=5)
    first = train(TrainOptions(dataset=ds.path, out=tmp_path / "first", config="tiny-recon",
                               images=8, device="cpu", threads=1, progress_bar=False,
                               precision="float32"))
    state = first / "train" / "checkpoint"
    shutil.copy(first / "train" / "log.jsonl", state / "log.jsonl")  # as --publish-state does
    out = tmp_path / "gpu"
    done = subprocess.run(
        [bash, str(ROOT / "scripts" / "train_default_gpu.sh"), str(out), "--python",
         sys.executable, "--wheels", str(tmp_path / "wheels"), "--device", "cpu", "--minutes",
         "5", "--dataset", str(ds.path), "--state", str(state), "--images", "64"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = json.loads((out / "run" / "model.json").read_text())
    assert model["provenance"]["images_seen"] == 64  # tiny-recon's total, continued from 8
    log = [json.loads(line) for line in (out / "run" / "train" / "log.jsonl").read_text()
           .splitlines()]
    assert [r["images"] for r in log] == [8, 64]  # the state's last line, then this run's
    report = json.loads((out / "eval.json").read_text())
    assert report["pitch"]["notes"] == 200
