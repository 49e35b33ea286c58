"""Session commands: where replies go, delivery mode, stream acks, status, clients, version,
/sync, /latest, /cancel and /quit; the state broadcast to subscribers (status and the directions'
labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganspace.errors import InputError
from ganspace_server import __version__, protocol
from ganspace_server.handlers.registry import handler
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server


def status_values(server: Server) -> tuple[int | str, ...]:
    """The arguments of ``/status.reply``."""
    st = server.state
    m, d = st.model, st.directions
    return (st.name, len(m.pitches), min(m.pitches), max(m.pitches), m.latent_size,
            d.count if d else 0, d.layer if d else "", str(m.device), server.jobs_alive(),
            __version__)


def label_values(server: Server) -> tuple[int | str, ...]:
    """The arguments of ``/directions.labels.reply``: the count, then ``index label`` pairs by
    increasing index (components a coefficient can reach only), each label's words joined by
    ``_``. Only the loaded directions file's measured labels (:attr:`Directions.labels
    <ganspace.space.directions.Directions.labels>`); none without directions."""
    d = server.state.directions
    labels = sorted((i, "_".join(label.split())) for i, label in (d.labels if d else {}).items()
                    if i < protocol.COEF_MAX)
    return (len(labels), *(v for pair in labels for v in pair))


def broadcast_status(server: Server) -> None:
    """Send ``/status.reply`` and ``/directions.labels.reply`` to every subscribed client (after
    the model or directions changed)."""
    values, labels = status_values(server), label_values(server)
    for s in server.sessions():
        if s.subscribed:
            server.reply(s, "/status.reply", *values)
            server.reply(s, "/directions.labels.reply", *labels)


@handler("/notify")
def notify(server: Server, s: Session, r: Request) -> None:
    """Send this client's replies to (sender host, port); subscribe or unsubscribe events."""
    s.reply_to = (s.sender[0], r["port"])
    s.subscribed = bool(r["on"])
    server.done(s, "/notify", r["port"])


@handler("/delivery")
def delivery(server: Server, s: Session, r: Request) -> None:
    """Set how this client receives buffers."""
    s.delivery = r["mode"]
    server.done(s, "/delivery", r["mode"])


@handler("/buffer.ack")
def buffer_ack(server: Server, s: Session, r: Request) -> None:
    """Record the acknowledgement of one streamed chunk (no reply)."""
    s.ack(r["buffer"], r["offset"])


@handler("/status")
def status(server: Server, s: Session, r: Request) -> None:
    """Answer ``/status.reply``."""
    server.reply(s, "/status.reply", *status_values(server))


@handler("/clients")
def clients(server: Server, s: Session, r: Request) -> None:
    """Answer ``/clients.reply``: sessions kept, their bound, jobs alive (all, this client's)."""
    server.reply(s, "/clients.reply", len(server.sessions()), server.config.max_sessions,
                 server.jobs_alive(), server.jobs_alive(s))


@handler("/version")
def version(server: Server, s: Session, r: Request) -> None:
    """Answer ``/version.reply``."""
    server.reply(s, "/version.reply", "ganspacesynth", __version__, protocol.PROTOCOL_VERSION)


@handler("/sync")
def sync(server: Server, s: Session, r: Request) -> None:
    """Answer ``/synced`` now, or once this client's unfinished commands are done."""
    if s.sync(r["id"]):
        server.reply(s, "/synced", r["id"])


@handler("/latest")
def latest(server: Server, s: Session, r: Request) -> None:
    """Tag this client's next command (no reply)."""
    s.tag = r["tag"]


@handler("/cancel")
def cancel(server: Server, s: Session, r: Request) -> None:
    """Stop one or all of this client's jobs."""
    server.done(s, "/cancel", server.cancel(s, r["job"]))


@handler("/quit")
def quit_server(server: Server, s: Session, r: Request) -> None:
    """Stop the server, when it allows that."""
    if not server.config.allow_quit:
        raise InputError("not allowed: start the server with --allow-quit")
    server.done(s, "/quit")
    server.request_quit()
