"""Model commands: load a model or directions in a loader thread (the old ones keep serving until
the swap), list layers and pitches. A model folder that holds exactly one directions file loads it
together with the model (:func:`folder_directions`)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from ganspace.engine.model import GANSynthModel
from ganspace.errors import GanspaceError, InputError
from ganspace.formats import load_model
from ganspace.space.directions import FORMAT_NAME, Directions, load_directions
from ganspace_server.handlers.registry import handler
from ganspace_server.handlers.session import broadcast_status, label_values
from ganspace_server.schema import Request
from ganspace_server.session import Session

if TYPE_CHECKING:
    from ganspace_server.server import Server

log = logging.getLogger("ganspace_server")

DoneValues = tuple[int | float | str, ...]


def folder_directions(folder: Path) -> Path | None:
    """The GANSpace directions file directly inside a model folder when there is exactly one
    (``*.safetensors`` whose header says so; only the header is read), else None."""
    found = []
    for p in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(p), framework="np") as f:
                header = f.metadata() or {}
        except (OSError, SafetensorError):
            continue
        if header.get("format") == FORMAT_NAME:
            found.append(p)
    if len(found) > 1:
        log.warning("%s holds %d directions files: none is loaded with it (choose one)", folder,
                    len(found))
    return found[0] if len(found) == 1 else None


def _load_in_background(server: Server, s: Session, cmd: str,
                        work: Callable[[], DoneValues]) -> None:
    """Run a load in a thread (one at a time); answer /done with its values or /fail."""
    if not server.loading.acquire(blocking=False):
        raise InputError("busy: a model or directions load is already running")
    op = server.next_id()
    s.begin(op)

    def run() -> None:
        values: DoneValues | None = None
        try:
            values = work()
        except GanspaceError as exc:
            reason = str(exc)
        except Exception as exc:  # a broken file must not kill the server
            log.exception("%s failed", cmd)
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            server.loading.release()  # before the answer: the client may load again at once
        if values is None:
            server.fail(s, cmd, reason)
        else:
            server.done(s, cmd, *values)
            broadcast_status(server)
        server.synced(s, s.end(op))

    threading.Thread(target=run, name="loader", daemon=True).start()


def _own_directions(server: Server, folder: Path, model: GANSynthModel
                    ) -> Directions | None:
    """The directions file of a model folder (inside the model roots) when it fits the model;
    None (logged) when there is none or it does not fit."""
    found = folder_directions(folder) if folder.is_dir() else None
    if found is None:
        return None
    try:
        d = load_directions(server.paths.resolve(str(found)))
        d.check_compatible(model)
    except GanspaceError as exc:
        log.warning("the directions file of %s is not loaded: %s", folder, exc)
        return None
    log.info("directions %s loaded with the model", found)
    return d


@handler("/model.load")
def model_load(server: Server, s: Session, r: Request) -> None:
    """Load a model inside a model root; keep the directions when they fit it."""
    path = server.paths.resolve(r["path"])
    device, precision = server.state.model.device, server.state.model.precision

    def work() -> DoneValues:
        model = load_model(path, device=device, precision=precision)
        _ = model.fingerprint  # computed here, not on the receiver thread (presets need it)
        d = _own_directions(server, path, model) or server.state.directions
        if d is not None:
            try:
                d.check_compatible(model)
            except GanspaceError as exc:
                log.info("directions dropped with the new model: %s", exc)
                d = None
        server.state = dataclasses.replace(server.state, model=model, name=path.name,
                                           directions=d)
        for sess in server.sessions():
            sess.reset_for_model(model.latent_size, model.pitches)
        log.info("model %s loaded", path)
        return path.name, model.audio_length, model.sample_rate

    _load_in_background(server, s, "/model.load", work)


@handler("/directions.load")
def directions_load(server: Server, s: Session, r: Request) -> None:
    """Load a directions file inside a model root; it must fit the model."""
    path = server.paths.resolve(r["path"])
    if not path.is_file():
        raise InputError(f"{r['path']}: not a file")

    def work() -> DoneValues:
        d = load_directions(path)
        st = server.state
        d.check_compatible(st.model)
        server.state = dataclasses.replace(st, directions=d)
        log.info("directions %s loaded (K=%d, layer %s)", path, d.count, d.layer)
        return d.count, d.layer

    _load_in_background(server, s, "/directions.load", work)


@handler("/model.layers")
def model_layers(server: Server, s: Session, r: Request) -> None:
    """List the generator's layer names."""
    server.done(s, "/model.layers", *server.state.model.layer_names())


@handler("/model.pitches")
def model_pitches(server: Server, s: Session, r: Request) -> None:
    """List the model's pitches."""
    server.done(s, "/model.pitches", *server.state.model.pitches)


@handler("/directions.labels")
def directions_labels(server: Server, s: Session, r: Request) -> None:
    """Answer ``/directions.labels.reply``: the loaded directions' measured labels."""
    server.reply(s, "/directions.labels.reply", *label_values(server))
