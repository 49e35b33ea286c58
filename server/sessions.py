"""The server's table of client sessions: opened by a client's first message, kept in order of
last message, bounded, expired when idle.

A client is one (host, port) sender with one :class:`~ganspace_server.session.Session`. The table
keeps at most ``max_sessions``: a new client takes the place of the least recently seen session
that has been silent for ``client_timeout`` and has no unfinished command, else it is refused.
A session silent for ``session_idle`` without unfinished commands expires (housekeeping). An
expired or evicted client is remembered (the last :data:`EXPIRED_MEMORY` of them): its next
message other than ``/notify`` is refused with
:data:`~ganspace_server.protocol.EXPIRED_REASON`, so that it sets its state up again.

The receiver thread opens, touches and expires sessions; any thread may list them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from ganspace_server import protocol
from ganspace_server.config import ServerConfig
from ganspace_server.session import Address, Session

log = logging.getLogger("ganspace_server")

EXPIRED_MEMORY = 1024  #: expired clients remembered (to tell them to re-initialise)

#: A refused message: where to send its ``/fail`` and the reason.
Refusal = tuple[Address, str]


class SessionTable:
    """The sessions of the server's clients (see the module docstring).

    Args:
        config: the server's configuration (``max_sessions``, ``client_timeout``,
            ``session_idle``; read at each use).
        new_session: makes the session of a new sender (its defaults come from the model then
            loaded).

    Attributes:
        expired: sessions that expired or were evicted.
    """

    def __init__(self, config: ServerConfig, new_session: Callable[[Address], Session]) -> None:
        self.config = config
        self.expired = 0
        self._new_session = new_session
        self._sessions: dict[Address, Session] = {}  # in order of last message (oldest first)
        self._forgotten: OrderedDict[Address, Address] = OrderedDict()  # sender -> reply_to
        self._lock = threading.Lock()

    def all(self) -> list[Session]:
        """Every session, least recently seen first."""
        with self._lock:
            return list(self._sessions.values())

    def get(self, sender: Address) -> Session | None:
        """The sender's session, if it has one (not marked as seen)."""
        return self._sessions.get(sender)

    def enter(self, sender: Address, address: str, now: float) -> Session | Refusal:
        """The sender's session (opened if needed), marked as seen at ``now``
        (``time.monotonic()``); or the refusal of its message ``address``: its session expired
        and this is not ``/notify``, or no session can be opened."""
        with self._lock:
            s = self._sessions.pop(sender, None)  # re-inserted last: the dict stays LRU-ordered
            got = s if s is not None else self._open(sender, address, now)
            if isinstance(got, Session):
                got.last_seen = now
                self._sessions[sender] = got
            return got

    def expire_idle(self, now: float) -> None:
        """Expire every session silent for ``session_idle`` that has no unfinished command."""
        idle = self.config.session_idle
        for s in self.all():
            if now - s.last_seen >= idle and not s.busy:
                self._forget(s, f"idle for {idle:g} s")

    def _forget(self, s: Session, why: str) -> None:
        """Expire a session: the whole object goes, with every bit of the client's state; its
        next message (unless ``/notify``) is told to re-initialise."""
        with self._lock:
            if self._sessions.get(s.sender) is not s:
                return
            self._expire_locked(s)
        log.info("session of %s:%d expired (%s)", s.sender[0], s.sender[1], why)

    def _expire_locked(self, s: Session) -> None:
        """Forget a session and remember where its client listens (lock held)."""
        del self._sessions[s.sender]
        self._forgotten[s.sender] = s.reply_to
        while len(self._forgotten) > EXPIRED_MEMORY:
            self._forgotten.popitem(last=False)
        self.expired += 1

    def _open(self, sender: Address, address: str, now: float) -> Session | Refusal:
        """A new session for ``sender`` (lock held), or where and why to refuse it."""
        reply_to = self._forgotten.get(sender)
        if reply_to is not None and address != "/notify":
            return reply_to, protocol.EXPIRED_REASON
        most = self.config.max_sessions
        if len(self._sessions) >= most and not self._make_room(now):
            return sender, f"too many clients (at most {most})"
        self._forgotten.pop(sender, None)
        return self._new_session(sender)

    def _make_room(self, now: float) -> bool:
        """Evict the least recently seen session silent for ``client_timeout`` and without
        unfinished commands (lock held). False when there is none."""
        for old in self._sessions.values():  # least recently seen first
            if now - old.last_seen < self.config.client_timeout:
                return False
            if not old.busy:
                self._expire_locked(old)
                log.info("session of %s:%d evicted for a new client (silent for %.0f s)",
                         old.sender[0], old.sender[1], now - old.last_seen)
                return True
        return False
