"""The handler registry against the protocol table: one handler per command, no handler without a
command, and the decorator refuses addresses the table lacks."""

from __future__ import annotations

import pytest

from ganspace_server import protocol
from ganspace_server.handlers.registry import HANDLERS, RegistryError, handler
from ganspace_server.schema import Request
from ganspace_server.server import Server
from ganspace_server.session import Session


def _spare(server: Server, s: Session, r: Request) -> None:
    """A handler that is never registered."""


def test_every_command_has_a_handler_and_every_handler_a_command() -> None:
    assert sorted(set(protocol.COMMANDS) - set(HANDLERS)) == []
    assert sorted(set(HANDLERS) - set(protocol.COMMANDS)) == []


def test_handlers_live_in_the_handlers_package() -> None:
    for address, fn in HANDLERS.items():
        assert fn.__module__.startswith("ganspace_server.handlers."), address
        assert fn.__doc__, f"{address}: {fn.__qualname__} has no docstring"


def test_the_decorator_refuses_an_address_the_table_lacks() -> None:
    before = dict(HANDLERS)
    with pytest.raises(RegistryError, match="/no.such is not a command of the protocol table"):
        handler("/no.such")(_spare)
    with pytest.raises(RegistryError, match="/synth has two handlers"):
        handler("/synth")(_spare)
    assert HANDLERS == before
