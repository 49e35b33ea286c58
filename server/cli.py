"""Server verbs of ``ganspacesynth``: ``serve`` and ``bench-server`` (registered through the
``ganspacesynth.verbs`` entry points)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ganspace import formats
from ganspace.cli.args import add_device_arg, add_precision_arg
from ganspace.errors import InputError
from ganspace_server import protocol

log = logging.getLogger("ganspace_server")

REPO_MODELS = formats.REPO_MODELS
INSTALLED_MODELS = formats.INSTALLED_MODELS


def default_model_dir() -> Path:
    """The shipped default model (:func:`ganspace.formats.default_model_dir`)."""
    return formats.default_model_dir(REPO_MODELS, INSTALLED_MODELS)


def register_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` verb."""
    p = sub.add_parser(
        "serve", help="run the OSC server that Pd patches (or any OSC client) play",
        description="Serve a GANSynth model over OSC/UDP (protocol: docs/protocol.md). OSC has "
        "no encryption and no authentication: keep it on loopback or a trusted network.")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (native or Magenta); default: the shipped models/default")
    p.add_argument("--directions", type=Path, default=None,
                   help="GANSpace directions file (default: the one directions file inside the "
                   "model folder, when it holds exactly one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (non-loopback needs --allow)")
    p.add_argument("--port", type=int, default=protocol.DEFAULT_PORT,
                   help=f"UDP port (default {protocol.DEFAULT_PORT}; 0 picks a free one)")
    add_device_arg(p)
    add_precision_arg(p, default="auto")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="folder for delivered WAV files (default ~/.cache/ganspacesynth/buffers)")
    p.add_argument("--model-root", type=Path, nargs="+", action="extend", default=[],
                   metavar="DIR", help="folders /model.load and /directions.load may read "
                   "(default: the repository's models/, the --model folder and the "
                   "--directions folder)")
    p.add_argument("--presets", type=Path, default=None, metavar="DIR",
                   help="folder of the presets clients save and load (default "
                   "~/.local/share/ganspacesynth/presets)")
    p.add_argument("--allow-quit", action="store_true", help="let clients stop the server")
    p.add_argument("--allow", nargs="+", action="extend", default=[], metavar="CIDR",
                   help="networks allowed to send besides loopback (e.g. 192.168.1.0/24)")
    add_client_limits(p)
    p.set_defaults(func=_serve)


def add_client_limits(p: argparse.ArgumentParser) -> None:
    """The flags of the per-client limits (defaults: :class:`ServerConfig`'s, docs/server.md)."""
    from ganspace_server.config import ServerConfig

    d = ServerConfig()
    g = p.add_argument_group("clients", "fair sharing, gone clients, session expiry "
                             "(docs/server.md explains the defaults)")
    g.add_argument("--client-jobs", type=_positive_int, default=d.client_jobs, metavar="N",
                   help="jobs one client may have alive; the next answers busy "
                   f"(default {d.client_jobs})")
    g.add_argument("--max-jobs", type=_positive_int, default=d.max_jobs, metavar="N",
                   help=f"jobs alive of all clients together (default {d.max_jobs})")
    g.add_argument("--client-timeout", type=_positive_float, default=d.client_timeout,
                   metavar="SECONDS", help="a client silent this long has its waiting jobs "
                   f"dropped and may lose its session to a new client (default "
                   f"{d.client_timeout:g})")
    g.add_argument("--session-idle", type=_positive_float, default=d.session_idle,
                   metavar="SECONDS", help="a client silent this long loses its session (z "
                   f"slots, coefficients, HALLU steps...) (default {d.session_idle:g})")
    g.add_argument("--max-sessions", type=_positive_int, default=d.max_sessions, metavar="N",
                   help=f"client sessions kept at once (default {d.max_sessions})")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: must be more than 0")
    return value


def register_bench_server(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench-server`` verb."""
    p = sub.add_parser(
        "bench-server", help="measure the server's request-to-reply overhead on loopback, or "
        "soak it with three clients (--soak)",
        description="Time /synth of one 4 s note over loopback OSC, minus the generation time "
        "the server measured: file delivery and stream delivery (64000 floats) to the Python "
        "client; p50 and p95 in milliseconds. With --soak MINUTES: three clients play at once "
        "for that long (one vanishes halfway, a new one joins), a table row per interval, then "
        "the targets; exit status 1 when one is missed (docs/server.md, 'Soak').")
    p.add_argument("--model", default="tiny",
                   help="model folder, or 'tiny' for a tiny random model (default)")
    p.add_argument("--requests", type=int, default=50, help="requests per delivery mode")
    add_device_arg(p, default="cpu")
    soak = p.add_argument_group("soak")
    soak.add_argument("--soak", type=_positive_float, metavar="MINUTES",
                      help="play a session from 3 clients for MINUTES and check the targets")
    soak.add_argument("--interval", type=_positive_float, default=60.0, metavar="SECONDS",
                      help="seconds per table row (default 60)")
    soak.add_argument("--cache-mb", type=_positive_float, default=256.0, metavar="MB",
                      help="the server's cache bound (default 256, the server's default)")
    soak.add_argument("--directions", type=Path, default=None,
                      help="directions file for the model (default: random directions)")
    p.set_defaults(func=_bench)


def _serve(args: argparse.Namespace) -> int:
    from ganspace.formats import load_model
    from ganspace.space.directions import load_directions
    from ganspace_server.config import ServerConfig
    from ganspace_server.guard import parse_networks
    from ganspace_server.handlers.model import folder_directions
    from ganspace_server.server import Server

    model_dir: Path = args.model or default_model_dir()
    if args.model is None and not (model_dir / "model.json").is_file():
        raise InputError(f"no default model shipped yet ({model_dir} holds no model.json): "
                         "pass --model ...")
    if args.directions is None and model_dir.is_dir():
        args.directions = folder_directions(model_dir)
    roots = list(args.model_root)
    if not roots:
        roots = [r for r in (REPO_MODELS, model_dir.parent, model_dir) if r.is_dir()]
        if args.directions is not None:
            roots.append(args.directions.resolve().parent)
    config = ServerConfig(host=args.host, port=args.port, model_roots=roots,
                          allow=parse_networks(args.allow), allow_quit=args.allow_quit,
                          client_jobs=args.client_jobs, max_jobs=args.max_jobs,
                          client_timeout=args.client_timeout, session_idle=args.session_idle,
                          max_sessions=args.max_sessions)
    if args.cache_dir is not None:
        config.cache_dir = args.cache_dir
    if args.presets is not None:
        config.presets_dir = args.presets
    print(f"loading model {model_dir} ...", flush=True)
    model = load_model(model_dir, device=args.device, precision=args.precision)
    _ = model.fingerprint  # computed now, not while a client waits (presets, directions checks)
    directions = load_directions(args.directions) if args.directions is not None else None
    if directions is not None:
        print(f"directions {args.directions} (layer {directions.layer}, K={directions.count})",
              flush=True)
    sys.setswitchinterval(0.001)  # answer packets promptly while the worker holds the GIL
    server = Server(model, config, model_dir.resolve().name, directions)
    server.start()
    host, port = server.address
    print(f"listening on udp {host}:{port} (device {model.device}, precision {model.precision}, "
          f"cache {config.cache_dir})",
          flush=True)
    print(f"ganspacesynth server ready on {host}:{port}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("server stopped", flush=True)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ganspace_server import bench_server as bench
    from ganspace_server import soak

    if args.requests < 2:
        raise InputError("--requests must be at least 2")
    sys.setswitchinterval(0.001)
    if args.soak is None:
        print(bench.format_report(bench.run_bench(args.model, args.requests,
                                                  args.device)))
        return 0
    print(f"soak: {args.soak:g} min, a row every {args.interval:g} s", flush=True)
    print(soak.SOAK_HEADER, flush=True)
    report = soak.run_soak(args.soak, args.model, args.device, args.directions,
                           args.interval, args.cache_mb,
                           on_row=lambda row: print(soak.format_soak_row(row), flush=True))
    print("\n" + soak.format_soak(report))
    return 0 if report.ok else 1
