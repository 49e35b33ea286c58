"""``ganspacesynth serve`` in a subprocess, the example composition script end to end, the CLI's
refusals, and a bench-server smoke run."""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ganspace.cli import main as cli_main
from ganspace_server import cli as server_cli
from ganspace_server.bench_server import run_bench
from ganspace_server.client import Client

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``ganspacesynth serve --model <tiny> --port 0 --allow-quit`` and its port."""
    cache = tmp_path_factory.mktemp("served-cache")
    exe = shutil.which("ganspacesynth")
    assert exe, "the ganspacesynth console command is not installed (pip install -e .)"
    proc = subprocess.Popen(
        [exe, "serve", "--model", str(tiny_model_dir),
         "--port", "0", "--device", "cpu", "--cache-dir", str(cache), "--allow-quit"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    port = 0
    try:
        while not port:
            line = lines.get(timeout=START_TIMEOUT)
            if "server ready on" in line:
                port = int(line.rsplit(":", 1)[1])
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_compose_example_end_to_end_then_quit(served: tuple[subprocess.Popen[str], int],
                                              tiny_model_dir: Path, tmp_path: Path) -> None:
    proc, port = served
    out = tmp_path / "piece.wav"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compose_example.py"), "--port", str(port),
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and len(audio) == round(3.5 * sr) + 64000
    assert abs(np.max(np.abs(audio)) - 0.8) < 1e-3
    with Client("127.0.0.1", port, timeout=20) as c:
        assert c.status().model == tiny_model_dir.name
        c.call("/quit")
    assert proc.wait(timeout=20) == 0


def test_serve_without_a_default_model_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(server_cli, "REPO_MODELS", tmp_path / "repo")
    monkeypatch.setattr(server_cli, "INSTALLED_MODELS", tmp_path / "installed")
    assert cli_main(["serve"]) == 2
    assert "no default model shipped yet" in capsys.readouterr().err


def test_default_model_is_found_in_the_checkout_or_the_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    monkeypatch.setattr(server_cli, "REPO_MODELS", tmp_path / "repo")
    monkeypatch.setattr(server_cli, "INSTALLED_MODELS", tmp_path / "installed")
    assert server_cli.default_model_dir() == tmp_path / "repo" / "default"
    shutil.copytree(tiny_model_dir, tmp_path / "installed" / "default")
    assert server_cli.default_model_dir() == tmp_path / "installed" / "default"
    shutil.copytree(tiny_model_dir, tmp_path / "repo" / "default")
    assert server_cli.default_model_dir() == tmp_path / "repo" / "default"


def test_serve_refuses_a_public_address_without_allow(tiny_model_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0",
                     "--device", "cpu"]) == 2
    assert "--allow" in capsys.readouterr().err


def test_bench_server_smoke() -> None:
    reports = run_bench("tiny", 2, "cpu")
    assert [r.mode for r in reports] == ["file", "stream"]
    assert all(np.isfinite(r.overhead_p50) and r.generate_p50 > 0 for r in reports)
