"""OSC datagrams in and out: python-osc for parsing and small messages, NumPy for float lists.

python-osc builds and parses long float lists one value at a time in pure Python (176 ms to build
64000 floats); :func:`encode_floats` and :func:`decode_floats` do the same with one NumPy call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

MAX_BUNDLE_DEPTH = 4
PARSED_TYPES = "ifsbhdTFNtmr[]"  #: type tags python-osc parses (others are refused up front)


class WireError(ValueError):
    """A datagram is not valid OSC."""


def _pad(b: bytes) -> bytes:
    """NUL-terminate and pad to a multiple of 4 bytes (OSC string)."""
    return b + b"\0" * (4 - len(b) % 4)


def osc_string(s: str) -> bytes:
    """An OSC string: UTF-8, NUL-terminated, padded to 4 bytes."""
    return _pad(s.encode("utf-8"))


def encode(address: str, *args: int | float | str) -> bytes:
    """A small OSC message (types i, f, s) built with python-osc."""
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, bool):
            raise TypeError("booleans are not sent (Pd does not read T/F)")
        if isinstance(a, int):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_INT)
        elif isinstance(a, float):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_FLOAT)
        else:
            b.add_arg(str(a), OscMessageBuilder.ARG_TYPE_STRING)
    return b.build().dgram


def encode_floats(address: str, head: Sequence[int | str], values: np.ndarray) -> bytes:
    """An OSC message ``address head... f f f ...`` with the floats encoded by NumPy.

    Args:
        address: OSC address.
        head: leading int (``i``) and str (``s``) arguments.
        values: 1-D floats, sent as big-endian float32.
    """
    tags = [","]
    parts: list[bytes] = []
    for a in head:
        if isinstance(a, str):
            tags.append("s")
            parts.append(osc_string(a))
        else:
            tags.append("i")
            parts.append(struct.pack(">i", int(a)))
    arr = np.asarray(values, dtype=">f4").reshape(-1)
    typetag = "".join(tags) + "f" * arr.size
    return b"".join([osc_string(address), osc_string(typetag), *parts, arr.tobytes()])


def _read_string(dgram: bytes, index: int) -> tuple[str, int]:
    end = dgram.find(b"\0", index)
    if end < 0:
        raise WireError("unterminated string")
    try:
        s = dgram[index:end].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("string is not UTF-8") from None
    return s, index + (end - index) // 4 * 4 + 4


def read_address(dgram: bytes) -> str | None:
    """The address of a datagram that starts like an OSC message, else None (for /fail replies
    to messages that do not parse)."""
    if not dgram.startswith(b"/"):
        return None
    try:
        address, _ = _read_string(dgram, 0)
    except WireError:
        return None
    return address if address.isprintable() else None


def decode_floats(dgram: bytes) -> tuple[str, list[int | str], np.ndarray]:
    """Parse a message whose arguments are some ``i``/``s`` values then only ``f`` values.

    Returns:
        (address, head arguments, float32 array of the trailing floats).
    Raises:
        WireError: not such a message.
    """
    address, index = _read_string(dgram, 0)
    typetag, index = _read_string(dgram, index)
    if not typetag.startswith(","):
        raise WireError("no type tag string")
    tags = typetag[1:]
    n_head = len(tags) - len(tags.lstrip("is"))
    head: list[int | str] = []
    for t in tags[:n_head]:
        if t == "i":
            if index + 4 > len(dgram):
                raise WireError("truncated")
            head.append(struct.unpack_from(">i", dgram, index)[0])
            index += 4
        else:
            s, index = _read_string(dgram, index)
            head.append(s)
    floats = tags[n_head:]
    if floats.strip("f"):
        raise WireError(f"unexpected type tags {typetag}")
    if len(dgram) - index != 4 * len(floats):
        raise WireError("truncated float list")
    values = np.frombuffer(dgram, dtype=">f4", count=len(floats), offset=index)
    return address, head, values.astype(np.float32)


def parse(dgram: bytes, depth: int = 0) -> Iterator[tuple[str, list[Any]]]:
    """Messages of a datagram (bundles unpacked, time tags ignored) as (address, arguments).

    Raises:
        WireError: not OSC, truncated, nested too deep.
    """
    if depth > MAX_BUNDLE_DEPTH:
        raise WireError("bundles nested too deep")
    if dgram.startswith(b"#bundle\0"):
        # Split by hand: python-osc's OscBundle logs a warning for every malformed element.
        index = 16  # "#bundle\0" and the time tag (ignored)
        if len(dgram) < index:
            raise WireError("truncated bundle")
        elements = []
        while index < len(dgram):
            if index + 4 > len(dgram):
                raise WireError("truncated bundle element size")
            (size,) = struct.unpack_from(">i", dgram, index)
            index += 4
            if size <= 0 or size % 4 or index + size > len(dgram):
                raise WireError("bad bundle element size")
            elements.append(dgram[index: index + size])
            index += size
        for element in elements:
            yield from parse(element, depth + 1)
        return
    if not dgram.startswith(b"/"):
        raise WireError("not an OSC message")
    _, index = _read_string(dgram, 0)
    if index < len(dgram):
        typetag, _ = _read_string(dgram, index)
        unknown = set(typetag[1:]) - set(PARSED_TYPES)
        if not typetag.startswith(",") or unknown:
            raise WireError(f"unsupported OSC type tags {typetag[:40]!r}")
    try:
        msg = OscMessage(dgram)
        params = list(msg.params)
    except Exception as exc:  # ParseError, UnicodeDecodeError, struct.error, IndexError...
        raise WireError(f"malformed OSC message ({type(exc).__name__})") from None
    yield msg.address, params
