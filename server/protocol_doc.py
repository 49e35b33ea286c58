"""The Markdown rendering of the protocol table: the text of ``docs/protocol.md``.

``python -m ganspace_server.protocol docs/protocol.md`` writes it; a test checks the file is up to
date.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ganspace_server.protocol import (
    CHUNK_FLOATS,
    COMMANDS,
    DEFAULT_PORT,
    EXPIRED_REASON,
    LIMITS,
    MAX_JOBS,
    MAX_QUEUE,
    PROTOCOL_VERSION,
    REPLIES,
    SECTIONS,
    STREAM_WINDOW,
)
from ganspace_server.schema import NAME_PATTERN, Arg, Repeat, number_text

_INTRO = f"""\
# OSC protocol of the GANSpaceSynth server

<!-- Generated from server/protocol.py by `python -m ganspace_server.protocol docs/protocol.md`;
do not edit by hand. -->

Protocol version {PROTOCOL_VERSION}. The server listens on UDP port {DEFAULT_PORT} of 127.0.0.1 by
default. The grammar follows scsynth:

- Every command that does work answers `/done <cmd> [values...]` or `/fail <cmd> <reason>`, where
  `<cmd>` is the command's address as a string. Queries answer with their own reply
  (`/status.reply`, `/directions.labels.reply`, `/version.reply`, `/synced`, `/z.reply`,
  `/coef.reply`) or `/fail`.
  `/buffer.ack` and `/latest` never answer unless they are malformed.
- Replies go to the sender's address until the client sends `/notify <port>`; then to
  (sender host, port). Each client (sender host and port) has its own state: delivery mode, z
  slots, HALLU steps (the current step is the coefficient vector), settings and pitch. The model
  and directions are shared.
- Numbers: where an integer (`i`) is expected, a float with an integral value is accepted (Pd's
  `[oscparse]` turns ints into floats); where a float (`f`) is expected, an int is accepted. NaN
  and inf are refused. Strings are plain OSC strings (Pd symbols); names match `{NAME_PATTERN}`.
  The server only sends types `i`, `f` and `s`.
- Every malformed message (unknown address, wrong count, wrong type, out of range, garbage) is
  answered `/fail <address> <reason>` when its address can be read, and logged; the server never
  stops because of a message. Bundles are unpacked; their time tags are ignored.
- Jobs (synthesis and hallucination) run on one generation worker; they use the client's state
  at the time the command arrived. Each client's jobs run in arrival order, and the worker takes
  the next job from the client served least recently, so a client's burst delays another
  client's next job by at most the job being rendered. When a client has {MAX_QUEUE} jobs alive
  (waiting, running or being delivered), its next is answered `/fail <cmd> busy`; when all
  clients together have {MAX_JOBS}, `/fail <cmd> busy: ...` (the server's defaults).
- A client that stops acknowledging a stream, or sends nothing for a while, has its waiting jobs
  answered `/fail <cmd> dropped: <why>`. A session idle for long (an hour by default), or
  evicted for a new client, expires: the client's next message (unless `/notify`) is answered
  `/fail <address> {EXPIRED_REASON}`; its state is gone, so it sends `/notify` and sets up its
  z slots, coefficients and settings again.

## Buffer delivery

- `file`: `/buffer.file <buffer> <path> <frames> <sample_rate>` (a 32-bit float WAV in the cache
  folder, unique name, written completely before the message) then the command's `/done`.
  In Pd: `[soundfiler] read -resize <path> <array>`. Needs the server's disk.
- `stream`: `/buffer.begin <buffer> <frames> <sample_rate>`, then `/buffer.chunk <buffer> <offset>
  f f f ...` ({CHUNK_FLOATS} floats each, at most {STREAM_WINDOW} unacknowledged; answer each with
  `/buffer.ack <buffer> <offset>`; unacknowledged chunks are sent again after a timeout and the
  delivery fails after a few tries), then `/buffer.end <buffer> <frames> <sample_rate>`, then
  `/done`. Write into a spare array and swap (or keep DSP off) so a running `[tabread4~]` never
  reads an array being resized.
- `play`: the server plays the sound on its own sound card; without one the command answers
  `/fail <cmd> <reason>`.
"""


def _range_text(arg: Arg) -> str:
    """Human text for the allowed values."""
    if arg.choices:
        return " \\| ".join(f"`{c}`" for c in arg.choices)
    if arg.type == "s":
        kind = f"name `{NAME_PATTERN}`" if arg.name_like else "text"
        return f"{kind}, <= {arg.maxlen} chars"
    if arg.pitch:
        return "a pitch of the model"
    if arg.lo is not None and arg.hi is not None:
        return f"{number_text(arg.lo)}..{number_text(arg.hi)}"
    return "any"


def _count_text(repeat: Repeat) -> str:
    """Human text for how many times a group repeats."""
    if repeat.count_arg:
        return f"exactly `{repeat.count_arg}` times"
    lo, hi = (("latent size" if v == "latent" else str(v)) for v in (repeat.min, repeat.max))
    return f"exactly {lo} times" if lo == hi else f"{lo}..{hi} times"


def _arg_rows(args: Sequence[Arg]) -> list[str]:
    rows = []
    for a in args:
        opt = " (optional" + (f", default {a.default}" if a.default is not None else "") + ")"
        rows.append(f"| `{a.name}` | `{a.type}` | {_range_text(a)} | {a.doc}"
                    f"{opt if a.optional else ''} |")
    return rows


def render_markdown() -> str:
    """The text of ``docs/protocol.md``."""
    out = [_INTRO]
    out.append("## Commands (client to server)\n")
    for section in SECTIONS:
        out.append(f"### {section}\n")
        for cmd in COMMANDS.values():
            if cmd.section != section:
                continue
            out.append(f"#### `{cmd.signature()}`\n")
            out.append(cmd.doc + (" (A job.)" if cmd.job else "") + "\n")
            args = list(cmd.args) + (list(cmd.repeat.args) if cmd.repeat else [])
            if args:
                out.append("| argument | type | values | meaning |")
                out.append("| --- | --- | --- | --- |")
                out.extend(_arg_rows(args))
                out.append("")
            if cmd.repeat:
                names = " ".join(a.name for a in cmd.repeat.args)
                out.append(f"`<{names}>` repeats {_count_text(cmd.repeat)}.\n")
            if cmd.check_doc:
                out.append(f"Constraint: {cmd.check_doc}.\n")
            replies = "; ".join(f"`{r}`" if r.startswith("/") else r for r in cmd.replies)
            out.append(f"Replies: {replies or 'none'}; errors: `/fail {cmd.address} <reason>`.\n")
    out.append("## Replies and events (server to client)\n")
    for r in REPLIES.values():
        rest = r.floats or r.ints
        tail = f" <{rest}...>" if rest else ""
        if r.group:
            tail = " <" + " ".join(a.name for a in r.group) + ">..."
        sig = " ".join([r.address, *(f"<{a.name}>" for a in r.args)]) + tail
        out.append(f"#### `{sig}`\n")
        out.append(r.doc + "\n")
        out.append("| argument | type | meaning |")
        out.append("| --- | --- | --- |")
        for a in r.args:
            out.append(f"| `{a.name}` | `{a.type}` | {a.doc} |")
        if r.floats:
            out.append(f"| `{r.floats}...` | `f` | float32 values |")
        if r.ints:
            out.append(f"| `{r.ints}...` | `i` | integers |")
        for a in r.group:
            out.append(f"| `{a.name}` | `{a.type}` | {a.doc} (repeated: one per "
                       f"`{r.args[-1].name}`) |")
        out.append("")
    out.append("## Limits\n")
    out.append("| limit | value |")
    out.append("| --- | --- |")
    for name, value, text in LIMITS:
        out.append(f"| {text} (`{name}`) | {value} |")
    out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the rendered protocol to the given file (or print it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_markdown()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
