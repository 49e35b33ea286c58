"""Preset commands: save, load and list a client's state as JSON files in the server's presets
folder (:mod:`ganspace_server.presets`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ganspace_server import presets
from ganspace_server.handlers.hallu import send_state
from ganspace_server.handlers.registry import handler
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server

log = logging.getLogger("ganspace_server")


@handler("/preset.save")
def preset_save(server: Server, s: Session, r: Request) -> None:
    """Save this client's state as a preset."""
    st = server.state
    data = presets.snapshot(s, st.model, st.name, st.directions)
    path = presets.save(server.config.presets_dir, r["name"], data)
    log.info("preset %s saved", path)
    server.done(s, "/preset.save", r["name"])


@handler("/preset.load")
def preset_load(server: Server, s: Session, r: Request) -> None:
    """Load a preset (everything, or only its coefficients) and mirror the new state."""
    st = server.state
    p = presets.read(server.config.presets_dir, r["name"])
    presets.apply(p, s, st.model, st.name, st.directions, r["what"])
    send_state(server, s)
    server.done(s, "/preset.load", r["name"], r["what"], s.pitch, s.bank_zslot)


@handler("/preset.list")
def preset_list(server: Server, s: Session, r: Request) -> None:
    """List the presets."""
    server.done(s, "/preset.list", *presets.names(server.config.presets_dir))
