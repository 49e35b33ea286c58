"""The vocabulary of the protocol table: arguments, repeated groups, commands, replies, and the
validated :class:`Request` a handler receives.

These types only describe messages; the table itself is :mod:`ganspace_server.protocol`, the checks
are :mod:`ganspace_server.validator`, the documentation is :mod:`ganspace_server.protocol_doc`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAME_PATTERN = r"[A-Za-z0-9_.+~#$-]+"  #: what a buffer name, prefix or tag may hold
NAME_MAX = 64  #: characters in a buffer name, prefix or tag


class ProtocolError(ValueError):
    """A message does not match the protocol table; the text is the ``/fail`` reason."""


@dataclass(frozen=True)
class Arg:
    """One argument of a message.

    Attributes:
        name: argument name (in docs and in the validated values).
        type: OSC type the server sends or expects: ``i`` (int32; floats with integral values are
            accepted), ``f`` (float32; ints accepted; NaN and inf refused) or ``s`` (string).
        doc: what it means.
        lo, hi: inclusive range for numbers.
        choices: allowed strings.
        name_like: the string must match :data:`NAME_PATTERN` (Pd array names, tags).
        maxlen: most characters of a string.
        pitch: the integer must be a MIDI pitch the loaded model knows.
        default: value when an optional argument is left out (``None``: from the client's state).
        optional: may be left out (only trailing arguments).
    """

    name: str
    type: str
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    name_like: bool = False
    maxlen: int = NAME_MAX
    pitch: bool = False
    default: Any = None
    optional: bool = False


@dataclass(frozen=True)
class Repeat:
    """A trailing group of arguments repeated ``min..max`` times (limits may name a context value:
    ``"latent"`` is the model's latent size), or exactly as often as the integer argument
    ``count_arg`` says."""

    args: tuple[Arg, ...]
    min: int | str
    max: int | str
    count_arg: str | None = None


@dataclass(frozen=True)
class Reply:
    """A message the server sends."""

    address: str
    args: tuple[Arg, ...]
    doc: str
    floats: str = ""  # name of a trailing list of floats, if any
    ints: str = ""  # name of a trailing list of ints, if any
    group: tuple[Arg, ...] = ()  # a trailing group, repeated as often as the last fixed arg says


@dataclass(frozen=True)
class Command:
    """A message the server understands.

    Attributes:
        address: OSC address.
        section: heading it is documented under.
        doc: what it does.
        args: fixed arguments (optional ones last).
        repeat: trailing repeated group, if any.
        replies: what the server answers, in order (addresses of :data:`REPLIES`, or text).
        check: cross-argument constraint: returns the /fail reason or None.
        check_doc: the constraint in words (documentation).
        job: done by the generation worker (queued; may be tagged with /latest; cancellable).
    """

    address: str
    section: str
    doc: str
    args: tuple[Arg, ...] = ()
    repeat: Repeat | None = None
    replies: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    check_doc: str = ""
    job: bool = False

    def signature(self) -> str:
        """``/address <a> [b] <c d>...`` (documentation and argument-count errors)."""
        parts = [self.address]
        for a in self.args:
            parts.append(f"[{a.name}]" if a.optional else f"<{a.name}>")
        if self.repeat:
            parts.append("<" + " ".join(a.name for a in self.repeat.args) + ">...")
        return " ".join(parts)


@dataclass
class Request:
    """A validated message: its command, argument values by name (defaults filled in) and the
    repeated groups as tuples."""

    command: Command
    values: dict[str, Any]
    groups: list[tuple[Any, ...]] = field(default_factory=list)
    tag: str | None = None  # the /latest tag that applies (set by the server)

    def __getitem__(self, name: str) -> Any:
        """The value of argument ``name`` (its default when it was left out)."""
        return self.values[name]


def number_text(v: float) -> str:
    """A limit as written in replies and docs: ``3`` for 3.0, else ``%g``."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
