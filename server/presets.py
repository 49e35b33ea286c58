"""Presets: a client's state as a JSON file in the server's presets folder.

A preset holds the z slots, every HALLU step's coefficients and the current step, the pitch, the
HALLU settings and the bank source, plus the model's fingerprint and the directions' layer it was
made with. Names are plain words (:data:`~ganspace_server.protocol.PRESET_NAME`), never paths;
files are JSON only (never pickles), written atomically, and only inside the presets folder.
Everything read back is checked (types, sizes, ranges) before any of it is applied.

File format (``<name>.json``)::

    {"format": "ganspacesynth-preset", "format_version": 1,
     "model": {"name": "default", "fingerprint": "3f9c...", "latent_size": 64},
     "directions": {"layer": "conv0", "count": 512} | null,
     "pitch": 48, "bank_zslot": 0,
     "z": {"0": [...latent floats...], "3": [...]},
     "steps": [[c0, c1, ...], ...], "current": 0,
     "settings": {"interp": 4, "spacing": 0.5, "trim": 0.0, "attack": 0.01, "sustain": 1.0,
                  "release": 1.0}}

``steps`` keep every step but only up to the highest non-zero coefficient of any of them.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganspace.engine.model import GANSynthModel
from ganspace.errors import InputError
from ganspace.space.directions import Directions
from ganspace_server import protocol
from ganspace_server.session import Session

FORMAT = "ganspacesynth-preset"
FORMAT_VERSION = 1
MAX_BYTES = 8 * 2**20  #: largest preset file read back
SUFFIX = ".json"


def default_presets_dir() -> Path:
    """``$XDG_DATA_HOME/ganspacesynth/presets`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ganspacesynth" / "presets"


def _path(folder: Path, name: str) -> Path:
    """The file of preset ``name`` (a plain word: checked again here, whatever the caller did)."""
    if not re.fullmatch(protocol.PRESET_NAME, name) or len(name) > protocol.NAME_MAX:
        raise InputError("preset names are plain words: letters, digits, _ and - (never paths)")
    return folder / f"{name}{SUFFIX}"


def names(folder: Path) -> list[str]:
    """The presets in ``folder``, sorted (at most :data:`~ganspace_server.protocol.MAX_PRESETS`).
    """
    if not folder.is_dir():
        return []
    found = sorted(p.stem for p in folder.iterdir()
                   if p.suffix == SUFFIX and re.fullmatch(protocol.PRESET_NAME, p.stem)
                   and p.is_file())
    return found[:protocol.MAX_PRESETS]


def snapshot(s: Session, model: GANSynthModel, model_name: str,
             directions: Directions | None) -> dict[str, Any]:
    """The client's state as the JSON-ready preset dictionary."""
    steps = np.stack(s.steps)
    used = np.flatnonzero(steps.any(axis=0))
    width = int(used[-1]) + 1 if used.size else 0
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": {"name": model_name, "fingerprint": model.fingerprint,
                  "latent_size": model.latent_size},
        "directions": None if directions is None else {"layer": directions.layer,
                                                       "count": directions.count},
        "pitch": s.pitch, "bank_zslot": s.bank_zslot,
        "z": {str(k): [float(x) for x in v] for k, v in sorted(s.z.items())},
        "steps": [[float(x) for x in row[:width]] for row in steps],
        "current": s.current,
        "settings": {k: float(s.settings[k]) for k in protocol.HALLU_SETTINGS},
    }


def save(folder: Path, name: str, data: dict[str, Any]) -> Path:
    """Write preset ``name`` (replacing one of that name) atomically; return its path.

    Raises:
        InputError: a bad name, or the folder already holds the most presets.
    """
    path = _path(folder, name)
    folder.mkdir(parents=True, exist_ok=True)
    if not path.exists() and len(names(folder)) >= protocol.MAX_PRESETS:
        raise InputError(f"the presets folder already holds {protocol.MAX_PRESETS} presets")
    tmp = folder / f".{name}{SUFFIX}.part"
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)  # a reader never sees a half-written preset
    return path


@dataclass(frozen=True)
class Preset:
    """A checked preset, ready to apply (arrays are float32)."""

    name: str
    model_name: str
    fingerprint: str
    layer: str | None
    pitch: int
    bank_zslot: int
    z: dict[int, np.ndarray]
    steps: list[np.ndarray]
    current: int
    settings: dict[str, float]


def read(folder: Path, name: str) -> Preset:
    """Read and check preset ``name``.

    Raises:
        InputError: no such preset, or a file that is not a valid preset (the reason says what).
    """
    path = _path(folder, name)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InputError(f"no preset {name} (see /preset.list)") from None
    if real.parent != folder.resolve() or not real.is_file():
        raise InputError(f"preset {name}: not a file of the presets folder")
    if real.stat().st_size > MAX_BYTES:
        raise InputError(f"preset {name}: larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(real.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"preset {name}: not readable JSON ({exc})") from None
    try:
        return _check(name, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"preset {name}: damaged ({exc})") from None


def _floats(values: Any, limit: float, longest: int, what: str) -> np.ndarray:
    if not isinstance(values, list) or len(values) > longest:
        raise ValueError(f"{what} must be a list of at most {longest} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               and abs(v) <= limit for v in values):
        raise ValueError(f"{what} must hold finite numbers within +-{limit:g}")
    return np.asarray(values, np.float32)


def _int(value: Any, lo: int, hi: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer in {lo}..{hi}")
    return value


def _check(name: str, data: Any) -> Preset:
    """Check every field of a preset read from disk (see the module docstring)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {data.get('format_version')} is not "
                         f"{FORMAT_VERSION}")
    model = data["model"]
    if not isinstance(model["name"], str) or not isinstance(model["fingerprint"], str):
        raise ValueError("model name and fingerprint must be strings")
    latent = _int(model["latent_size"], 1, 65536, "model.latent_size")
    d = data["directions"]
    layer = None if d is None else d["layer"]
    if layer is not None and not isinstance(layer, str):
        raise ValueError("directions.layer must be a string")
    z_in = data["z"]
    if not isinstance(z_in, dict) or len(z_in) > protocol.Z_SLOTS:
        raise ValueError(f"z must map at most {protocol.Z_SLOTS} slots to latents")
    z: dict[int, np.ndarray] = {}
    for key, vec in z_in.items():
        slot = _int(int(key) if str(key).isdigit() else -1, 0, protocol.Z_SLOTS - 1, "a z slot")
        z[slot] = _floats(vec, protocol.Z_LIMIT, latent, f"z slot {slot}")
        if len(z[slot]) != latent:
            raise ValueError(f"z slot {slot} holds {len(z[slot])} values, not {latent}")
    steps_in = data["steps"]
    if not isinstance(steps_in, list) or not 1 <= len(steps_in) <= protocol.MAX_STEPS:
        raise ValueError(f"steps must be a list of 1..{protocol.MAX_STEPS} steps")
    steps = []
    for i, row in enumerate(steps_in):
        vec = np.zeros(protocol.COEF_MAX, np.float32)
        values = _floats(row, protocol.COEF_LIMIT, protocol.COEF_MAX, f"step {i}")
        vec[:len(values)] = values
        steps.append(vec)
    settings_in = data["settings"]
    if not isinstance(settings_in, dict) or set(settings_in) != set(protocol.HALLU_SETTINGS):
        raise ValueError(f"settings must hold exactly {', '.join(protocol.HALLU_SETTINGS)}")
    settings: dict[str, float] = {}
    for key, value in settings_in.items():
        hi = protocol.MAX_INTERP if key == "interp" else protocol.MAX_SETTING_SECONDS
        checked = _floats([value], hi, 1, f"setting {key}")[0]
        if checked < 0 or (key == "interp" and not float(checked).is_integer()):
            raise ValueError(f"setting {key} is out of range")
        settings[key] = int(checked) if key == "interp" else float(checked)
    return Preset(name, model["name"], model["fingerprint"], layer,
                  _int(data["pitch"], 0, protocol.MIDI_MAX, "pitch"),
                  _int(data["bank_zslot"], -1, protocol.Z_SLOTS - 1, "bank_zslot"), z, steps,
                  _int(data["current"], 0, len(steps) - 1, "current"), settings)


def apply(p: Preset, s: Session, model: GANSynthModel, model_name: str,
          directions: Directions | None, what: str) -> None:
    """Load a checked preset into the session: everything (``what`` = ``all``) or only the
    coefficients (``coef``: the HALLU steps and the current step).

    Raises:
        InputError: (``all``) the preset was made for another model or directions layer; nothing
            changed.
    """
    if what == "all":
        if p.fingerprint != model.fingerprint:
            raise InputError(f"preset {p.name} was made for model {p.model_name} "
                             f"({p.fingerprint}), not {model_name} ({model.fingerprint}): "
                             f"load only its coefficients with /preset.load {p.name} coef")
        loaded = None if directions is None else directions.layer
        if p.layer is not None and p.layer != loaded and any(x.any() for x in p.steps):
            raise InputError(f"preset {p.name} was made with directions of layer {p.layer}, "
                             f"this server has {loaded or 'none'} loaded: load those directions "
                             f"first, or only its coefficients with /preset.load {p.name} coef")
    s.steps = [x.copy() for x in p.steps]
    s.current = p.current
    used = np.flatnonzero(np.stack(p.steps).any(axis=0))
    s.highest_set = int(used[-1]) if used.size else -1
    if what == "all":
        s.z = {k: v.copy() for k, v in p.z.items()}
        s.pitch = p.pitch if p.pitch in model.pitches else s.pitch
        s.bank_zslot = p.bank_zslot
        s.settings = dict(p.settings)
