"""Hallucination commands (jobs) and the HALLU sequencer: steps (add, remove, next, prev, state)
and the six settings. After every sequencer change the client gets ``/hallu.step`` and
``/hallu.coef`` so a patch can mirror it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ganspace.errors import InputError
from ganspace.space.hallucinate import (
    Envelope,
    check_request,
    coefficient_count,
    hallucinate_coefficients,
    hallucinate_z,
    z_count,
)
from ganspace_server import protocol
from ganspace_server.handlers.registry import handler
from ganspace_server.handlers.synthesis import need_directions, used_coefficients, z_mode_edit
from ganspace_server.jobs import Job, Result
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server


def _envelope(server: Server, s: Session, sounds: int) -> tuple[Envelope, float]:
    """The client's envelope and spacing, checked before any work (the library's checks and
    the server's tighter limits on sounds and clip length)."""
    st = s.settings
    m = server.state.model
    env = Envelope(st["trim"], st["attack"], st["sustain"], st["release"])
    spacing = float(st["spacing"])
    check_request(sounds, m.sample_rate, spacing, env, m.audio_length / m.sample_rate)
    if sounds > protocol.MAX_HALLU_SOUNDS:
        raise InputError(f"{sounds} sounds; a hallucination on this server holds at most "
                         f"{protocol.MAX_HALLU_SOUNDS}")
    seconds = (sounds - 1) * spacing + env.total
    if seconds > protocol.MAX_CLIP_SECONDS:
        raise InputError(f"the clip would last {seconds:.0f} s; this server makes at most "
                         f"{protocol.MAX_CLIP_SECONDS:.0f} s")
    return env, spacing


# ---- hallucination ------------------------------------------------------------------------------
@handler("/hallu")
def hallu(server: Server, s: Session, r: Request) -> None:
    """Hallucinate through the HALLU steps in coefficient space."""
    d = need_directions(server)
    steps = used_coefficients(np.stack(s.steps), d, 1)
    sub = int(s.settings["interp"])
    sounds = coefficient_count(len(steps), sub)
    env, spacing = _envelope(server, s, sounds)
    m, pitch, buffer = server.state.model, s.pitch, r["buffer"]

    def run(job: Job) -> Result:
        h = hallucinate_coefficients(m, d, steps, sub, pitch, env, spacing,
                                     progress=server.progress(job), cancel=job.cancel)
        return Result([(buffer, h.clip)], h.sample_rate, (buffer, h.count, len(h.clip)))

    server.submit(s, r, run, sounds)


@handler("/hallu.z")
def hallu_z(server: Server, s: Session, r: Request) -> None:
    """Hallucinate in z space between random keypoints."""
    n, steps = r["keypoints"], r["steps"]
    sounds = z_count(n, steps)
    env, spacing = _envelope(server, s, sounds)
    m, pitch, buffer = server.state.model, s.pitch, r["buffer"]
    keypoints = m.random_z(n, r["seed"])
    d, c = z_mode_edit(server, s)

    def run(job: Job) -> Result:
        h = hallucinate_z(m, keypoints, steps, pitch, env, spacing, directions=d,
                          coefficients=c, progress=server.progress(job), cancel=job.cancel)
        return Result([(buffer, h.clip)], h.sample_rate, (buffer, h.count, len(h.clip)))

    server.submit(s, r, run, sounds)


# ---- HALLU sequencer ----------------------------------------------------------------------------
def _send_coefs(server: Server, s: Session) -> None:
    """Mirror the current step's coefficients (``/hallu.coef <i> <v>``) to the client."""
    coefs = s.coefficients
    for i in range(s.mirror_count()):
        server.reply(s, "/hallu.coef", i, float(coefs[i]))


def _step_changed(server: Server, s: Session, cmd: str) -> None:
    """Mirror the new position and coefficients, then answer /done."""
    server.reply(s, "/hallu.step", s.current, len(s.steps))
    _send_coefs(server, s)
    server.done(s, cmd)


@handler("/hallu.add")
def hallu_add(server: Server, s: Session, r: Request) -> None:
    """Insert a copy of the current step after it and go there."""
    s.add_step()
    _step_changed(server, s, "/hallu.add")


@handler("/hallu.remove")
def hallu_remove(server: Server, s: Session, r: Request) -> None:
    """Remove the current step."""
    s.remove_step()
    _step_changed(server, s, "/hallu.remove")


@handler("/hallu.next")
def hallu_next(server: Server, s: Session, r: Request) -> None:
    """Go to the next step."""
    s.move(1)
    _step_changed(server, s, "/hallu.next")


@handler("/hallu.prev")
def hallu_prev(server: Server, s: Session, r: Request) -> None:
    """Go to the previous step."""
    s.move(-1)
    _step_changed(server, s, "/hallu.prev")


def send_state(server: Server, s: Session) -> None:
    """Mirror the whole sequencer: position, the six settings, the current coefficients."""
    server.reply(s, "/hallu.step", s.current, len(s.steps))
    for name in protocol.HALLU_SETTINGS:
        server.reply(s, "/hallu.setting", name, float(s.settings[name]))
    _send_coefs(server, s)


@handler("/hallu.state")
def hallu_state(server: Server, s: Session, r: Request) -> None:
    """Send the whole sequencer state."""
    send_state(server, s)
    server.done(s, "/hallu.state")


@handler("/hallu.rand")
def hallu_rand(server: Server, s: Session, r: Request) -> None:
    """Set the current step to random coefficients (uniform in -range..range; seeded or fresh),
    at most as many as there are directions."""
    d = server.state.directions
    count = r["count"] if d is None else min(r["count"], d.count)
    values = np.random.default_rng(r["seed"]).uniform(-r["range"], r["range"], count)
    s.coefficients[:] = 0
    s.coefficients[:count] = values
    s.track_highest_set(count - 1)
    _step_changed(server, s, "/hallu.rand")


@handler(*(f"/hallu.{name}" for name in protocol.HALLU_SETTINGS))
def hallu_setting(server: Server, s: Session, r: Request) -> None:
    """Set one HALLU setting (the name is the address's suffix) and mirror it."""
    cmd = r.command.address
    name = cmd.split(".", 1)[1]
    value = r["steps"] if name == "interp" else r["seconds"]
    s.settings[name] = value
    server.reply(s, "/hallu.setting", name, float(value))
    server.done(s, cmd)
