"""Bank commands: render the client's current timbre at every pitch of a range in one job
(``/bank``, for a keyboard that plays without generating at note-on), and choose that timbre's
z slot or noz mode (``/bank.source``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ganspace.engine.model import GANSynthModel, describe_pitches
from ganspace.errors import Cancelled, InputError
from ganspace.space.directions import Directions
from ganspace_server.delivery import BankResult
from ganspace_server.handlers.latents import z_slot
from ganspace_server.handlers.registry import handler
from ganspace_server.handlers.synthesis import need_directions, used_coefficients, z_mode_edit
from ganspace_server.jobs import Job, Result
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server

#: The /latest tag every /bank carries: a client's newer bank supersedes its older one. No client
#: tag can equal it (names never hold "/").
BANK_TAG = "/bank"


def render_bank(model: GANSynthModel, z: np.ndarray | None, pitches: Sequence[int],
                directions: Directions | None, coefficients: np.ndarray | None,
                progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None) -> np.ndarray:
    """One timbre at many pitches: float32 [len(pitches), audio_length].

    Args:
        model: the model.
        z: one latent [latent_size], or None for noz mode (needs ``directions``).
        pitches: MIDI pitches of the model.
        directions, coefficients: the GANSpace edit (as :meth:`GANSynthModel.generate`).
        progress: called as ``progress(done, total)`` after each batch of
            ``model.batch_size`` notes.
        cancel: set -> :class:`~ganspace.errors.Cancelled` before the next batch.
    """
    n = len(pitches)
    out = np.empty((n, model.audio_length), np.float32)
    for start in range(0, n, model.batch_size):
        if cancel is not None and cancel.is_set():
            raise Cancelled("bank render cancelled")
        end = min(n, start + model.batch_size)
        zs = None if z is None else np.repeat(z[None], end - start, axis=0)
        out[start:end] = model.generate(zs, list(pitches[start:end]), directions, coefficients)
        if progress is not None:
            progress(end, n)
    return out


def _timbre(server: Server, s: Session
            ) -> tuple[np.ndarray | None, Directions | None, np.ndarray | None]:
    """The client's bank timbre: (z or None for noz, directions, coefficients), checked now."""
    if s.bank_zslot < 0:
        d = need_directions(server)
        return None, d, used_coefficients(s.coefficients, d, 1)
    return (z_slot(s, s.bank_zslot), *z_mode_edit(server, s))


@handler("/bank.source")
def bank_source(server: Server, s: Session, r: Request) -> None:
    """Choose the z slot (or -1: noz mode) /bank renders."""
    s.bank_zslot = r["zslot"]
    server.done(s, "/bank.source", r["zslot"])


@handler("/bank")
def bank(server: Server, s: Session, r: Request) -> None:
    """Render the current timbre at every model pitch in lo..hi (latest wins per client)."""
    if s.delivery == "play":
        raise InputError("a bank needs file or stream delivery: send /delivery file (or stream)")
    m = server.state.model
    pitches = [p for p in m.pitches if r["lo"] <= p <= r["hi"]]
    if not pitches:
        raise InputError(f"no pitch of this model in {r['lo']}..{r['hi']} (it knows "
                         f"{describe_pitches(m.pitches)})")
    z, d, c = _timbre(server, s)
    name = r["name"]
    r.tag = BANK_TAG

    def run(job: Job) -> Result:
        audio = render_bank(m, z, pitches, d, c, server.progress(job), job.cancel)
        return BankResult([], m.sample_rate, (name, *pitches), name=name, pitches=pitches,
                          audio=audio)

    server.submit(s, r, run, total=len(pitches))
