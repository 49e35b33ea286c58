"""The one generic validator: every incoming message is checked against its entry in
:data:`ganspace_server.protocol.COMMANDS` before any handler runs.

Pure Data's ``[oscparse]`` turns every number into a float, so wherever an integer is expected a
float with an integral value is accepted; floats accept integers too. Symbols are plain OSC strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from ganspace_server.protocol import COMMANDS
from ganspace_server.schema import NAME_PATTERN, Arg, ProtocolError, Request, number_text

_NAME_RE = re.compile(NAME_PATTERN)


class Context(Protocol):
    """What the validator needs to know about the loaded model."""

    @property
    def latent_size(self) -> int:
        """Width of z."""
        ...

    @property
    def pitches(self) -> Sequence[int]:
        """MIDI pitches the model knows."""
        ...


def _bound(v: int | str, ctx: Context) -> int:
    if isinstance(v, int):
        return v
    if v == "latent":
        return ctx.latent_size
    raise KeyError(v)


def _convert(arg: Arg, value: Any, ctx: Context) -> Any:
    """Check one value against its argument; return it as int, float or str."""
    where = f"argument {arg.name}"
    if arg.type == "s":
        if not isinstance(value, str):
            raise ProtocolError(f"{where} must be a symbol, got {_kind(value)}")
        if len(value) > arg.maxlen:
            raise ProtocolError(f"{where} is longer than {arg.maxlen} characters")
        if not value:
            raise ProtocolError(f"{where} is empty")
        if arg.choices and value not in arg.choices:
            raise ProtocolError(f"{where} must be one of {', '.join(arg.choices)}, got {value}")
        if arg.name_like and not _NAME_RE.fullmatch(value):
            raise ProtocolError(f"{where} may only hold letters, digits and _.+~#$-")
        if not arg.name_like and any(ord(c) < 32 for c in value):
            raise ProtocolError(f"{where} holds control characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where} must be a number, got {_kind(value)}")
    if not math.isfinite(value):
        raise ProtocolError(f"{where} is {value} (NaN and inf are refused)")
    if arg.type == "i":
        if not float(value).is_integer():
            raise ProtocolError(f"{where} must be an integer, got {value:g}")
        value = int(value)
    else:
        value = float(value)
    if arg.lo is not None and arg.hi is not None and not arg.lo <= value <= arg.hi:
        raise ProtocolError(f"{where} must be in {number_text(arg.lo)}..{number_text(arg.hi)}, "
                            f"got {value:g}")
    if arg.pitch and value not in ctx.pitches:
        raise ProtocolError(f"pitch {value} is not one this model knows "
                            f"({min(ctx.pitches)}..{max(ctx.pitches)})")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a symbol"
    if isinstance(value, bool | None):
        return f"{value}"
    if isinstance(value, bytes):
        return "a blob"
    return type(value).__name__


def validate(address: str, args: Sequence[Any], ctx: Context) -> Request:
    """Check a message against :data:`COMMANDS`.

    Args:
        address: OSC address.
        args: parsed OSC arguments (python-osc values).
        ctx: the loaded model's facts (latent size, pitches).
    Returns:
        the validated :class:`Request`.
    Raises:
        ProtocolError: unknown address, wrong count, wrong type, out of range, bad constraint.
    """
    cmd = COMMANDS.get(address)
    if cmd is None:
        raise ProtocolError("unknown command")
    required = sum(not a.optional for a in cmd.args)
    n_fixed = len(cmd.args)
    if cmd.repeat is None and not required <= len(args) <= n_fixed:
        want = str(required) if required == n_fixed else f"{required}..{n_fixed}"
        raise ProtocolError(f"takes {want} arguments ({cmd.signature()}), got {len(args)}")
    if cmd.repeat is not None and len(args) < n_fixed:
        raise ProtocolError(f"takes at least {n_fixed + 1} arguments ({cmd.signature()}), "
                            f"got {len(args)}")
    values: dict[str, Any] = {}
    for i, arg in enumerate(cmd.args):
        values[arg.name] = _convert(arg, args[i], ctx) if i < len(args) else arg.default
    groups: list[tuple[Any, ...]] = []
    if cmd.repeat is not None:
        rep = cmd.repeat
        rest = args[n_fixed:]
        width = len(rep.args)
        if len(rest) % width:
            raise ProtocolError(f"the trailing arguments come in groups of {width} "
                                f"({' '.join(a.name for a in rep.args)})")
        count = len(rest) // width
        if rep.count_arg is not None:
            if count != values[rep.count_arg]:
                raise ProtocolError(f"{rep.count_arg} is {values[rep.count_arg]} but {count} "
                                    "values follow")
        else:
            lo, hi = _bound(rep.min, ctx), _bound(rep.max, ctx)
            if not lo <= count <= hi:
                want = str(lo) if lo == hi else f"{lo}..{hi}"
                raise ProtocolError(f"takes {want} groups of "
                                    f"<{' '.join(a.name for a in rep.args)}>, got {count}")
        for g in range(count):
            groups.append(tuple(_convert(a, rest[g * width + j], ctx)
                                for j, a in enumerate(rep.args)))
    if cmd.check is not None:
        reason = cmd.check(values)
        if reason:
            raise ProtocolError(reason)
    return Request(cmd, values, groups)

