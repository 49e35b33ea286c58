"""A patch in real headless Pd re-initialises by itself after the server forgot its session.

The server runs in the test process, so the test can expire the patch's session at a moment it
chooses (no waiting for a timeout) and look at the fresh session the patch builds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_patches import Served, done, expire_sessions, loaded, make_directions, open_patch

from ganspace.engine.model import GANSynthModel
from ganspace.space.directions import load_directions
from ganspace_server import protocol
from ganspace_server.config import ServerConfig
from ganspace_server.server import Server


def test_a_patch_reinitialises_after_its_session_expired(tiny_model: GANSynthModel,
                                                         tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    dirs = make_directions(tiny_model, tmp_path / "directions" / "tiny.safetensors")
    config = ServerConfig(port=0, cache_dir=tmp_path / "cache")
    with Server(tiny_model, config, "tiny", load_directions(dirs)) as server:
        served = Served(server.address[1], tiny_model_dir, dirs, [])
        with open_patch("ganspacesynth.pd", "gss", served) as pd:
            pd.to("gss-seed", 42)
            pd.to("gss-c0", 1.5)
            pd.to("gss-pitch", 40)
            m = pd.mark()
            pd.to("gss-synth")
            done(pd, "gss", "/synth", m)
            [old] = server.sessions()

            expire_sessions(server)                  # the session expires now ...

            m = pd.mark()
            pd.to("gss-synth")                        # ... so the next note is refused
            fail = pd.wait_watch("gss-in", lambda a: a[:2] == ("fail", "/synth"), since=m)
            assert fail[2] == protocol.EXPIRED_REASON
            shown = pd.wait_watch("gss-st-error", lambda a: a[0] == "set", since=m)
            assert shown[1] == f"/synth: {protocol.EXPIRED_REASON}"
            # the patch connects again by itself and brings the fresh session up to date
            pd.wait_watch("gss-ev", lambda a: a[0] == "connected", since=m, timeout=15)
            pd.wait_watch("gss-ev", lambda a: a[0] == "status", since=m, timeout=15)
            pd.sync()
            m = pd.mark()
            pd.to("gss-synth")
            assert loaded(pd, "gss", "snd", m)[1:] == (64000, 16000)
            done(pd, "gss", "/synth", m)
            [new] = server.sessions()
            assert new is not old and new.sender != old.sender
            assert new.reply_to == old.reply_to and new.subscribed
            assert new.pitch == 40
            assert np.array_equal(new.coefficients[:2], [1.5, 0.0])
            assert {0, 1, 2} <= set(new.z)           # z slots A, B and the one played
            assert len(pd.seen("gss-ev", lambda a: a[0] == "connected")) == 2   # one reconnect
