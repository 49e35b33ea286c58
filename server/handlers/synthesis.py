"""Synthesis commands (jobs): one note from a z slot, one note without z, a batch of notes; and
the coefficient checks the hallucination commands share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ganspace.errors import InputError
from ganspace.space.directions import Directions
from ganspace_server.handlers.latents import z_slot
from ganspace_server.handlers.registry import handler
from ganspace_server.jobs import Job, Result
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server


def used_coefficients(rows: np.ndarray, d: Directions, least: int) -> np.ndarray:
    """Coefficients up to the last non-zero one (at least ``least``), checked against K.

    Raises:
        InputError: a coefficient beyond the directions' count is set.
    """
    used = np.flatnonzero(np.atleast_2d(rows).any(axis=0))
    k = int(used[-1]) + 1 if used.size else 0
    if k > d.count:
        raise InputError(f"coefficient {k - 1} is set but the directions hold only "
                         f"{d.count}")
    return np.array(rows[..., :max(k, least)], np.float32)


def z_mode_edit(server: Server, s: Session) -> tuple[Directions | None, np.ndarray | None]:
    """Directions and coefficients for z mode: None, None unless directions are loaded and
    some coefficient is non-zero."""
    d = server.state.directions
    if d is None or not s.coefficients.any():
        return None, None
    return d, used_coefficients(s.coefficients, d, 1)


def need_directions(server: Server) -> Directions:
    """The loaded directions.

    Raises:
        InputError: none are loaded.
    """
    d = server.state.directions
    if d is None:
        raise InputError("no directions loaded: send /directions.load <path> first")
    return d


@handler("/synth")
def synth(server: Server, s: Session, r: Request) -> None:
    """One note from a z slot, with the current coefficients when directions are loaded."""
    z = z_slot(s, r["zslot"])[None]
    pitch = r["pitch"] if r["pitch"] is not None else s.pitch
    m = server.state.model
    d, c = z_mode_edit(server, s)
    buffer = r["buffer"]

    def run(job: Job) -> Result:
        return Result([(buffer, m.generate(z, pitch, d, c)[0])], m.sample_rate, (buffer,))

    server.submit(s, r, run)


@handler("/synth.noz")
def synth_noz(server: Server, s: Session, r: Request) -> None:
    """One note without z: the directions layer is the mean plus the current coefficients."""
    d = need_directions(server)
    c = used_coefficients(s.coefficients, d, 1)
    pitch = r["pitch"] if r["pitch"] is not None else s.pitch
    m = server.state.model
    buffer = r["buffer"]

    def run(job: Job) -> Result:
        return Result([(buffer, m.generate(None, pitch, d, c)[0])], m.sample_rate, (buffer,))

    server.submit(s, r, run)


@handler("/synth.batch")
def synth_batch(server: Server, s: Session, r: Request) -> None:
    """Several notes in one batch; note i goes to buffer ``<prefix><i>``."""
    z = np.stack([z_slot(s, slot) for slot, _ in r.groups])
    pitches = [p for _, p in r.groups]
    m = server.state.model
    d, c = z_mode_edit(server, s)
    prefix = r["prefix"]

    def run(job: Job) -> Result:
        audio = m.generate(z, pitches, d, c)
        names = [f"{prefix}{i}" for i in range(len(audio))]
        return Result(list(zip(names, audio, strict=True)), m.sample_rate,
                      (prefix, len(audio)))

    server.submit(s, r, run)
