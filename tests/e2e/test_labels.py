"""Measured direction labels reach the coefficient sliders of every patch, in real headless Pd.

The server (in the test process) serves directions whose file carries measured labels
(``write_labels``, as ``ganspacesynth eval --write-labels`` stores them): component 0 is
"brightness", 2 is "decay", 1 has none. Each [gss_coef] shows its label by sending
``label <word>`` (or ``label empty``: nothing) to its receive name ``<prefix>-c<i>-label`` (the
[cnv] after the value box); the harness watches those names, so the test sees what the sliders
show. Any Pd error line fails a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_patches import (
    PATCHES,
    PdSession,
    Served,
    expire_sessions,
    free_udp_port,
    make_directions,
    open_patch,
    require_pd,
)

from ganspace.engine.model import GANSynthModel
from ganspace.space.directions import load_directions, write_labels
from ganspace_server.config import ServerConfig
from ganspace_server.server import Server

PATCH_PREFIXES = {"ganspacesynth.pd": "gss", "ganspacesynth_noz.pd": "gssn",
                  "halluseq.pd": "hallu", "ganspacesynth_keys.pd": "keys"}
SHOWN = {0: "brightness", 1: "empty", 2: "decay"}  # what each slider shows ("empty": nothing)


def _labelled_directions(model: GANSynthModel, folder: Path) -> tuple[Path, Path]:
    """``labelled.safetensors`` (components 0 and 2 measured) and ``plain.safetensors`` (none)."""
    plain = make_directions(model, folder / "plain.safetensors")
    labelled = make_directions(model, folder / "labelled.safetensors")
    measured = {"descriptor": "", "sign": 1.0, "monotonic_fraction": 0.75, "spearman_median": 1.0}
    write_labels(labelled, {"0": {**measured, "label": "brightness", "descriptor": "centroid"},
                            "2": {**measured, "label": "decay", "descriptor": "decay"}})
    return labelled, plain


def _server(model: GANSynthModel, tmp: Path) -> tuple[Server, Path, Path]:
    labelled, plain = _labelled_directions(model, tmp / "directions")
    config = ServerConfig(port=0, cache_dir=tmp / "cache", model_roots=[tmp / "directions"])
    return Server(model, config, "tiny", load_directions(labelled)), labelled, plain


def _shows(pd: PdSession, prefix: str, index: int, label: str, since: int) -> None:
    """Wait until slider ``index`` of the patch ``prefix`` is told to show ``label``."""
    pd.wait_watch(f"{prefix}-c{index}-label", lambda a: a == ("label", label), since=since,
                  timeout=15)


def _label_names(prefix: str) -> list[str]:
    return [f"{prefix}-c{i}-label" for i in SHOWN]


def test_every_patch_shows_the_measured_labels_and_follows_a_load(tiny_model: GANSynthModel,
                                                                   tmp_path: Path) -> None:
    """All four patches in one Pd: labels at connect; the patch's own directions load (broadcast
    to every subscribed patch) clears them, loading the labelled file brings them back."""
    require_pd()
    server, labelled, plain = _server(tiny_model, tmp_path)
    with server:
        sends = [f"{p}-cfg {free_udp_port()} {server.address[1]}" for p in PATCH_PREFIXES.values()]
        sends += ["keys-lo 60", "keys-hi 60"]      # the keyboard's first bank: one note
        watch = [f"{p}-ev" for p in PATCH_PREFIXES.values()]
        watch += [n for p in PATCH_PREFIXES.values() for n in _label_names(p)]
        with PdSession([PATCHES / n for n in PATCH_PREFIXES], sends=sends, watch=watch) as pd:
            for prefix in PATCH_PREFIXES.values():
                pd.wait_watch(f"{prefix}-ev", lambda a: a[0] == "status", timeout=15)
                for index, label in SHOWN.items():
                    _shows(pd, prefix, index, label, since=0)

            m = pd.mark()
            pd.to("gss-dir-path", str(plain))
            pd.to("gss-dir-load")
            for prefix in PATCH_PREFIXES.values():
                for index in SHOWN:
                    _shows(pd, prefix, index, "empty", since=m)
            assert not [a for n in _label_names("gss") for a in pd.seen(n)[-1:]
                        if a != ("label", "empty")]

            m = pd.mark()
            pd.to("gss-dir-path", str(labelled))
            pd.to("gss-dir-load")
            for prefix in PATCH_PREFIXES.values():
                for index, label in SHOWN.items():
                    _shows(pd, prefix, index, label, since=m)
            pd.sync()
            assert not pd.errors(), "Pd reported errors:\n" + "\n".join(pd.errors())


def test_labels_come_back_after_a_session_expiry(tiny_model: GANSynthModel,
                                                 tmp_path: Path) -> None:
    """The patch connects again by itself after the server forgot it, and asks for the labels
    again (the sliders show them from the fresh session's reply)."""
    server, labelled, _ = _server(tiny_model, tmp_path)
    with server:
        served = Served(server.address[1], tmp_path, labelled, [])
        with open_patch("ganspacesynth.pd", "gss", served, extra=_label_names("gss")) as pd:
            for index, label in SHOWN.items():
                _shows(pd, "gss", index, label, since=0)
            expire_sessions(server)                  # the session expires now ...
            m = pd.mark()
            pd.to("gss-synth")                        # ... refused: the patch reconnects
            pd.wait_watch("gss-ev", lambda a: a[0] == "connected", since=m, timeout=15)
            for index, label in SHOWN.items():
                _shows(pd, "gss", index, label, since=m)
            pd.sync()
            connects: list[Any] = pd.seen("gss-ev", lambda a: a[0] == "connected")
            assert len(connects) == 2                 # the first connection and one reconnect
