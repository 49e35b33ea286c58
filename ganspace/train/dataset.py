"""Training datasets: chop long recordings, pad one-shots, build and load a dataset folder.

The course workflow of the original GANSpaceSynth, without TensorFlow:

- :func:`chop`: long recordings -> 4 s, 16 kHz mono chunks every ``hop`` seconds, all labelled
  with one pitch (default 32), named ``<stem>-<index>_<pitch>.wav``.
- :func:`pad`: one-shot sounds -> peak-normalised, zero-padded or trimmed to 4 s.
- :func:`make_dataset`: validate a folder of ``<instrument>_<pitch>.<ext>`` (16 kHz, mono,
  64000 frames, any format soundfile reads) and write a dataset folder:

  - ``audio.npy``: float32 ``[N, 64000]`` (memory-mapped when training),
  - ``dataset.json``: ``{"format": "ganspacesynth-dataset", "format_version": 1, "count": N,
    "sample_rate": 16000, "audio_length": 64000, "pitches": [sorted distinct], "items":
    [{"name", "instrument", "pitch", "source"}, ...]}`` (row i of ``audio.npy`` is item i),
  - ``meta.json``: the SopiMlab format ``{"<instrument>_<pitch>": {"pitch": P, "instrument_str":
    ..., "note_str": ...}}``, which the trained model's pitch set also follows,
  - ``latents.npy`` (optional, synthetic datasets only): float32 ``[N, L]``, the teacher latent
    each note was rendered from (:mod:`ganspace.train.synthdata`); the reconstruction objective of
    the trainer needs it.

Input rates other than 16 kHz are resampled by :func:`resample` (``scipy.signal.resample_poly``,
a polyphase FIR with a Kaiser window) in ``chop`` and ``pad``; ``make_dataset`` refuses them.
Nothing is ever overwritten: an existing output file or a non-empty output folder is an error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ganspace.engine.audio import AUDIO_LENGTH, SAMPLE_RATE
from ganspace.errors import InputError

DATASET_FORMAT = "ganspacesynth-dataset"
DATASET_VERSION = 1
AUDIO_FILE = "audio.npy"
DATASET_JSON = "dataset.json"
META_JSON = "meta.json"
LATENTS_FILE = "latents.npy"
#: Chunks whose absolute peak is below this are digital silence and are skipped by :func:`chop`.
SILENCE_PEAK = 1e-4
_NAME = re.compile(r"^(?P<instrument>.+)_(?P<pitch>\d{1,3})$")


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any file soundfile can read, averaging channels.

    Returns:
        ``(audio float32 [T], sample_rate Hz)``.
    """
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"{path}: cannot read audio ({exc})") from None
    return data.mean(axis=1), int(rate)


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``audio`` [T] from ``rate`` to ``target`` Hz with ``scipy.signal.resample_poly``.

    Returns:
        float32 [round(T * target / rate)] (the input itself when the rates match).
    """
    if rate == target:
        return audio
    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise InputError(
            f"audio at {rate} Hz must be resampled to {target} Hz, which needs scipy "
            "(pip install scipy), or convert it to 16 kHz beforehand"
        ) from None
    g = math.gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def _check_pitch(pitch: int) -> int:
    if not 0 <= int(pitch) <= 127:
        raise InputError(f"pitch {pitch} is not a MIDI pitch (0..127)")
    return int(pitch)


def _write_all(items: list[tuple[Path, np.ndarray]]) -> list[Path]:
    """Write 16 kHz float32 WAVs after checking that none of them exists yet."""
    existing = [str(p) for p, _ in items if p.exists()]
    if existing:
        raise InputError(f"refusing to overwrite {len(existing)} file(s), e.g. {existing[0]}")
    for path, audio in items:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")
    return [p for p, _ in items]


def _safe_stem(path: Path) -> str:
    """File stem with anything but letters, digits, ``-`` and ``.`` replaced by ``-`` (so the
    instrument part never ends in ``_<digits>``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", path.stem).strip("-") or "sound"


def chop(
    inputs: list[str | Path], out_dir: str | Path, pitch: int = 32, hop: float = 1.0
) -> list[Path]:
    """Cut recordings into 4 s chunks every ``hop`` seconds.

    A recording of T samples (after resampling to 16 kHz) gives ``floor((T - 64000) / hop) + 1``
    chunks; one shorter than 4 s gives one zero-padded chunk. Chunks of digital silence (peak <
    :data:`SILENCE_PEAK`) are skipped; the index in the name still counts them.

    Args:
        inputs: audio files (any rate, any channel count).
        out_dir: folder for ``<stem>-<index:05d>_<pitch>.wav`` (16 kHz mono float32).
        pitch: MIDI pitch label of every chunk (the course used 32).
        hop: seconds between chunk starts (> 0).
    Returns:
        The written paths.
    """
    pitch = _check_pitch(pitch)
    step = round(hop * SAMPLE_RATE)
    if step <= 0:
        raise InputError(f"hop must be positive, got {hop}")
    out = Path(out_dir)
    items: list[tuple[Path, np.ndarray]] = []
    for src in map(Path, inputs):
        audio, rate = read_mono(src)
        audio = resample(audio, rate)
        if len(audio) < AUDIO_LENGTH:
            audio = np.pad(audio, (0, AUDIO_LENGTH - len(audio)))
        count = (len(audio) - AUDIO_LENGTH) // step + 1
        for i in range(count):
            chunk = audio[i * step : i * step + AUDIO_LENGTH]
            if np.max(np.abs(chunk)) >= SILENCE_PEAK:
                items.append((out / f"{_safe_stem(src)}-{i:05d}_{pitch}.wav", chunk))
    return _write_all(items)


def pad(
    inputs: list[str | Path], out_dir: str | Path, pitch: int | None = None, peak: float = 1.0
) -> list[Path]:
    """Peak-normalise one-shot sounds and zero-pad (or trim) them to 4 s.

    Args:
        inputs: audio files. A file named ``<instrument>_<pitch>`` keeps its name and pitch
            unless ``pitch`` is given; other files need ``pitch``.
        out_dir: folder for ``<instrument>_<pitch>.wav`` (16 kHz mono float32).
        pitch: MIDI pitch label for every file (overrides names).
        peak: absolute peak after normalisation (0 < peak <= 1).
    Returns:
        The written paths.
    """
    if not 0.0 < peak <= 1.0:
        raise InputError(f"peak must be in (0, 1], got {peak}")
    out = Path(out_dir)
    items: list[tuple[Path, np.ndarray]] = []
    for src in map(Path, inputs):
        match = _NAME.match(src.stem)
        if pitch is not None:
            name = f"{_safe_stem(src)}_{_check_pitch(pitch)}"
        elif match:
            name = f"{match['instrument']}_{_check_pitch(int(match['pitch']))}"
        else:
            raise InputError(f"{src}: name is not <instrument>_<pitch>; give a pitch")
        audio, rate = read_mono(src)
        audio = resample(audio, rate)[:AUDIO_LENGTH]
        top = float(np.max(np.abs(audio))) if len(audio) else 0.0
        if not top > SILENCE_PEAK:
            raise InputError(f"{src}: silent (peak {top:.2g}), cannot normalise")
        audio = np.pad(audio * (peak / top), (0, AUDIO_LENGTH - len(audio)))
        items.append((out / f"{name}.wav", audio.astype(np.float32)))
    return _write_all(items)


@dataclass(frozen=True)
class Dataset:
    """A dataset folder: ``audio`` float32 [N, 64000] (memory-mapped), ``pitches`` int64 [N]
    (MIDI), ``names`` [N] (``<instrument>_<pitch>``), ``path``, and for synthetic datasets the
    teacher ``latents`` float32 [N, L] (else None)."""

    path: Path
    audio: np.ndarray
    pitches: np.ndarray
    names: list[str]
    latents: np.ndarray | None = None

    @property
    def pitch_set(self) -> list[int]:
        """Sorted distinct pitches: the model's one-hot classes."""
        return sorted({int(p) for p in self.pitches})

    def labels(self) -> np.ndarray:
        """int64 [N] index of each item's pitch in :attr:`pitch_set`."""
        return np.searchsorted(np.asarray(self.pitch_set), self.pitches).astype(np.int64)


_AUDIO_EXTENSIONS = {f".{ext.lower()}" for ext in sf.available_formats()} | {".aif", ".oga"}


def make_dataset(wav_dir: str | Path, out_dir: str | Path, max_errors: int = 20) -> Dataset:
    """Validate ``<instrument>_<pitch>`` audio files and write a dataset folder (module doc).

    Every file must be 16 kHz, mono and exactly 64000 frames; all problems are collected and
    reported together (up to ``max_errors`` lines).

    Args:
        wav_dir: folder of audio files (files with other extensions are ignored).
        out_dir: new folder (must not exist, or be empty).
    Returns:
        The written :class:`Dataset`.
    """
    src = Path(wav_dir)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; refusing to overwrite")
    files = sorted(p for p in src.iterdir() if p.is_file()
                   and p.suffix.lower() in _AUDIO_EXTENSIONS)
    if not files:
        raise InputError(f"{src}: no audio files")
    errors: list[str] = []
    seen: dict[str, Path] = {}
    items = []
    for path in files:
        match = _NAME.match(path.stem)
        if not match or not 0 <= int(match["pitch"]) <= 127:
            errors.append(f"{path.name}: name is not <instrument>_<pitch> with a MIDI pitch 0..127")
            continue
        if path.stem in seen:
            errors.append(f"{path.name}: same name as {seen[path.stem].name}")
            continue
        seen[path.stem] = path
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            errors.append(f"{path.name}: unreadable ({exc})")
            continue
        if info.samplerate != SAMPLE_RATE:
            errors.append(f"{path.name}: {info.samplerate} Hz, needs {SAMPLE_RATE} Hz "
                          "(use `ganspacesynth dataset chop` or `pad` to resample)")
        if info.channels != 1:
            errors.append(f"{path.name}: {info.channels} channels, needs mono")
        if info.frames != AUDIO_LENGTH:
            errors.append(f"{path.name}: {info.frames} frames, needs {AUDIO_LENGTH} (4 s); "
                          "use `ganspacesynth dataset pad` or `chop`")
        items.append((path, match["instrument"], int(match["pitch"])))
    if errors:
        more = f"\n... and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise InputError(f"{src}: {len(errors)} problem(s):\n" + "\n".join(errors[:max_errors])
                         + more)
    audio = np.zeros((len(items), AUDIO_LENGTH), dtype=np.float32)
    for i, (path, _, _) in enumerate(items):
        audio[i] = read_mono(path)[0]
    if not np.isfinite(audio).all():
        raise InputError(f"{src}: audio contains NaN or inf")
    return save_dataset(out, audio, [p for _, _, p in items], [inst for _, inst, _ in items],
                        [path.name for path, _, _ in items])


def save_dataset(out_dir: str | Path, audio: np.ndarray, pitches: list[int],
                 instruments: list[str], sources: list[str],
                 latents: np.ndarray | None = None) -> Dataset:
    """Write a dataset folder (module doc) from notes already in memory.

    Args:
        out_dir: new folder (must not exist, or be empty).
        audio: float32 [N, 64000] at 16 kHz.
        pitches: N MIDI pitches.
        instruments: N instrument names (item i is named ``<instruments[i]>_<pitches[i]>``).
        sources: N source descriptions (file names).
        latents: optional float32 [N, L] teacher latents (``latents.npy``).
    Returns:
        The written :class:`Dataset`.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; refusing to overwrite")
    n = len(pitches)
    if audio.shape != (n, AUDIO_LENGTH) or len(instruments) != n or len(sources) != n:
        raise InputError(f"save_dataset: {n} pitches but audio {list(audio.shape)}, "
                         f"{len(instruments)} instruments, {len(sources)} sources")
    if latents is not None and (latents.ndim != 2 or len(latents) != n):
        raise InputError(f"save_dataset: latents must be [{n}, L], got {list(latents.shape)}")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / AUDIO_FILE, np.asarray(audio, dtype=np.float32))
    if latents is not None:
        np.save(out / LATENTS_FILE, np.asarray(latents, dtype=np.float32))
    index = {
        "format": DATASET_FORMAT,
        "format_version": DATASET_VERSION,
        "count": n,
        "sample_rate": SAMPLE_RATE,
        "audio_length": AUDIO_LENGTH,
        "pitches": sorted(set(int(p) for p in pitches)),
        "items": [{"name": f"{inst}_{p}", "instrument": inst, "pitch": int(p), "source": src}
                  for inst, p, src in zip(instruments, pitches, sources, strict=True)],
    }
    meta = {f"{inst}_{p}": {"pitch": int(p), "instrument_str": inst, "note_str": f"{inst}_{p}"}
            for inst, p in zip(instruments, pitches, strict=True)}
    (out / DATASET_JSON).write_text(json.dumps(index, indent=1) + "\n")
    (out / META_JSON).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return load_dataset(out)


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset folder written by :func:`make_dataset` (audio memory-mapped, read-only)."""
    folder = Path(path)
    try:
        index = json.loads((folder / DATASET_JSON).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder}: not a dataset folder ({DATASET_JSON}: {exc}); build one "
                         "with `ganspacesynth dataset make`") from None
    if index.get("format") != DATASET_FORMAT or index.get("format_version") != DATASET_VERSION:
        raise InputError(f"{folder / DATASET_JSON}: unknown dataset format or version")
    try:
        audio = np.load(folder / AUDIO_FILE, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / AUDIO_FILE}: unreadable ({exc})") from None
    items = index["items"]
    if audio.dtype != np.float32 or audio.shape != (len(items), AUDIO_LENGTH):
        raise InputError(f"{folder / AUDIO_FILE}: expected float32 [{len(items)}, {AUDIO_LENGTH}],"
                         f" got {audio.dtype} {list(audio.shape)}")
    latents = None
    if (folder / LATENTS_FILE).is_file():
        try:
            latents = np.load(folder / LATENTS_FILE)
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder / LATENTS_FILE}: unreadable ({exc})") from None
        if latents.dtype != np.float32 or latents.ndim != 2 or len(latents) != len(items):
            raise InputError(f"{folder / LATENTS_FILE}: expected float32 [{len(items)}, L], got "
                             f"{latents.dtype} {list(latents.shape)}")
    return Dataset(
        path=folder,
        audio=audio,
        pitches=np.array([int(it["pitch"]) for it in items], dtype=np.int64),
        names=[str(it["name"]) for it in items],
        latents=latents,
    )
