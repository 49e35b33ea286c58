"""Magenta's MIDI rendering (``gansynth_generate --midi_file``), reproduced and made safe.

Behaviour kept from Magenta 2.1.4 (``gansynth/lib/generate_util.py``): notes with
36 <= pitch <= 84; ``n = int(end_time / secs_per_instrument)`` random instrument latents placed at
``linspace(-0.0001, end_time, n)`` (end_time = the last note's end); each note's z is the slerp
between the two instruments around its start; envelope 10 ms linear attack, sustain
``min(duration, 3 s)``, 300 ms linear release; each note divided by its peak and scaled by
velocity/127, added at its start; clip length ``int(max_end + 3 s)`` seconds; clip divided by its
peak, then halved.

Fixed: fewer than two instruments (a file shorter than ``2 * secs_per_instrument``) gives NaN in
Magenta; here one instrument then voices every note. Peaks are taken as Magenta does (signed max)
unless that is not positive, where Magenta would divide by zero or flip the sound: then the absolute
peak is used, and silence stays silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mido
import numpy as np

from ganspace.engine.latent import slerp
from ganspace.errors import InputError

if TYPE_CHECKING:
    from ganspace.engine.model import GANSynthModel

MIN_PITCH, MAX_PITCH = 36, 84
MAX_NOTE_LENGTH = 3.0  # s
ATTACK, RELEASE = 0.010, 0.3  # s
MAX_VELOCITY = 127.0


@dataclass
class MidiNotes:
    """Notes of a MIDI file, in file order of their starts: each array is [n_notes]."""

    pitches: np.ndarray
    velocities: np.ndarray
    start_times: np.ndarray  # s
    end_times: np.ndarray  # s

    def select(self, mask: np.ndarray) -> MidiNotes:
        """The notes where ``mask`` [n_notes] is true."""
        return MidiNotes(
            self.pitches[mask], self.velocities[mask], self.start_times[mask], self.end_times[mask]
        )


def load_midi(path: str | Path) -> MidiNotes:
    """Read every note of a MIDI file (all tracks and channels, tempo changes applied), sorted by
    start time then pitch, as note_seq does. Raises InputError for unreadable files."""
    try:
        mid = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as exc:
        raise InputError(f"{path}: not a readable MIDI file ({exc})") from None
    open_notes: dict[tuple[int, int], list[tuple[float, int]]] = {}
    notes: list[tuple[float, float, int, int]] = []
    # Seconds from absolute ticks and the tempo map (not summed float deltas, which drift by a
    # sample): t = t_at_last_tempo_change + (tick - tick_at_change) * tempo / ppq / 1e6.
    tick, tempo, change_tick, change_time = 0, 500000, 0, 0.0
    now = 0.0
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        now = change_time + (tick - change_tick) * tempo / mid.ticks_per_beat / 1e6
        if msg.type == "set_tempo":
            tempo, change_tick, change_time = msg.tempo, tick, now
        elif msg.type == "note_on" and msg.velocity > 0:
            open_notes.setdefault((msg.channel, msg.note), []).append((now, msg.velocity))
        elif msg.type in ("note_off", "note_on"):
            started = open_notes.get((msg.channel, msg.note))
            if started:
                t0, vel = started.pop(0)
                notes.append((t0, now, msg.note, vel))
    for (_, pitch), starts in open_notes.items():  # notes never released end with the file
        notes += [(t0, now, pitch, vel) for t0, vel in starts]
    notes.sort(key=lambda n: (n[0], n[2]))
    arr = np.array(notes, dtype=np.float64).reshape(-1, 4)
    return MidiNotes(
        pitches=arr[:, 2].astype(np.int64),
        velocities=arr[:, 3].astype(np.int64),
        start_times=arr[:, 0],
        end_times=arr[:, 1],
    )


def instrument_times(total_time: float, secs_per_instrument: float) -> np.ndarray:
    """Times of the instrument keypoints [n]: Magenta's ``linspace(-0.0001, total, n)``, n >= 1."""
    if secs_per_instrument <= 0:
        raise InputError(f"secs per instrument must be > 0, got {secs_per_instrument}")
    n = max(1, int(total_time / secs_per_instrument))
    return np.linspace(-0.0001, total_time, n)


def note_latents(
    start_times: np.ndarray, z_instruments: np.ndarray, t_instruments: np.ndarray
) -> np.ndarray:
    """Each note's z [n_notes, Z]: slerp between the instruments around its start time."""
    if len(t_instruments) == 1:
        return np.repeat(z_instruments[:1], len(start_times), axis=0)
    zs = []
    for t in start_times:
        idx = int(np.searchsorted(t_instruments, t, side="left")) - 1
        idx = min(max(idx, 0), len(t_instruments) - 2)
        t_left, t_right = t_instruments[idx], t_instruments[idx + 1]
        frac = (t - t_left) / (t_right - t_left)
        zs.append(slerp(z_instruments[idx], z_instruments[idx + 1], frac))
    return np.vstack(zs)


def _peak(x: np.ndarray) -> float:
    """Magenta's signed max where positive, else the absolute peak (0 for silence)."""
    m = float(x.max()) if x.size else 0.0
    return m if m > 0 else float(np.abs(x).max(initial=0.0))


def envelope(note_length: float, sample_rate: int) -> np.ndarray:
    """Magenta's attack-sustain-release envelope [int(sr*min(len,3)) + int(sr*0.3)]."""
    i_attack = int(sample_rate * ATTACK)
    i_sustain = int(sample_rate * min(note_length, MAX_NOTE_LENGTH))
    i_release = int(sample_rate * RELEASE)
    env = np.ones(i_sustain + i_release)
    env[:i_attack] = np.linspace(0.0, 1.0, i_attack)
    env[i_sustain:] = np.linspace(1.0, 0.0, i_release)
    return env


def combine_notes(audio_notes: np.ndarray, notes: MidiNotes, sample_rate: int) -> np.ndarray:
    """Mix notes [n_notes, samples] into a clip [int(max_end + 3) * sr], peak 0.5 (float64)."""
    clip = np.zeros(int(notes.end_times.max() + MAX_NOTE_LENGTH) * sample_rate)
    for i in range(len(audio_notes)):
        env = envelope(notes.end_times[i] - notes.start_times[i], sample_rate)
        note = audio_notes[i, : len(env)] * env[: audio_notes.shape[1]]
        peak = _peak(note)
        if peak > 0:
            note = note / peak
        note = note * (notes.velocities[i] / MAX_VELOCITY)
        start = int(notes.start_times[i] * sample_rate)
        clip[start : start + len(note)] += note[: max(0, len(clip) - start)]
    peak = _peak(clip)
    if peak > 0:
        clip = clip / peak / 2.0
    return clip


@dataclass
class MidiRender:
    """Result of :func:`render_midi`: the clip and what was used to make it."""

    clip: np.ndarray  # [samples] float64, peak 0.5
    notes: MidiNotes
    z_instruments: np.ndarray  # [n_instruments, Z]
    t_instruments: np.ndarray  # [n_instruments] s
    z_notes: np.ndarray  # [n_notes, Z]
    audio_notes: np.ndarray  # [n_notes, audio_length]
    dropped: int  # notes outside 36..84 or unknown to the model


def render_midi(
    model: GANSynthModel,
    notes: MidiNotes,
    secs_per_instrument: float = 6.0,
    seed: int | None = None,
    z_instruments: np.ndarray | None = None,
    t_instruments: np.ndarray | None = None,
) -> MidiRender:
    """Render notes with random instruments (or given ones) as Magenta does.

    Args:
        model: a loaded ``GANSynthModel``.
        notes: from :func:`load_midi`.
        secs_per_instrument: seconds between instrument keypoints.
        seed: for the instrument latents.
        z_instruments, t_instruments: [n, Z] and [n] to use instead of random ones.
    """
    in_range = (notes.pitches >= MIN_PITCH) & (notes.pitches <= MAX_PITCH)
    known = np.isin(notes.pitches, model.pitches)
    kept = notes.select(in_range & known)
    if len(kept.pitches) == 0:
        raise InputError(
            f"no notes to render: the file has {len(notes.pitches)} notes, none with a pitch in "
            f"{MIN_PITCH}..{MAX_PITCH} that the model knows"
        )
    if z_instruments is None:
        t_instruments = instrument_times(float(kept.end_times[-1]), secs_per_instrument)
        z_instruments = model.random_z(len(t_instruments), seed=seed).astype(np.float64)
    elif t_instruments is None or len(t_instruments) != len(z_instruments):
        raise InputError("give one instrument time per instrument latent")
    z_notes = note_latents(kept.start_times, z_instruments, np.asarray(t_instruments))
    audio_notes = model.generate(z_notes.astype(np.float32), kept.pitches)
    clip = combine_notes(audio_notes, kept, model.sample_rate)
    return MidiRender(
        clip=clip,
        notes=kept,
        z_instruments=z_instruments,
        t_instruments=np.asarray(t_instruments),
        z_notes=z_notes,
        audio_notes=audio_notes,
        dropped=int(len(notes.pitches) - len(kept.pitches)),
    )
