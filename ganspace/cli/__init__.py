"""The ``ganspacesynth`` console command: one verb per task, each with ``--help``.

Verbs are registered by the modules listed in ``_VERB_MODULES`` (the core library) and by the
``ganspacesynth.verbs`` entry-point group (the OSC server registers ``serve`` there, so ``ganspace``
never imports ``ganspace_server``). A register function takes the argparse sub-parsers object and
adds one or more parsers whose ``func`` default is called with the parsed namespace.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from ganspace.errors import GanspaceError

_VERB_MODULES = ("ganspace.cli.engine", "ganspace.cli.space", "ganspace.cli.train")

Register = Callable[[argparse._SubParsersAction], None]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every verb registered."""
    parser = argparse.ArgumentParser(
        prog="ganspacesynth",
        description="GANSynth + GANSpace instrument: generate, explore, train and serve to Pd.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in _VERB_MODULES:
        importlib.import_module(name).register(sub)
    for ep in sorted(entry_points(group="ganspacesynth.verbs"), key=lambda e: e.name):
        register: Register = ep.load()
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; user errors print ``error: ...`` and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except GanspaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
