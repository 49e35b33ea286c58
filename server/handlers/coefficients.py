"""Coefficient commands: the current HALLU step's coefficient vector, and the client's pitch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganspace_server import oscwire
from ganspace_server.handlers.registry import handler
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server


@handler("/coef.set")
def coef_set(server: Server, s: Session, r: Request) -> None:
    """Set coefficients by index."""
    for index, value in r.groups:
        s.coefficients[index] = value
        s.track_highest_set(index)
    server.done(s, "/coef.set")


@handler("/coef.setn")
def coef_setn(server: Server, s: Session, r: Request) -> None:
    """Set ``count`` consecutive coefficients from ``start``."""
    start, count = r["start"], r["count"]
    s.coefficients[start:start + count] = [g[0] for g in r.groups]
    s.track_highest_set(start + count - 1)
    server.done(s, "/coef.setn")


@handler("/coef.zero")
def coef_zero(server: Server, s: Session, r: Request) -> None:
    """Zero the current step."""
    s.coefficients[:] = 0
    server.done(s, "/coef.zero")


@handler("/coef.get")
def coef_get(server: Server, s: Session, r: Request) -> None:
    """Answer ``/coef.reply <start> <values>...``."""
    start = r["start"]
    values = s.coefficients[start:start + r["count"]]
    server.send(oscwire.encode_floats("/coef.reply", (start,), values), s.reply_to)


@handler("/pitch")
def pitch(server: Server, s: Session, r: Request) -> None:
    """Set this client's current pitch."""
    s.pitch = r["pitch"]
    server.done(s, "/pitch", r["pitch"])
