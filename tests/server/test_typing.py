"""The server package is mypy-clean (settings: ``[[tool.mypy.overrides]]`` in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_server(tmp_path: Path) -> None:
    exe = shutil.which("mypy")
    assert exe, "mypy is not installed (pip install -e '.[test]')"
    # The folder server/ is installed as the package ganspace_server: give mypy that name for it.
    (tmp_path / "ganspace_server").symlink_to(ROOT / "server", target_is_directory=True)
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    # Imported ganspace modules are analysed for their types, their own errors not reported here.
    result = subprocess.run([exe, "--config-file", str(ROOT / "pyproject.toml"),
                             "--follow-imports=silent", "-p", "ganspace_server"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
