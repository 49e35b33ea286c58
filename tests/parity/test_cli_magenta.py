"""Engine verbs on Magenta's fixture checkpoint: import, info, clear checkpoint errors."""

from __future__ import annotations

import json
import shutil

from ganspace.cli import main
from ganspace.formats import load_model


def test_import_and_info(magenta_small, tmp_path, capsys):
    out = tmp_path / "native"
    assert main(["import", str(magenta_small), str(out)]) == 0
    assert load_model(out).provenance["source_format"] == "magenta"
    assert main(["import", str(magenta_small), str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pitches"] == "24-84" and info["parameters"] > 0 and info["progress"] == 6.0
    assert info["provenance"]["global_step"] == 11_000_000
    assert info["layers"]["conv0"] == [2, 16, 32]
    assert main(["info", str(magenta_small)]) == 0
    text = capsys.readouterr().out
    assert "num_blocks: 7" in text and "fmap_base: 1024" in text


def test_checkpoint_errors_are_clear(magenta_small, tmp_path, capsys):
    copy = tmp_path / "ck"
    shutil.copytree(magenta_small, copy)
    for f in (copy / "stage_00012").iterdir():
        f.chmod(0o644)
    data = next((copy / "stage_00012").glob("*.data-*"))
    raw = bytearray(data.read_bytes())
    for i in range(0, len(raw), 4096):  # hits generator EMA tensors as well as the others
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert main(["info", str(copy)]) == 2
    assert "checksum" in capsys.readouterr().err.lower()
    next((copy / "stage_00012").glob("*.index")).unlink()
    assert main(["info", str(copy)]) == 2
    assert "index" in capsys.readouterr().err.lower()
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no such model folder" in capsys.readouterr().err
