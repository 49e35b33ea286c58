"""Tests of the TensorFlow-free checkpoint bundle reader (fixture written by Magenta/TF itself)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from ganspace.errors import CheckpointError
from ganspace.formats.tfcheckpoint import BundleReader, mask_crc

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "magenta_small"
PREFIX = FIXTURE / "stage_00012" / "model.ckpt-11000000"
if not (FIXTURE / "experiment.json").is_file():
    pytest.fail(f"shared fixture missing: {FIXTURE} (CI clones shared/ beside the repo)",
                pytrace=False)
EMA_KERNEL = (
    "Generator/progressive_gan_generator/progressive_gan_block_7/conv1/conv2d/kernel"
    "/ExponentialMovingAverage"
)

# numpy dtype -> TF DataType enum, for the test writer
_TF_CODES = {np.dtype("<f4"): 1, np.dtype("<f8"): 2, np.dtype("<i4"): 3, np.dtype("<i8"): 9}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    """Encode one protobuf field: ints as varints, bytes as length-delimited."""
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 4) -> bytes:
    """Encode sorted entries as a table block with shared-prefix keys and restart points."""
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval:
            while shared < min(len(key), len(prev)) and key[shared] == prev[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        prev = key
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def read_bundle(prefix: Path) -> dict[str, np.ndarray]:
    """Every tensor of the bundle at ``prefix``, by name."""
    reader = BundleReader(prefix)
    return {key: reader.read(key) for key in reader.keys()}


def write_bundle(
    prefix: Path,
    tensors: dict[str, np.ndarray],
    num_shards: int = 1,
    dtype_codes: dict[str, int] | None = None,
) -> None:
    """Write a TF V2 bundle: tensors spread round-robin over ``num_shards`` shards, two data
    blocks in the index. ``dtype_codes`` overrides the TF dtype enum stored for some tensors."""
    shards = [bytearray() for _ in range(num_shards)]
    entries = [(b"", _field(1, num_shards) + _field(3, _field(1, 1)))]  # header, version 1
    for i, key in enumerate(sorted(tensors)):
        array = np.asarray(tensors[key])
        raw, shard = array.tobytes(), shards[i % num_shards]
        code = (dtype_codes or {}).get(key, _TF_CODES.get(array.dtype, 0))
        shape = b"".join(_field(2, _field(1, d)) for d in array.shape)
        entry = _field(1, code) + _field(2, shape) + _field(3, i % num_shards)
        entry += _field(4, len(shard)) + _field(5, len(raw))
        entry += _varint(6 << 3 | 5) + struct.pack("<I", mask_crc(google_crc32c.value(raw)))
        entries.append((key.encode(), entry))
        shard += raw
    out, index = bytearray(), []

    def add_block(content: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(content))
        crc = mask_crc(google_crc32c.value(content + b"\x00"))
        out.extend(content + b"\x00" + struct.pack("<I", crc))
        return handle

    half = len(entries) // 2 + 1
    for chunk in (entries[:half], entries[half:]):
        index.append((chunk[-1][0], add_block(_block(chunk))))
    footer = add_block(_block([])) + add_block(_block(index))  # metaindex, index
    out += footer.ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(bytes(out))
    for k, shard in enumerate(shards):
        Path(f"{prefix}.data-{k:05d}-of-{num_shards:05d}").write_bytes(bytes(shard))


def copy_fixture_bundle(tmp_path: Path) -> Path:
    """Copy the fixture bundle into ``tmp_path`` (writable) and return its prefix."""
    for src in PREFIX.parent.glob(PREFIX.name + ".*"):
        shutil.copyfile(src, tmp_path / src.name)
    return tmp_path / PREFIX.name


def test_fixture_every_tensor_reads_with_valid_crc() -> None:
    reader = BundleReader(PREFIX)
    keys = reader.keys()
    assert len(keys) == 312 and keys == sorted(keys) and reader.num_shards == 1
    for key in keys:
        array = reader.read(key)  # raises on a crc mismatch
        assert array.dtype == reader.dtype(key) and array.shape == reader.shape(key)
        assert array.flags.writeable and np.isfinite(array).all(), key
    assert reader.read("global_step") == 11_000_000 and reader.dtype("global_step") == np.int64
    assert reader.shape(EMA_KERNEL) == (3, 3, 8, 8) and reader.dtype(EMA_KERNEL) == np.float32
    assert reader.shape("Variable") == ()


def test_multi_shard_bundle_round_trip(tmp_path: Path) -> None:
    tensors = read_bundle(PREFIX)
    write_bundle(tmp_path / "model.ckpt-5", tensors, num_shards=3)
    assert len(list(tmp_path.glob("model.ckpt-5.data-*-of-00003"))) == 3
    reader = BundleReader(tmp_path / "model.ckpt-5")
    assert reader.num_shards == 3 and reader.keys() == sorted(tensors)
    for key, expected in tensors.items():
        got = reader.read(key)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"model\.ckpt-1\.index does not exist"):
        BundleReader(tmp_path / "model.ckpt-1")


def test_missing_shard_names_the_file(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"a": np.zeros(3, np.float32), "b": np.ones(2)}, num_shards=2)
    (tmp_path / "m.data-00001-of-00002").unlink()
    reader = BundleReader(tmp_path / "m")
    reader.read("a")
    with pytest.raises(CheckpointError, match=r"m\.data-00001-of-00002 \(tensor 'b'\) is missing"):
        reader.read("b")


def test_truncated_shard(tmp_path: Path) -> None:
    prefix = copy_fixture_bundle(tmp_path)
    reader = BundleReader(prefix)
    last = max(reader.keys(), key=lambda k: reader._entries[k].offset)
    with open(f"{prefix}.data-00000-of-00001", "r+b") as f:
        f.truncate(reader._entries[last].offset + 1)
    with pytest.raises(CheckpointError, match="truncated") as info:
        reader.read(last)
    assert repr(last) in str(info.value) and "data-00000-of-00001" in str(info.value)


def test_flipped_byte_fails_checksum_naming_the_tensor(tmp_path: Path) -> None:
    prefix = copy_fixture_bundle(tmp_path)
    reader = BundleReader(prefix)
    offset = reader._entries[EMA_KERNEL].offset + 17
    with open(f"{prefix}.data-00000-of-00001", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CheckpointError, match="crc32c") as info:
        reader.read(EMA_KERNEL)
    assert EMA_KERNEL in str(info.value)
    reader.read("global_step")  # other tensors stay readable


def test_unsupported_dtype(tmp_path: Path) -> None:
    tensors = {"s": np.zeros(2, np.float32), "ok": np.ones(2, np.float32)}
    write_bundle(tmp_path / "m", tensors, dtype_codes={"s": 14})  # DT_BFLOAT16
    reader = BundleReader(tmp_path / "m")
    assert reader.keys() == ["ok", "s"] and reader.shape("s") == (2,)
    with pytest.raises(CheckpointError, match="'s'.*unsupported TF dtype 14"):
        reader.read("s")


@pytest.mark.parametrize("where", ["magic", "block", "short"])
def test_corrupt_index(tmp_path: Path, where: str) -> None:
    prefix = copy_fixture_bundle(tmp_path)
    index = Path(f"{prefix}.index")
    data = bytearray(index.read_bytes())
    if where == "magic":
        data[-1] ^= 0xFF
    elif where == "block":
        data[100] ^= 0x01  # inside the first data block: its crc no longer matches
    else:
        data = data[:20]
    index.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint index .*\.index"):
        BundleReader(prefix)


def test_unknown_tensor_name() -> None:
    with pytest.raises(CheckpointError, match="'nope' is not in checkpoint"):
        BundleReader(PREFIX).read("nope")
