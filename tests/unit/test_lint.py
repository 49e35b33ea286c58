"""The code base stays ruff-clean and mypy-clean (the configuration is in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUFF_PATHS = ["ganspace", "server", "scripts", "tests"]
MYPY_PATHS = ["ganspace"]  # the server (ganspace_server): tests/server/test_typing.py


def test_ruff_clean() -> None:
    exe = shutil.which("ruff")
    assert exe, "ruff is not installed (pip install -e '.[test]')"
    result = subprocess.run([exe, "check", *RUFF_PATHS], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    assert importlib.util.find_spec("mypy"), "mypy is not installed (pip install -e '.[test]')"
    result = subprocess.run([sys.executable, "-m", "mypy", *MYPY_PATHS], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
