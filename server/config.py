"""How a :class:`~ganspace_server.server.Server` runs: where it listens, what it may read and
write, and how its clients share it (the ``serve`` flags land here; docs/server.md explains the
defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ganspace_server import delivery, presets, protocol
from ganspace_server.guard import Network


@dataclass
class ServerConfig:
    """How a :class:`~ganspace_server.server.Server` runs.

    Attributes:
        host, port: where to listen (port 0: any free port).
        model_roots: folders ``/model.load`` and ``/directions.load`` may read from.
        cache_dir: folder of delivered WAV files.
        cache_bytes: most bytes kept in ``cache_dir`` (oldest files deleted first).
        allow: networks allowed besides loopback (needed to bind a non-loopback address).
        allow_quit: whether ``/quit`` stops the server.
        ack_timeout: seconds before an unacknowledged chunk is sent again.
        ack_tries: sends of one chunk before the delivery fails (the client is then taken for
            gone and its waiting jobs are dropped).
        client_jobs: alive jobs per client (the next answers ``/fail <cmd> busy``).
        max_jobs: alive jobs of all clients together (the next answers ``busy: ...``).
        client_timeout: seconds without a message after which a client's waiting jobs are
            dropped; its session may then make room for a new client.
        session_idle: seconds without a message after which a client's session expires.
        max_sessions: sessions kept at once.
        presets_dir: folder of the presets (/preset.save, /preset.load, /preset.list).
    """

    host: str = "127.0.0.1"
    port: int = protocol.DEFAULT_PORT
    model_roots: list[Path] = field(default_factory=list)
    cache_dir: Path = field(default_factory=delivery.default_cache_dir)
    cache_bytes: int = 256 * 2**20
    allow: list[Network] = field(default_factory=list)
    allow_quit: bool = False
    ack_timeout: float = 0.25
    ack_tries: int = 5
    client_jobs: int = protocol.MAX_QUEUE
    max_jobs: int = protocol.MAX_JOBS
    client_timeout: float = 300.0
    session_idle: float = 3600.0
    max_sessions: int = protocol.MAX_CLIENTS
    presets_dir: Path = field(default_factory=presets.default_presets_dir)
