"""The OSC protocol of the GANSpaceSynth server: the single table every message is checked against.

Every command the server understands is one :class:`Command` in :data:`COMMANDS` (address, typed
arguments with ranges, replies, documentation); every message the server sends is one
:class:`Reply` in :data:`REPLIES`. :func:`validate` checks an incoming message against the table
(one generic validator for all commands) and :func:`render_markdown` writes ``docs/protocol.md``
(``python -m ganspace_server.protocol docs/protocol.md``; a test checks the file is up to date).

Pure Data's ``[oscparse]`` turns every number into a float, so wherever an integer is expected a
float with an integral value is accepted; floats accept integers too. Symbols are plain OSC strings.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PROTOCOL_VERSION = 1
DEFAULT_PORT = 57130

# ---- limits (part of the protocol: a client may rely on them) ---------------------------------
MAX_PACKET = 65507  #: largest UDP payload the server reads
MAX_CLIENTS = 32  #: sessions kept at once (idle ones are evicted first)
Z_SLOTS = 64  #: server-side latent slots per client, 0..63
COEF_MAX = 1024  #: coefficients per vector, indices 0..1023
COEF_LIMIT = 100.0  #: |coefficient| in standard deviations
Z_LIMIT = 100.0  #: |z component|
MAX_BATCH = 64  #: sounds per /synth.batch
MAX_STEPS = 64  #: HALLU steps per client
MAX_KEYPOINTS = 64  #: z keypoints per /hallu.z
MAX_SLERP_STEPS = 64  #: slerp steps between z keypoints
MAX_INTERP = 32  #: HALLU interpolation steps (subdivisions)
MAX_HALLU_SOUNDS = 2048  #: sounds per hallucination
MAX_CLIP_SECONDS = 600.0  #: length of a hallucination clip
MAX_SETTING_SECONDS = 4.0  #: HALLU spacing / trim / attack / sustain / release
MAX_QUEUE = 32  #: generation jobs waiting per server (full -> /fail <cmd> busy)
MAX_SYNCS = 256  #: unanswered /sync requests per client
CHUNK_FLOATS = 4000  #: floats per /buffer.chunk (at most 8000)
STREAM_WINDOW = 7  #: unacknowledged chunks in flight (4000 x 7 x 5 bytes = 140 kB)
NAME_MAX = 64  #: characters in a buffer name, prefix or tag
PATH_MAX = 1024  #: characters in a path
INT32_MAX = 2**31 - 1
MIRROR_MIN = 16  #: coefficients mirrored with /hallu.coef (more when higher ones were set)
HALLU_SETTINGS = ("interp", "spacing", "trim", "attack", "sustain", "release")

NAME_PATTERN = r"[A-Za-z0-9_.+~#$-]+"
_NAME_RE = re.compile(NAME_PATTERN)


class ProtocolError(ValueError):
    """A message does not match the protocol table; the text is the ``/fail`` reason."""


class Context(Protocol):
    """What the validator needs to know about the loaded model."""

    @property
    def latent_size(self) -> int:
        """Width of z."""
        ...

    @property
    def pitches(self) -> Sequence[int]:
        """MIDI pitches the model knows."""
        ...


@dataclass(frozen=True)
class Arg:
    """One argument of a message.

    Attributes:
        name: argument name (in docs and in the validated values).
        type: OSC type the server sends or expects: ``i`` (int32; floats with integral values are
            accepted), ``f`` (float32; ints accepted; NaN and inf refused) or ``s`` (string).
        doc: what it means.
        lo, hi: inclusive range for numbers.
        choices: allowed strings.
        name_like: the string must match :data:`NAME_PATTERN` (Pd array names, tags).
        maxlen: most characters of a string.
        pitch: the integer must be a MIDI pitch the loaded model knows.
        default: value when an optional argument is left out (``None``: from the client's state).
        optional: may be left out (only trailing arguments).
    """

    name: str
    type: str
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    name_like: bool = False
    maxlen: int = NAME_MAX
    pitch: bool = False
    default: Any = None
    optional: bool = False

    def range_text(self) -> str:
        """Human text for the allowed values."""
        if self.choices:
            return " \\| ".join(f"`{c}`" for c in self.choices)
        if self.type == "s":
            kind = f"name `{NAME_PATTERN}`" if self.name_like else "text"
            return f"{kind}, <= {self.maxlen} chars"
        if self.pitch:
            return "a pitch of the model"
        if self.lo is not None and self.hi is not None:
            return f"{_num(self.lo)}..{_num(self.hi)}"
        return "any"


@dataclass(frozen=True)
class Repeat:
    """A trailing group of arguments repeated ``min..max`` times (limits may name a context value:
    ``"latent"`` is the model's latent size), or exactly as often as the integer argument
    ``count_arg`` says."""

    args: tuple[Arg, ...]
    min: int | str
    max: int | str
    count_arg: str | None = None

    def count_text(self) -> str:
        """Human text for how many times the group repeats."""
        if self.count_arg:
            return f"exactly `{self.count_arg}` times"
        lo, hi = (("latent size" if v == "latent" else str(v)) for v in (self.min, self.max))
        return f"exactly {lo} times" if lo == hi else f"{lo}..{hi} times"


@dataclass(frozen=True)
class Reply:
    """A message the server sends."""

    address: str
    args: tuple[Arg, ...]
    doc: str
    floats: str = ""  # name of a trailing list of floats, if any


@dataclass(frozen=True)
class Command:
    """A message the server understands.

    Attributes:
        address: OSC address.
        section: heading it is documented under.
        doc: what it does.
        args: fixed arguments (optional ones last).
        repeat: trailing repeated group, if any.
        replies: what the server answers, in order (addresses of :data:`REPLIES`, or text).
        check: cross-argument constraint: returns the /fail reason or None.
        check_doc: the constraint in words (documentation).
        job: done by the generation worker (queued; may be tagged with /latest; cancellable).
    """

    address: str
    section: str
    doc: str
    args: tuple[Arg, ...] = ()
    repeat: Repeat | None = None
    replies: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    check_doc: str = ""
    job: bool = False

    def signature(self) -> str:
        """``/address <a> [b] <c d>...`` for documentation."""
        parts = [self.address]
        for a in self.args:
            parts.append(f"[{a.name}]" if a.optional else f"<{a.name}>")
        if self.repeat:
            parts.append("<" + " ".join(a.name for a in self.repeat.args) + ">...")
        return " ".join(parts)


@dataclass
class Request:
    """A validated message: its command, argument values by name (defaults filled in) and the
    repeated groups as tuples."""

    command: Command
    values: dict[str, Any]
    groups: list[tuple[Any, ...]] = field(default_factory=list)
    tag: str | None = None  # the /latest tag that applies (set by the server)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# ---- argument builders --------------------------------------------------------------------------
def _int(name: str, doc: str, lo: float, hi: float, optional: bool = False,
         default: Any = None) -> Arg:
    return Arg(name, "i", doc, lo=lo, hi=hi, optional=optional, default=default)


def _float(name: str, doc: str, lo: float, hi: float) -> Arg:
    return Arg(name, "f", doc, lo=lo, hi=hi)


def _name(name: str, doc: str) -> Arg:
    return Arg(name, "s", doc, name_like=True)


def _path(doc: str) -> Arg:
    return Arg("path", "s", doc, maxlen=PATH_MAX)


def _pitch(optional: bool = False) -> Arg:
    return Arg("pitch", "i", "MIDI pitch; left out: the client's current pitch (/pitch)",
               lo=0, hi=127, pitch=True, optional=optional)


_SLOT_DOC = f"z slot 0..{Z_SLOTS - 1}"


def _slot(name: str = "slot", optional: bool = False, doc: str = _SLOT_DOC) -> Arg:
    return _int(name, doc, 0, Z_SLOTS - 1, optional=optional, default=0 if optional else None)


def _seconds(doc: str) -> Arg:
    return _float("seconds", f"{doc}, in seconds", 0.0, MAX_SETTING_SECONDS)


def _check_setn(v: Mapping[str, Any]) -> str | None:
    if v["start"] + v["count"] > COEF_MAX:
        return f"start + count must be <= {COEF_MAX}"
    return None


def _check_hallu_z(v: Mapping[str, Any]) -> str | None:
    n = v["keypoints"] + (v["keypoints"] - 1) * v["steps"]
    if n > MAX_HALLU_SOUNDS:
        return f"{n} sounds asked for; a hallucination holds at most {MAX_HALLU_SOUNDS}"
    return None


_DELIVERY = "buffer delivery (/buffer.file, or /buffer.begin /buffer.chunk... /buffer.end)"
_STEP = ("/hallu.step", "/hallu.coef (each mirrored coefficient)")

COMMANDS: dict[str, Command] = {c.address: c for c in (
    # ---- session --------------------------------------------------------------------------------
    Command("/notify", "Session",
            "Send replies and events for this client to (sender host, `port`) from now on (Pd "
            "listens on another port than it sends from). `on` 1 (default) also subscribes to "
            "events: `/progress` of this client's jobs and `/status.reply` when the model or "
            "directions change.",
            (_int("port", "UDP port the client listens on", 1, 65535),
             _int("on", "1 subscribe to events, 0 unsubscribe", 0, 1, optional=True, default=1)),
            replies=("/done /notify <port>",)),
    Command("/delivery", "Session",
            "How this client receives buffers: `file` (a float WAV in the server's cache folder; "
            "client and server share a disk), `stream` (chunks over OSC with acks; works across "
            "machines) or `play` (the server plays it on its own sound card). Default `file`.",
            (Arg("mode", "s", "delivery mode", choices=("file", "stream", "play")),),
            replies=("/done /delivery <mode>",)),
    Command("/buffer.ack", "Session",
            "Acknowledge one `/buffer.chunk` (stream delivery). No reply.",
            (_name("buffer", "buffer name of the chunk"),
             _int("offset", "offset of the chunk", 0, INT32_MAX))),
    Command("/status", "Session", "Ask for the server's state.", replies=("/status.reply",)),
    Command("/version", "Session", "Ask for the server's version.", replies=("/version.reply",)),
    Command("/sync", "Session",
            "Answer `/synced <id>` once every earlier command of this client has finished "
            "(including its buffer delivery).",
            (_int("id", "any integer, echoed", -INT32_MAX - 1, INT32_MAX),),
            replies=("/synced",)),
    Command("/latest", "Session",
            "Tag this client's next command (other than /buffer.ack) with `tag`: a newer "
            "command with the same tag supersedes it while it waits in the queue or before its "
            "delivery (it is then answered `/fail <cmd> superseded`). For slider sweeps: only "
            "the newest position is rendered. No reply; a command that is not a job just drops "
            "the tag.",
            (_name("tag", "any name"),)),
    Command("/cancel", "Session",
            "Cancel this client's jobs: one (`job` from `/progress`) or all (`job` 0 or left "
            "out). Each cancelled job answers `/fail <cmd> cancelled`.",
            (_int("job", "job id, 0 = all of this client's jobs", 0, INT32_MAX, optional=True,
                  default=0),),
            replies=("/done /cancel <count>",)),
    Command("/quit", "Session",
            "Stop the server (only when it was started with `--allow-quit`).",
            replies=("/done /quit",)),
    # ---- model ----------------------------------------------------------------------------------
    Command("/model.load", "Model",
            "Load another model (a native folder or a Magenta checkpoint folder) inside one of "
            "the server's model roots. Runs in the background: the old model keeps serving until "
            "the new one is ready. On failure nothing changes. Directions that do not fit the new "
            "model are dropped; z slots of another width are emptied.",
            (_path("model folder, absolute or relative to the first model root"),),
            replies=("/done /model.load <name> <audio_length> <sample_rate>",
                     "/status.reply (to subscribers)")),
    Command("/directions.load", "Model",
            "Load a GANSpace directions file (safe format only, never a pickle) inside a model "
            "root; it must have been made for the loaded model.",
            (_path("directions file, absolute or relative to the first model root"),),
            replies=("/done /directions.load <K> <layer>", "/status.reply (to subscribers)")),
    Command("/model.layers", "Model", "List the generator's layer names.",
            replies=("/done /model.layers <name>...",)),
    Command("/model.pitches", "Model",
            "List every MIDI pitch the model knows (a pitch set may have gaps; /status.reply "
            "gives only the count and range).",
            replies=("/done /model.pitches <pitch>...",)),
    # ---- latents --------------------------------------------------------------------------------
    Command("/z.random", "Latents",
            "Fill a z slot with a standard-normal latent vector.",
            (_slot(), _int("seed", "random seed (exact in Pd up to 16777216); left out: fresh",
                           0, INT32_MAX, optional=True)),
            replies=("/done /z.random <slot>",)),
    Command("/z.set", "Latents", "Set a z slot to the given vector.",
            (_slot(),),
            Repeat((_float("value", "z component", -Z_LIMIT, Z_LIMIT),), "latent", "latent"),
            replies=("/done /z.set <slot>",)),
    Command("/z.get", "Latents", "Read a z slot.", (_slot(),), replies=("/z.reply",)),
    Command("/z.slerp", "Latents",
            "Set slot `dst` to the spherical interpolation between slots `a` and `b`.",
            (_slot("dst", doc="destination slot"), _slot("a", doc="slot at t = 0"),
             _slot("b", doc="slot at t = 1"), _float("t", "position", 0.0, 1.0)),
            replies=("/done /z.slerp <dst>",)),
    # ---- coefficients ---------------------------------------------------------------------------
    Command("/coef.set", "Coefficients",
            "Set coefficients of the current HALLU step (the vector `/synth` and `/synth.noz` "
            "apply), in standard deviations along each direction.",
            repeat=Repeat((_int("index", "direction index", 0, COEF_MAX - 1),
                           _float("value", "coefficient", -COEF_LIMIT, COEF_LIMIT)), 1, COEF_MAX),
            replies=("/done /coef.set",)),
    Command("/coef.setn", "Coefficients",
            "Set `count` consecutive coefficients from `start` (like scsynth's /n_setn).",
            (_int("start", "first index", 0, COEF_MAX - 1), _int("count", "how many", 1, COEF_MAX)),
            Repeat((_float("value", "coefficient", -COEF_LIMIT, COEF_LIMIT),), 1, COEF_MAX,
                   count_arg="count"),
            replies=("/done /coef.setn",), check=_check_setn,
            check_doc=f"start + count <= {COEF_MAX}"),
    Command("/coef.zero", "Coefficients", "Set every coefficient of the current step to 0.",
            replies=("/done /coef.zero",)),
    Command("/coef.get", "Coefficients", "Read coefficients of the current step.",
            (_int("start", "first index", 0, COEF_MAX - 1, optional=True, default=0),
             _int("count", "how many", 1, COEF_MAX, optional=True, default=MIRROR_MIN)),
            replies=("/coef.reply",), check=_check_setn, check_doc=f"start + count <= {COEF_MAX}"),
    Command("/pitch", "Coefficients",
            "Set this client's current pitch (default 32, or the model's middle pitch).",
            (_pitch(),), replies=("/done /pitch <pitch>",)),
    # ---- synthesis ------------------------------------------------------------------------------
    Command("/synth", "Synthesis",
            "Synthesize one 4 s note from a z slot; the current coefficients are applied when "
            "directions are loaded.",
            (_name("buffer", "buffer (Pd array) name"), _pitch(optional=True),
             _slot("zslot", optional=True, doc="z slot, default 0")),
            replies=(_DELIVERY, "/done /synth <buffer>"), job=True),
    Command("/synth.noz", "Synthesis",
            "Synthesize one note without z: the directions layer is set to the global mean plus "
            "the current coefficients (needs directions).",
            (_name("buffer", "buffer name"), _pitch(optional=True)),
            replies=(_DELIVERY, "/done /synth.noz <buffer>"), job=True),
    Command("/synth.batch", "Synthesis",
            "Synthesize several notes in one batch on the device; note i goes to buffer "
            "`<prefix><i>` (i from 0); the current coefficients apply to all.",
            (_name("prefix", "buffer name prefix"),),
            Repeat((_slot("zslot"), _pitch()), 1, MAX_BATCH),
            replies=(_DELIVERY + " for each note", "/done /synth.batch <prefix> <count>"),
            job=True),
    # ---- hallucination --------------------------------------------------------------------------
    Command("/hallu", "Hallucination",
            "Hallucinate through the HALLU steps (coefficient space, needs directions): "
            "consecutive steps are interpolated linearly with `interp` subdivisions, "
            "N + (N-1) max(0, interp-1) sounds at the current pitch, each shaped by the envelope "
            "(trim, attack, sustain, release), `spacing` seconds apart, mixed to peak 0.5.",
            (_name("buffer", "buffer name"),),
            replies=("/progress (subscribers)", _DELIVERY,
                     "/done /hallu <buffer> <sounds> <frames>"), job=True),
    Command("/hallu.z", "Hallucination",
            "Hallucinate in z space: `keypoints` random latents with `steps` slerp steps between "
            "consecutive ones (keypoints + (keypoints-1) steps sounds), the current pitch, "
            "coefficients (when directions are loaded) and HALLU settings.",
            (_name("buffer", "buffer name"),
             _int("keypoints", "random keypoints", 2, MAX_KEYPOINTS),
             _int("steps", "slerp steps between keypoints", 0, MAX_SLERP_STEPS),
             _int("seed", "random seed; left out: fresh", 0, INT32_MAX, optional=True)),
            replies=("/progress (subscribers)", _DELIVERY,
                     "/done /hallu.z <buffer> <sounds> <frames>"),
            check=_check_hallu_z, check_doc=f"keypoints + (keypoints-1) steps <= "
            f"{MAX_HALLU_SOUNDS}", job=True),
    Command("/hallu.add", "HALLU sequencer",
            f"Insert a copy of the current step after it and go to the copy (at most {MAX_STEPS} "
            "steps).", replies=(*_STEP, "/done /hallu.add")),
    Command("/hallu.remove", "HALLU sequencer",
            "Remove the current step (the last one left is zeroed instead).",
            replies=(*_STEP, "/done /hallu.remove")),
    Command("/hallu.next", "HALLU sequencer", "Go to the next step (stays on the last).",
            replies=(*_STEP, "/done /hallu.next")),
    Command("/hallu.prev", "HALLU sequencer", "Go to the previous step (stays on the first).",
            replies=(*_STEP, "/done /hallu.prev")),
    Command("/hallu.state", "HALLU sequencer",
            "Send the whole sequencer state (to mirror it in a patch).",
            replies=("/hallu.step", "/hallu.setting (each of the six)", "/hallu.coef (each "
                     "mirrored coefficient)", "/done /hallu.state")),
    Command("/hallu.interp", "HALLU settings",
            "Interpolation steps between HALLU steps (subdivisions; 0 and 1 add none).",
            (_int("steps", "subdivisions", 0, MAX_INTERP),),
            replies=("/hallu.setting interp <steps>", "/done /hallu.interp")),
    *(Command(f"/hallu.{name}", "HALLU settings", f"Set the HALLU {text}.",
              (_seconds(text),),
              replies=(f"/hallu.setting {name} <seconds>", f"/done /hallu.{name}"))
      for name, text in (("spacing", "time between note onsets"),
                         ("trim", "silence cut from the start of each note"),
                         ("attack", "linear fade-in after the trim"),
                         ("sustain", "time at full level after the attack"),
                         ("release", "linear fade-out after the sustain"))),
)}

SECTIONS = ("Session", "Model", "Latents", "Coefficients", "Synthesis", "Hallucination",
            "HALLU sequencer", "HALLU settings")

REPLIES: dict[str, Reply] = {r.address: r for r in (
    Reply("/done", (Arg("cmd", "s", "the command's address"),),
          "A command succeeded; command-specific values follow (see each command)."),
    Reply("/fail", (Arg("cmd", "s", "the command's address (as sent, at most 128 characters)"),
                    Arg("reason", "s", "what was wrong, in words")),
          "A command failed; nothing changed. Reasons include `busy` (queue full), "
          "`superseded` (/latest), `cancelled`, `unknown command`, argument errors."),
    Reply("/synced", (Arg("id", "i", "the id given to /sync"),), "Answer to /sync."),
    Reply("/status.reply",
          (Arg("model", "s", "model name (folder name)"), Arg("pitches", "i", "number of pitches"),
           Arg("min_pitch", "i", "lowest pitch"), Arg("max_pitch", "i", "highest pitch"),
           Arg("latent", "i", "latent size"), Arg("k", "i", "directions loaded (0 if none)"),
           Arg("layer", "s", "directions layer (\"\" if none)"),
           Arg("device", "s", "cpu or cuda[:n]"), Arg("queue", "i", "jobs waiting or running"),
           Arg("version", "s", "server version")),
          "The server's state (answer to /status; also sent to subscribers when it changes)."),
    Reply("/version.reply",
          (Arg("program", "s", "`ganspacesynth`"), Arg("version", "s", "package version"),
           Arg("protocol", "i", f"protocol version ({PROTOCOL_VERSION})")),
          "Answer to /version."),
    Reply("/z.reply", (Arg("slot", "i", "z slot"),), "Answer to /z.get.", floats="values"),
    Reply("/coef.reply", (Arg("start", "i", "index of the first value"),),
          "Answer to /coef.get.", floats="values"),
    Reply("/buffer.file",
          (Arg("buffer", "s", "buffer name"), Arg("path", "s", "absolute path of a 32-bit float "
                                                 "WAV in the server's cache folder"),
           Arg("frames", "i", "samples"), Arg("sample_rate", "i", "Hz")),
          "File delivery, sent before the command's /done. Read it with `[soundfiler] read "
          "-resize <path> <array>`; the server deletes old files when its cache is full."),
    Reply("/buffer.begin",
          (Arg("buffer", "s", "buffer name"), Arg("frames", "i", "samples"),
           Arg("sample_rate", "i", "Hz")),
          "Stream delivery starts: resize a spare array to `frames`."),
    Reply("/buffer.chunk", (Arg("buffer", "s", "buffer name"),
                            Arg("offset", "i", "index of the first sample")),
          f"Stream delivery: at most {CHUNK_FLOATS} samples (never more than 8000) for "
          "`[array set]` at `offset`. Answer each with `/buffer.ack <buffer> <offset>`; at most "
          f"{STREAM_WINDOW} chunks are unacknowledged; an unacknowledged chunk is sent again.",
          floats="samples"),
    Reply("/buffer.end",
          (Arg("buffer", "s", "buffer name"), Arg("frames", "i", "samples"),
           Arg("sample_rate", "i", "Hz")),
          "Stream delivery complete (every chunk acknowledged); the command's /done follows."),
    Reply("/progress",
          (Arg("cmd", "s", "the command's address"), Arg("job", "i", "job id (for /cancel)"),
           Arg("done", "i", "sounds done"), Arg("total", "i", "sounds in all")),
          "Progress of a long job (to subscribed clients; the first one has done = 0)."),
    Reply("/hallu.step", (Arg("index", "i", "current step, from 0"),
                          Arg("count", "i", "number of steps")),
          "The HALLU position; sent after every sequencer change (display index + 1)."),
    Reply("/hallu.setting", (Arg("name", "s", " \\| ".join(HALLU_SETTINGS)),
                             Arg("value", "f", "the setting's value")),
          "A HALLU setting's value (after it changes, and in /hallu.state)."),
    Reply("/hallu.coef", (Arg("index", "i", "direction index"), Arg("value", "f", "coefficient")),
          f"A coefficient of the current step (after step changes; indices 0..{MIRROR_MIN - 1} "
          "and any higher one this client has set)."),
)}


# ---- the validator ------------------------------------------------------------------------------
def _bound(v: int | str, ctx: Context) -> int:
    if isinstance(v, int):
        return v
    if v == "latent":
        return ctx.latent_size
    raise KeyError(v)


def _convert(arg: Arg, value: Any, ctx: Context) -> Any:
    """Check one value against its argument; return it as int, float or str."""
    where = f"argument {arg.name}"
    if arg.type == "s":
        if not isinstance(value, str):
            raise ProtocolError(f"{where} must be a symbol, got {_kind(value)}")
        if len(value) > arg.maxlen:
            raise ProtocolError(f"{where} is longer than {arg.maxlen} characters")
        if not value:
            raise ProtocolError(f"{where} is empty")
        if arg.choices and value not in arg.choices:
            raise ProtocolError(f"{where} must be one of {', '.join(arg.choices)}, got {value}")
        if arg.name_like and not _NAME_RE.fullmatch(value):
            raise ProtocolError(f"{where} may only hold letters, digits and _.+~#$-")
        if not arg.name_like and any(ord(c) < 32 for c in value):
            raise ProtocolError(f"{where} holds control characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where} must be a number, got {_kind(value)}")
    if not math.isfinite(value):
        raise ProtocolError(f"{where} is {value} (NaN and inf are refused)")
    if arg.type == "i":
        if not float(value).is_integer():
            raise ProtocolError(f"{where} must be an integer, got {value:g}")
        value = int(value)
    else:
        value = float(value)
    if arg.lo is not None and arg.hi is not None and not arg.lo <= value <= arg.hi:
        raise ProtocolError(f"{where} must be in {_num(arg.lo)}..{_num(arg.hi)}, got {value:g}")
    if arg.pitch and value not in ctx.pitches:
        raise ProtocolError(f"pitch {value} is not one this model knows "
                            f"({min(ctx.pitches)}..{max(ctx.pitches)})")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a symbol"
    if isinstance(value, bool | None):
        return f"{value}"
    if isinstance(value, bytes):
        return "a blob"
    return type(value).__name__


def validate(address: str, args: Sequence[Any], ctx: Context) -> Request:
    """Check a message against :data:`COMMANDS`.

    Args:
        address: OSC address.
        args: parsed OSC arguments (python-osc values).
        ctx: the loaded model's facts (latent size, pitches).
    Returns:
        the validated :class:`Request`.
    Raises:
        ProtocolError: unknown address, wrong count, wrong type, out of range, bad constraint.
    """
    cmd = COMMANDS.get(address)
    if cmd is None:
        raise ProtocolError("unknown command")
    required = sum(not a.optional for a in cmd.args)
    n_fixed = len(cmd.args)
    if cmd.repeat is None and not required <= len(args) <= n_fixed:
        want = str(required) if required == n_fixed else f"{required}..{n_fixed}"
        raise ProtocolError(f"takes {want} arguments ({cmd.signature()}), got {len(args)}")
    if cmd.repeat is not None and len(args) < n_fixed:
        raise ProtocolError(f"takes at least {n_fixed + 1} arguments ({cmd.signature()}), "
                            f"got {len(args)}")
    values: dict[str, Any] = {}
    for i, arg in enumerate(cmd.args):
        values[arg.name] = _convert(arg, args[i], ctx) if i < len(args) else arg.default
    groups: list[tuple[Any, ...]] = []
    if cmd.repeat is not None:
        rep = cmd.repeat
        rest = args[n_fixed:]
        width = len(rep.args)
        if len(rest) % width:
            raise ProtocolError(f"the trailing arguments come in groups of {width} "
                                f"({' '.join(a.name for a in rep.args)})")
        count = len(rest) // width
        if rep.count_arg is not None:
            if count != values[rep.count_arg]:
                raise ProtocolError(f"{rep.count_arg} is {values[rep.count_arg]} but {count} "
                                    "values follow")
        else:
            lo, hi = _bound(rep.min, ctx), _bound(rep.max, ctx)
            if not lo <= count <= hi:
                want = str(lo) if lo == hi else f"{lo}..{hi}"
                raise ProtocolError(f"takes {want} groups of "
                                    f"<{' '.join(a.name for a in rep.args)}>, got {count}")
        for g in range(count):
            groups.append(tuple(_convert(a, rest[g * width + j], ctx)
                                for j, a in enumerate(rep.args)))
    if cmd.check is not None:
        reason = cmd.check(values)
        if reason:
            raise ProtocolError(reason)
    return Request(cmd, values, groups)


# ---- documentation ------------------------------------------------------------------------------
_INTRO = f"""\
# OSC protocol of the GANSpaceSynth server

<!-- Generated from server/protocol.py by `python -m ganspace_server.protocol docs/protocol.md`;
do not edit by hand. -->

Protocol version {PROTOCOL_VERSION}. The server listens on UDP port {DEFAULT_PORT} of 127.0.0.1 by
default. The grammar follows scsynth:

- Every command that does work answers `/done <cmd> [values...]` or `/fail <cmd> <reason>`, where
  `<cmd>` is the command's address as a string. Queries answer with their own reply
  (`/status.reply`, `/version.reply`, `/synced`, `/z.reply`, `/coef.reply`) or `/fail`.
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
- Jobs (synthesis and hallucination) run on one generation worker in arrival order; they use the
  client's state at the time the command arrived. When {MAX_QUEUE} jobs wait, the next is
  answered `/fail <cmd> busy`.

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


def _arg_rows(args: Sequence[Arg]) -> list[str]:
    rows = []
    for a in args:
        opt = " (optional" + (f", default {a.default}" if a.default is not None else "") + ")"
        rows.append(f"| `{a.name}` | `{a.type}` | {a.range_text()} | {a.doc}"
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
                out.append(f"`<{names}>` repeats {cmd.repeat.count_text()}.\n")
            if cmd.check_doc:
                out.append(f"Constraint: {cmd.check_doc}.\n")
            replies = "; ".join(f"`{r}`" if r.startswith("/") else r for r in cmd.replies)
            out.append(f"Replies: {replies or 'none'}; errors: `/fail {cmd.address} <reason>`.\n")
    out.append("## Replies and events (server to client)\n")
    for r in REPLIES.values():
        tail = f" <{r.floats}...>" if r.floats else ""
        sig = " ".join([r.address, *(f"<{a.name}>" for a in r.args)]) + tail
        out.append(f"#### `{sig}`\n")
        out.append(r.doc + "\n")
        out.append("| argument | type | meaning |")
        out.append("| --- | --- | --- |")
        for a in r.args:
            out.append(f"| `{a.name}` | `{a.type}` | {a.doc} |")
        if r.floats:
            out.append(f"| `{r.floats}...` | `f` | float32 values |")
        out.append("")
    out.append("## Limits\n")
    out.append("| limit | value |")
    out.append("| --- | --- |")
    for name, value, text in _LIMITS:
        out.append(f"| {text} (`{name}`) | {value} |")
    out.append("")
    return "\n".join(out)


_LIMITS = (
    ("MAX_PACKET", MAX_PACKET, "bytes per datagram"),
    ("MAX_CLIENTS", MAX_CLIENTS, "clients (sessions)"),
    ("Z_SLOTS", Z_SLOTS, "z slots per client"),
    ("COEF_MAX", COEF_MAX, "coefficients per step"),
    ("COEF_LIMIT", COEF_LIMIT, "largest absolute coefficient"),
    ("Z_LIMIT", Z_LIMIT, "largest absolute z component"),
    ("MAX_BATCH", MAX_BATCH, "notes per /synth.batch"),
    ("MAX_STEPS", MAX_STEPS, "HALLU steps per client"),
    ("MAX_HALLU_SOUNDS", MAX_HALLU_SOUNDS, "sounds per hallucination"),
    ("MAX_CLIP_SECONDS", MAX_CLIP_SECONDS, "seconds per hallucination clip"),
    ("MAX_QUEUE", MAX_QUEUE, "jobs waiting"),
    ("MAX_SYNCS", MAX_SYNCS, "unanswered /sync per client"),
    ("CHUNK_FLOATS", CHUNK_FLOATS, "floats per /buffer.chunk"),
    ("STREAM_WINDOW", STREAM_WINDOW, "chunks in flight"),
    ("NAME_MAX", NAME_MAX, "characters per name"),
    ("PATH_MAX", PATH_MAX, "characters per path"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the rendered protocol to the given file (or print it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_markdown()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
