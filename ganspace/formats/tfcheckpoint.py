"""TensorFlow-free reader of TensorFlow V2 checkpoint bundles.

A bundle with prefix ``P`` is ``P.index`` plus ``P.data-0000k-of-0000N`` shard files. The index is
a LevelDB-format table (SSTable) with uncompressed blocks: key ``""`` holds a ``BundleHeaderProto``
(number of shards, endianness), every other key is a tensor name whose value is a
``BundleEntryProto`` (dtype, shape, shard, byte offset and size, masked crc32c). Shards hold the raw
little-endian tensor bytes. Only the requested tensors are read; each one is checksum-verified.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from ganspace.errors import CheckpointError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles (varints) padded to 40 bytes, then the 8-byte magic
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c of (block contents + type byte)

# TensorFlow DataType enum (types.proto) -> little-endian numpy dtype. Strings, bfloat16,
# quantized and resource types are not supported.
_DTYPES: dict[int, np.dtype] = {
    code: np.dtype(spec)
    for code, spec in {
        1: "<f4",
        2: "<f8",
        3: "<i4",
        4: "u1",
        5: "<i2",
        6: "i1",
        8: "<c8",
        9: "<i8",
        10: "?",
        17: "<u2",
        18: "<c16",
        19: "<f2",
        22: "<u4",
        23: "<u8",
    }.items()
}


def mask_crc(crc: int) -> int:
    """Return TensorFlow's masked form of a crc32c value (what tables and bundles store)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, next position)``."""
    result = shift = 0
    while True:
        byte = buf[pos]  # IndexError on truncation, reported as a corrupt index
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> dict[int, list[int | bytes]]:
    """Decode a protobuf message into ``{field number: [values]}`` (varints as unsigned ints,
    fixed32/fixed64 as ints, length-delimited fields as bytes)."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(tag >> 3, []).append(value)
    if pos != len(buf):
        raise ValueError("protobuf message overruns its buffer")
    return fields


def _int(fields: dict[int, list[int | bytes]], number: int, default: int = 0) -> int:
    """Return integer field ``number`` (its last occurrence, as protobuf does), or ``default``."""
    value = fields.get(number, [default])[-1]
    if not isinstance(value, int):
        raise ValueError(f"protobuf field {number} is not an integer")
    return value


def _msg(fields: dict[int, list[int | bytes]], number: int) -> bytes:
    """Return embedded-message field ``number`` (empty when absent)."""
    value = fields.get(number, [b""])[-1]
    if not isinstance(value, bytes):
        raise ValueError(f"protobuf field {number} is not a message")
    return value


@dataclass(frozen=True)
class _Entry:
    """One ``BundleEntryProto``: where a tensor lives and how to check it."""

    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool


def _parse_entry(value: bytes) -> _Entry:
    fields = _proto_fields(value)
    dims = _proto_fields(_msg(fields, 2)).get(2, [])  # TensorShapeProto.dim
    return _Entry(
        dtype_code=_int(fields, 1),
        shape=tuple(_int(_proto_fields(d), 1) for d in dims if isinstance(d, bytes)),
        shard_id=_int(fields, 3),
        offset=_int(fields, 4),
        size=_int(fields, 5),
        crc32c=_int(fields, 6),
        sliced=7 in fields,
    )


def _read_block(data: bytes, handle: bytes) -> list[tuple[bytes, bytes]]:
    """Return the ``(key, value)`` entries of the table block that ``handle`` points to,
    after checking its type byte and crc (entries use shared-prefix key compression)."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    trailer = data[offset + size : offset + size + _BLOCK_TRAILER_SIZE]
    if len(trailer) != _BLOCK_TRAILER_SIZE:
        raise ValueError("block runs past the end of the file")
    if trailer[0] != 0:
        raise ValueError(f"compressed block (type {trailer[0]}) is not supported")
    stored = struct.unpack("<I", trailer[1:])[0]
    if mask_crc(google_crc32c.value(data[offset : offset + size + 1])) != stored:
        raise ValueError(f"block at byte {offset} fails its checksum")
    block = data[offset : offset + size]
    num_restarts = struct.unpack_from("<I", block, size - 4)[0]
    end = size - 4 * (num_restarts + 1)  # entries stop where the restart-point array starts
    entries: list[tuple[bytes, bytes]] = []
    key, pos = b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    if pos != end:
        raise ValueError("block entries overrun the restart array")
    return entries


class BundleReader:
    """Random access to the tensors of one TF V2 checkpoint bundle (``prefix.index`` + shards).

    The index is parsed once on construction; tensor bytes are read on demand by ``read``.
    """

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        self.prefix = Path(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint index {self.index_path} does not exist") from None
        try:
            self._entries, self.num_shards = self._parse_index(data)
        except (ValueError, IndexError, struct.error) as exc:
            raise CheckpointError(f"corrupt checkpoint index {self.index_path}: {exc}") from None

    @staticmethod
    def _parse_index(data: bytes) -> tuple[dict[str, _Entry], int]:
        """Parse the whole table: footer -> index block -> data blocks -> entries."""
        if len(data) < _FOOTER_SIZE:
            raise ValueError("file is shorter than a table footer")
        footer = data[-_FOOTER_SIZE:]
        if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
            raise ValueError("bad table magic number")
        _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
        entries: dict[str, _Entry] = {}
        header: bytes | None = None
        for _, handle in _read_block(data, footer[pos:]):
            for key, value in _read_block(data, handle):
                if key == b"":
                    header = value
                elif key[0] != 0:  # keys starting with NUL are slices of partitioned tensors
                    entries[key.decode("utf-8")] = _parse_entry(value)
        if header is None:
            raise ValueError("no bundle header (key '')")
        header_fields = _proto_fields(header)
        if _int(header_fields, 2) != 0:
            raise ValueError("big-endian bundles are not supported")
        return entries, _int(header_fields, 1, 1)

    def keys(self) -> list[str]:
        """Return the tensor names, sorted bytewise (the table order)."""
        return list(self._entries)

    def _entry(self, key: str) -> _Entry:
        try:
            return self._entries[key]
        except KeyError:
            raise CheckpointError(f"tensor {key!r} is not in checkpoint {self.prefix}") from None

    def dtype(self, key: str) -> np.dtype:
        """Return the numpy dtype (little-endian) of tensor ``key``."""
        entry = self._entry(key)
        if entry.dtype_code not in _DTYPES or entry.sliced:
            kind = "partitioned tensor" if entry.sliced else f"TF dtype {entry.dtype_code}"
            raise CheckpointError(f"tensor {key!r} in {self.prefix}: unsupported {kind}")
        return _DTYPES[entry.dtype_code]

    def shape(self, key: str) -> tuple[int, ...]:
        """Return the shape of tensor ``key`` (``()`` for scalars)."""
        return self._entry(key).shape

    def shard_path(self, shard_id: int) -> Path:
        """Return the path of data shard ``shard_id`` (``prefix.data-0000k-of-0000N``)."""
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def read(self, key: str) -> np.ndarray:
        """Read tensor ``key`` as a new array of its dtype and shape, after verifying its crc32c."""
        entry, dtype = self._entry(key), self.dtype(key)
        if entry.size != dtype.itemsize * int(np.prod(entry.shape, dtype=np.int64)):
            raise CheckpointError(f"tensor {key!r} in {self.index_path}: size disagrees with shape")
        path = self.shard_path(entry.shard_id)
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < entry.offset + entry.size:
                    raise CheckpointError(f"shard {path} is truncated: tensor {key!r} is cut off")
                f.seek(entry.offset)
                buf = f.read(entry.size)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint shard {path} (tensor {key!r}) is missing") from None
        if mask_crc(google_crc32c.value(buf)) != entry.crc32c:
            raise CheckpointError(f"tensor {key!r} in {path} fails its crc32c checksum")
        # astype copies into a writable array in native byte order
        return np.frombuffer(buf, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(entry.shape)
