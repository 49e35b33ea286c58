"""The handler registry: ``@handler("/synth")`` binds a function to a command of the protocol table.

A handler is called on the receiver thread, with the client's session locked, after the message
was validated against its :class:`~ganspace_server.schema.Command`. It gets the server (what it may
use is the "for handlers" part of :class:`~ganspace_server.server.Server`), the session and the
:class:`~ganspace_server.schema.Request`; it answers at once or submits a job, and never waits for
generation. Raising ``InputError`` (or any ``GanspaceError``) answers ``/fail <cmd> <reason>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ganspace_server import protocol

if TYPE_CHECKING:
    from ganspace_server.schema import Request
    from ganspace_server.server import Server
    from ganspace_server.session import Session

Handler = Callable[["Server", "Session", "Request"], None]

HANDLERS: dict[str, Handler] = {}  #: command address -> its handler


class RegistryError(LookupError):
    """A handler names an address the protocol table lacks, or two handlers claim one command."""


def handler(*addresses: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of the commands ``addresses``.

    Raises:
        RegistryError: (at import) an address is not in
            :data:`~ganspace_server.protocol.COMMANDS` or already has a handler.
    """
    def register(fn: Handler) -> Handler:
        for address in addresses:
            if address not in protocol.COMMANDS:
                raise RegistryError(f"{fn.__module__}.{fn.__qualname__}: {address} is not a "
                                    "command of the protocol table (server/protocol.py)")
            other = HANDLERS.get(address)
            if other is not None:
                raise RegistryError(f"{address} has two handlers: {other.__module__}."
                                    f"{other.__qualname__} and {fn.__module__}.{fn.__qualname__}")
        HANDLERS.update(dict.fromkeys(addresses, fn))
        return fn

    return register


def check_complete() -> None:
    """Every command of the protocol table has a handler.

    Raises:
        RegistryError: commands without one.
    """
    missing = sorted(set(protocol.COMMANDS) - set(HANDLERS))
    if missing:
        raise RegistryError(f"commands of the protocol table without a handler: "
                            f"{', '.join(missing)}")
