"""Latent commands: this client's z slots (random, set, get, slerp)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ganspace.engine.latent import slerp
from ganspace.errors import InputError
from ganspace_server import oscwire
from ganspace_server.handlers.registry import handler
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server


def z_slot(s: Session, slot: int) -> np.ndarray:
    """The latent in a z slot.

    Raises:
        InputError: the slot is empty.
    """
    z = s.z.get(slot)
    if z is None:
        raise InputError(f"z slot {slot} is empty: send /z.random {slot} first")
    return z


@handler("/z.random")
def z_random(server: Server, s: Session, r: Request) -> None:
    """Fill a slot with a standard-normal latent."""
    s.z[r["slot"]] = server.state.model.random_z(1, r["seed"])[0]
    server.done(s, "/z.random", r["slot"])


@handler("/z.set")
def z_set(server: Server, s: Session, r: Request) -> None:
    """Set a slot to the given vector."""
    s.z[r["slot"]] = np.array([g[0] for g in r.groups], np.float32)
    server.done(s, "/z.set", r["slot"])


@handler("/z.get")
def z_get(server: Server, s: Session, r: Request) -> None:
    """Answer ``/z.reply <slot> <values>...``."""
    z = z_slot(s, r["slot"])
    server.send(oscwire.encode_floats("/z.reply", (r["slot"],), z), s.reply_to)


@handler("/z.slerp")
def z_slerp(server: Server, s: Session, r: Request) -> None:
    """Set a slot to the spherical interpolation of two others."""
    a, b = z_slot(s, r["a"]), z_slot(s, r["b"])
    s.z[r["dst"]] = slerp(a, b, r["t"]).astype(np.float32)
    server.done(s, "/z.slerp", r["dst"])
