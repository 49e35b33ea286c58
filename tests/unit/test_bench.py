"""bench --against: timing workers importing another source tree, round-robin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ganspace
from ganspace.cli import main
from ganspace.engine.benchmark import compare_trees, this_tree
from ganspace.errors import InputError


def test_this_tree_holds_the_package() -> None:
    assert (this_tree() / "ganspace" / "__init__.py").resolve() == Path(ganspace.__file__).resolve()


def test_compare_trees(tmp_path: Path) -> None:
    cfg = {"model": None, "random": "tiny", "device": "cpu", "precision": "float32",
           "threads": 1, "batch": 2}
    a, b = compare_trees([(this_tree(), cfg), (this_tree(), cfg)], repeats=2)
    assert a.tree == b.tree == str(this_tree()) and a.batch == 2
    assert len(a.rounds_ms_per_note) == len(b.rounds_ms_per_note) == 2
    assert a.ms_per_note > 0 and b.ms_per_note > 0
    with pytest.raises(InputError, match="no ganspace package there"):
        compare_trees([(tmp_path, cfg)])
    # a tree whose ganspace cannot generate: the worker fails, the error says which tree
    (tmp_path / "ganspace").mkdir()
    (tmp_path / "ganspace" / "__init__.py").write_text("raise ImportError('broken tree')\n")
    with pytest.raises(InputError, match=f"{tmp_path}: the timing worker failed"):
        compare_trees([(tmp_path, cfg)])


def test_bench_against(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tiny_model_dir), "--batch", "1", "--repeats", "2", "--threads", "1",
                 "--against", str(this_tree()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["against"]
    assert [(r["precision"], r["batch"]) for r in rows] == [("float32", 1)] * 2
    assert all(len(r["rounds_ms_per_note"]) == 2 for r in rows)
    assert len(report["ratios"]) == 1 and f"x {this_tree()} in float32" in report["ratios"][0]
