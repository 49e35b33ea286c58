"""The protocol table, its validator, its rendered documentation and the OSC wire helpers
(no server needed)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage

from ganspace_server import oscwire, protocol, protocol_doc
from ganspace_server.guard import PathGuard, RateLimitedLog, SourceFilter, parse_networks
from ganspace_server.schema import ProtocolError
from ganspace_server.validator import validate

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Ctx:
    latent_size: int = 4
    pitches: tuple[int, ...] = tuple(range(24, 85))


def test_docs_protocol_md_is_the_rendering_of_the_table() -> None:
    assert (REPO / "docs" / "protocol.md").read_text() == protocol_doc.render_markdown(), (
        "docs/protocol.md is stale: run python -m ganspace_server.protocol docs/protocol.md")


def test_the_fixed_core_is_present_and_the_table_is_consistent() -> None:
    core = {"/notify", "/delivery", "/buffer.ack", "/status", "/sync", "/version", "/quit",
            "/cancel", "/model.load", "/directions.load", "/model.layers", "/synth",
            "/synth.noz", "/synth.batch", "/hallu", "/hallu.z"}
    assert core <= set(protocol.COMMANDS)
    for r in ("/done", "/fail", "/buffer.file", "/buffer.begin", "/buffer.chunk", "/buffer.end",
              "/progress", "/synced", "/status.reply", "/version.reply"):
        assert r in protocol.REPLIES
    for cmd in protocol.COMMANDS.values():
        assert cmd.doc and cmd.section in protocol.SECTIONS
        optional = [a.optional for a in cmd.args]
        assert optional == sorted(optional), f"{cmd.address}: optional arguments must be last"
        assert all(a.type in "ifs" for a in cmd.args)


def test_ints_accept_integral_floats_and_floats_accept_ints() -> None:
    r = validate("/z.random", [3.0, 7.0], Ctx())
    assert r["slot"] == 3 and isinstance(r["slot"], int) and r["seed"] == 7
    r = validate("/z.slerp", [0, 1, 2, 1], Ctx())
    assert r["t"] == 1.0 and isinstance(r["t"], float)
    r = validate("/z.random", [5], Ctx())
    assert r["seed"] is None


@pytest.mark.parametrize("address,args,reason", [
    ("/nope", [], "unknown command"),
    ("/z.random", [], "takes 1..2 arguments"),
    ("/z.random", [1, 2, 3], "takes 1..2 arguments"),
    ("/z.random", [1.5], "must be an integer"),
    ("/z.random", [64], "must be in 0..63"),
    ("/z.random", ["a"], "must be a number"),
    ("/z.random", [True], "must be a number"),
    ("/z.random", [b"\x00"], "must be a number"),
    ("/z.slerp", [0, 1, 2, math.nan], "NaN"),
    ("/z.slerp", [0, 1, 2, math.inf], "NaN"),
    ("/z.set", [0, 1.0, 2.0], "takes 4 groups"),
    ("/z.set", [0, 1.0, 2.0, 3.0, 1e9], "must be in"),
    ("/coef.set", [1], "groups of 2"),
    ("/coef.set", [1024, 0.5], "must be in 0..1023"),
    ("/coef.setn", [0, 3, 1.0, 2.0], "count is 3 but 2 values follow"),
    ("/coef.setn", [1020, 5, 1, 1, 1, 1, 1], r"start \+ count"),
    ("/delivery", ["tcp"], "must be one of file, stream, play"),
    ("/synth", ["a/b"], "may only hold"),
    ("/synth", ["x" * 65], "longer than 64"),
    ("/synth", [""], "is empty"),
    ("/synth", ["snd", 200], "must be in 0..127"),
    ("/synth", ["snd", 12], "not one this model knows"),
    ("/model.load", ["a\nb"], "control characters"),
    ("/model.load", ["x" * 2000], "longer than 1024"),
    ("/hallu.z", ["h", 64, 64], "sounds asked for"),
    ("/hallu.spacing", [4.5], "must be in 0..4"),
    ("/synth.batch", ["p"], "takes 1..64 groups"),
    ("/synth.batch", ["p", 0, 40, 1], "groups of 2"),
])
def test_validator_refuses_with_a_reason(address: str, args: list, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        validate(address, args, Ctx())


def test_repeats_and_batches_parse_into_groups() -> None:
    r = validate("/synth.batch", ["n", 0, 40, 1.0, 41.0], Ctx())
    assert r.groups == [(0, 40), (1, 41)]
    r = validate("/coef.setn", [2, 2, 0.5, -1], Ctx())
    assert r.groups == [(0.5,), (-1.0,)]


def test_encode_floats_is_valid_osc_and_decodes_exactly() -> None:
    values = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    dgram = oscwire.encode_floats("/buffer.chunk", ("snd", 4000), values)
    assert len(dgram) < 65507
    msg = OscMessage(dgram)  # python-osc agrees on the layout
    assert msg.address == "/buffer.chunk" and msg.params[:2] == ["snd", 4000]
    assert np.array_equal(np.array(msg.params[2:], np.float32), values)
    address, head, decoded = oscwire.decode_floats(dgram)
    assert (address, head) == ("/buffer.chunk", ["snd", 4000])
    assert np.array_equal(decoded, values)
    with pytest.raises(oscwire.WireError):
        oscwire.decode_floats(dgram[:-3])


def test_parse_unpacks_bundles_and_refuses_garbage() -> None:
    m1, m2 = oscwire.encode("/status"), oscwire.encode("/sync", 5)
    bundle = b"#bundle\0" + struct.pack(">Q", 1)
    for m in (m1, m2):
        bundle += struct.pack(">i", len(m)) + m
    assert list(oscwire.parse(bundle)) == [("/status", []), ("/sync", [5])]
    for bad in (b"", b"hello", b"/a", b"/abc\0\0\0\0,iq\0", b"#bundle\0\0\0", b"/a\0\0,i\0\0\0\0",
                b"/\xff\xfe\0"):
        with pytest.raises(oscwire.WireError):
            list(oscwire.parse(bad))
    assert oscwire.read_address(b"/abc\0\0\0\0,q\0\0") == "/abc"
    assert oscwire.read_address(b"xyz") is None


def test_paths_stay_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    (root / "d.pkl").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "sneaky.safetensors").symlink_to(root / "d.pkl")
    guard = PathGuard([root])
    assert guard.resolve("m") == (root / "m").resolve()
    assert guard.resolve(str(root / "m")) == (root / "m").resolve()
    for bad, why in (("../outside", "outside"), (str(outside), "outside"), ("link", "outside"),
                     ("d.pkl", "pickle"), ("sneaky.safetensors", "pickle"),
                     ("missing", "no such")):
        with pytest.raises(Exception, match=why):
            guard.resolve(bad)


def test_sources_and_networks() -> None:
    f = SourceFilter(parse_networks(["192.168.1.0/24"]))
    assert f.allows("127.0.0.1") and f.allows("::1") and f.allows("192.168.1.77")
    assert not f.allows("10.0.0.1") and not f.allows("not-an-ip")
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks(["banana"])


def test_rate_limited_log_counts_what_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    rl = RateLimitedLog(logging.getLogger("t"), per_second=0.001, burst=3)
    with caplog.at_level(logging.WARNING, "t"):
        for i in range(100):
            rl.warning("bad %d", i)
    assert len(caplog.records) == 3
