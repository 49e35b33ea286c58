"""The OSC protocol of the GANSpaceSynth server: the single table every message is checked against.

Over 450 lines on purpose (issue 10): it is one table, every command, reply and limit in one place.

Every command the server understands is one :class:`~ganspace_server.schema.Command` in
:data:`COMMANDS` (address, typed arguments with ranges, replies, documentation); every message the
server sends is one :class:`~ganspace_server.schema.Reply` in :data:`REPLIES`; the limits a client
may rely on are the constants below (:data:`LIMITS` lists them for the docs).
:mod:`ganspace_server.validator` checks incoming messages against this table, every command has
one handler registered against it (``@handler("/synth")``, :mod:`ganspace_server.handlers`) and
:mod:`ganspace_server.protocol_doc` renders it to ``docs/protocol.md``
(``python -m ganspace_server.protocol docs/protocol.md``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from ganspace_server.schema import NAME_MAX, Arg, Command, Repeat, Reply

PROTOCOL_VERSION = 1
DEFAULT_PORT = 57130

# ---- limits (part of the protocol: a client may rely on them) ---------------------------------
MAX_PACKET = 65507  #: largest UDP payload the server reads
MAX_CLIENTS = 32  #: sessions kept at once by default (serve --max-sessions)
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
MAX_QUEUE = 32  #: generation jobs alive per client by default (full -> /fail <cmd> busy)
MAX_JOBS = 128  #: generation jobs alive of all clients by default (full -> /fail <cmd> busy: ...)
MAX_SYNCS = 256  #: unanswered /sync requests per client
CHUNK_FLOATS = 4000  #: floats per /buffer.chunk (at most 8000)
STREAM_WINDOW = 7  #: unacknowledged chunks in flight (4000 x 7 x 5 bytes = 140 kB)
PATH_MAX = 1024  #: characters in a path
INT32_MAX = 2**31 - 1
MIRROR_MIN = 16  #: coefficients mirrored with /hallu.coef (more when higher ones were set)
HALLU_SETTINGS = ("interp", "spacing", "trim", "attack", "sustain", "release")
#: /fail reason for every message (but /notify) of a client whose session expired
EXPIRED_REASON = "session expired: send /notify and your state again"

# banks, presets and HALLU rand step
MIDI_MAX = 127  #: highest MIDI pitch (and key)
BANK_CHANNELS = 64  #: channels per bank WAV file (Pd's [soundfiler] reads at most 64)
MAX_PRESETS = 256  #: presets in the server's presets folder
PRESET_NAME = r"[A-Za-z0-9_-]+"  #: a preset name: a plain word, never a path
RAND_COUNT = 16  #: coefficients /hallu.rand draws by default (the HALLU sliders)
RAND_RANGE = 2.0  #: default range of /hallu.rand, standard deviations


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


def _check_bank_range(v: Mapping[str, Any]) -> str | None:
    if v["lo"] > v["hi"]:
        return f"lo ({v['lo']}) is above hi ({v['hi']})"
    return None


def _check_preset_name(v: Mapping[str, Any]) -> str | None:
    if not re.fullmatch(PRESET_NAME, v["name"]):
        return "preset names are plain words: letters, digits, _ and - (never paths)"
    return None


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
            "events: `/progress` of this client's jobs, and `/status.reply` and "
            "`/directions.labels.reply` when the model or directions change.",
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
    Command("/clients", "Session",
            "Ask how many client sessions the server keeps and how many jobs are alive.",
            replies=("/clients.reply",)),
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
                     "/status.reply and /directions.labels.reply (to subscribers)")),
    Command("/directions.load", "Model",
            "Load a GANSpace directions file (safe format only, never a pickle) inside a model "
            "root; it must have been made for the loaded model.",
            (_path("directions file, absolute or relative to the first model root"),),
            replies=("/done /directions.load <K> <layer>",
                     "/status.reply and /directions.labels.reply (to subscribers)")),
    Command("/model.layers", "Model", "List the generator's layer names.",
            replies=("/done /model.layers <name>...",)),
    Command("/model.pitches", "Model",
            "List every MIDI pitch the model knows (a pitch set may have gaps; /status.reply "
            "gives only the count and range).",
            replies=("/done /model.pitches <pitch>...",)),
    Command("/directions.labels", "Model",
            "Ask for the measured labels of the loaded directions: what moving a direction "
            "changes (e.g. `brightness`), measured by `ganspacesynth eval --write-labels` and "
            "read only from the directions file the server loaded. A component nobody measured "
            "has no label.",
            replies=("/directions.labels.reply",)),
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
    # ---- banks, presets, HALLU rand step ------------------------------------------------------
    Command("/bank.source", "Banks",
            "Choose the timbre `/bank` renders for this client: a z slot with the current "
            "coefficients (applied when directions are loaded), or -1 for noz mode (the "
            "directions' mean plus the current coefficients; needs directions). Default 0.",
            (_int("zslot", "z slot, or -1 for noz mode", -1, Z_SLOTS - 1),),
            replies=("/done /bank.source <zslot>",)),
    Command("/bank", "Banks",
            "Render the client's current timbre (`/bank.source`, the current coefficients) at "
            "every pitch of the model in `lo..hi`, in one batched job, for a keyboard to play "
            "without generation at note-on. Latest wins: a newer `/bank` of the same client "
            "supersedes a waiting or running one (`/fail /bank superseded`). Needs file or "
            "stream delivery: `/bank.begin` lists the pitches; file delivery then sends "
            f"`/bank.file` per WAV of at most {BANK_CHANNELS} channels (one `[soundfiler] read` "
            "fills one array per pitch); stream delivery sends the notes one after another as "
            "buffer `<name>` (`/buffer.begin`, acked `/buffer.chunk`, `/buffer.end`; a chunk "
            "never spans two notes, note i starts at offset i x frames); then `/bank.keys` and "
            "`/done`.",
            (_name("name", "bank name (the stream's buffer name)"),
             _int("lo", "lowest MIDI pitch", 0, MIDI_MAX, optional=True, default=0),
             _int("hi", "highest MIDI pitch", 0, MIDI_MAX, optional=True, default=MIDI_MAX)),
            replies=("/progress (subscribers)", "/bank.begin",
                     "/bank.file (file delivery) or /buffer.begin /buffer.chunk... /buffer.end "
                     "of buffer <name> (stream delivery)",
                     "/bank.keys", "/done /bank <name> <pitch>..."),
            check=_check_bank_range, check_doc="lo <= hi", job=True),
    Command("/preset.save", "Presets",
            "Save this client's z slots, coefficients (every HALLU step), pitch, HALLU settings "
            "and bank source as `<name>.json` in the server's presets folder (replacing a "
            "preset of that name), with the model's fingerprint and the directions' layer.",
            (_name("name", "preset name"),),
            replies=("/done /preset.save <name>",), check=_check_preset_name,
            check_doc="the name is a plain word (letters, digits, _ and -)"),
    Command("/preset.load", "Presets",
            "Load a preset into this client's state. `all` refuses a preset made for another "
            "model or another directions layer; `coef` loads only the coefficients (the HALLU "
            "steps), from any model. The patch's mirror follows, as after `/hallu.state`.",
            (_name("name", "preset name"),
             Arg("what", "s", "`all` or `coef` (coefficients only)", choices=("all", "coef"),
                 optional=True, default="all")),
            replies=("/hallu.step", "/hallu.setting (each of the six)",
                     "/hallu.coef (each mirrored coefficient)",
                     "/done /preset.load <name> <what> <pitch> <zslot>"),
            check=_check_preset_name,
            check_doc="the name is a plain word (letters, digits, _ and -)"),
    Command("/preset.list", "Presets", "List the presets in the server's presets folder.",
            replies=("/done /preset.list <name>...",)),
    Command("/hallu.rand", "HALLU sequencer",
            "Set the current step to a random coefficient vector: the first `count` "
            "coefficients (at most the number of directions loaded) uniform in -range..range "
            "standard deviations, the others 0 (the original HALLU's `rand step`).",
            (Arg("range", "f", "largest absolute value", lo=0.0, hi=COEF_LIMIT, optional=True,
                 default=RAND_RANGE),
             _int("count", "coefficients drawn", 1, COEF_MAX, optional=True, default=RAND_COUNT),
             _int("seed", "random seed; left out: fresh", 0, INT32_MAX, optional=True)),
            replies=(*_STEP, "/done /hallu.rand")),
)}

SECTIONS = ("Session", "Model", "Latents", "Coefficients", "Synthesis", "Hallucination",
            "HALLU sequencer", "HALLU settings", "Banks", "Presets")

REPLIES: dict[str, Reply] = {r.address: r for r in (
    Reply("/done", (Arg("cmd", "s", "the command's address"),),
          "A command succeeded; command-specific values follow (see each command)."),
    Reply("/fail", (Arg("cmd", "s", "the command's address (as sent, at most 128 characters)"),
                    Arg("reason", "s", "what was wrong, in words")),
          "A command failed; nothing changed. Reasons include `busy` (this client's jobs "
          "are at their bound), `busy: ...` (all clients' jobs are), `superseded` (/latest), "
          "`cancelled`, `dropped: ...` (the server took the client for gone), "
          f"`{EXPIRED_REASON}` (the client's state was forgotten: send `/notify` and set it up "
          "again), `unknown command`, argument errors."),
    Reply("/synced", (Arg("id", "i", "the id given to /sync"),), "Answer to /sync."),
    Reply("/status.reply",
          (Arg("model", "s", "model name (folder name)"), Arg("pitches", "i", "number of pitches"),
           Arg("min_pitch", "i", "lowest pitch"), Arg("max_pitch", "i", "highest pitch"),
           Arg("latent", "i", "latent size"), Arg("k", "i", "directions loaded (0 if none)"),
           Arg("layer", "s", "directions layer (\"\" if none)"),
           Arg("device", "s", "cpu or cuda[:n]"),
           Arg("queue", "i", "jobs alive (waiting, running or being delivered) of all clients"),
           Arg("version", "s", "server version")),
          "The server's state (answer to /status; also sent to subscribers when it changes)."),
    Reply("/directions.labels.reply",
          (Arg("count", "i", "labelled components (0: none, or no directions loaded)"),),
          "The measured labels of the loaded directions (answer to /directions.labels; also "
          "sent to subscribers after every model or directions load): `count` pairs "
          f"`<index> <label>` by increasing index, of components 0..{COEF_MAX - 1} only. A "
          "component without a pair has no measured label. Labels are lowercase words joined "
          "by `_` (one Pd symbol).",
          group=(Arg("index", "i", "direction (component) index"),
                 Arg("label", "s", "its measured label, e.g. `brightness`"))),
    Reply("/clients.reply",
          (Arg("sessions", "i", "client sessions kept now"),
           Arg("max_sessions", "i", "most sessions kept at once"),
           Arg("jobs", "i", "jobs alive (waiting, running or being delivered) of all clients"),
           Arg("yours", "i", "jobs alive of the asking client")),
          "Answer to /clients."),
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
    # ---- banks ------------------------------------------------------------------------------
    Reply("/bank.begin",
          (Arg("name", "s", "bank name"), Arg("frames", "i", "samples per note"),
           Arg("sample_rate", "i", "Hz")),
          "A bank's delivery starts; its pitches follow, in the order of the notes (file "
          "channels, stream offsets).", ints="pitches"),
    Reply("/bank.file",
          (Arg("name", "s", "bank name"),
           Arg("path", "s", "absolute path of a 32-bit float WAV in the server's cache folder"),
           Arg("first", "i", "index (in /bank.begin) of the pitch in channel 0"),
           Arg("count", "i", f"channels (at most {BANK_CHANNELS})")),
          "File delivery of a bank: channel c holds pitch number first + c. In Pd: one "
          "`[soundfiler] read <path> <array>...` with one array per channel."),
    Reply("/bank.keys", (Arg("name", "s", "bank name"),),
          "For every MIDI key 0..127, the rendered pitch nearest to it (on a tie the lower "
          "one): key k plays that pitch's note at playback rate 2^((k - pitch) / 12).",
          ints="pitches"),
)}

#: The limits ``docs/protocol.md`` lists: (constant, value, what it bounds).
LIMITS: tuple[tuple[str, int | float, str], ...] = (
    ("MAX_PACKET", MAX_PACKET, "bytes per datagram"),
    ("MAX_CLIENTS", MAX_CLIENTS, "client sessions (default; `serve --max-sessions`)"),
    ("Z_SLOTS", Z_SLOTS, "z slots per client"),
    ("COEF_MAX", COEF_MAX, "coefficients per step"),
    ("COEF_LIMIT", COEF_LIMIT, "largest absolute coefficient"),
    ("Z_LIMIT", Z_LIMIT, "largest absolute z component"),
    ("MAX_BATCH", MAX_BATCH, "notes per /synth.batch"),
    ("MAX_STEPS", MAX_STEPS, "HALLU steps per client"),
    ("MAX_HALLU_SOUNDS", MAX_HALLU_SOUNDS, "sounds per hallucination"),
    ("MAX_CLIP_SECONDS", MAX_CLIP_SECONDS, "seconds per hallucination clip"),
    ("MAX_QUEUE", MAX_QUEUE, "jobs alive per client (default; `serve --client-jobs`)"),
    ("MAX_JOBS", MAX_JOBS, "jobs alive of all clients (default; `serve --max-jobs`)"),
    ("MAX_SYNCS", MAX_SYNCS, "unanswered /sync per client"),
    ("CHUNK_FLOATS", CHUNK_FLOATS, "floats per /buffer.chunk"),
    ("STREAM_WINDOW", STREAM_WINDOW, "chunks in flight"),
    ("NAME_MAX", NAME_MAX, "characters per name"),
    ("PATH_MAX", PATH_MAX, "characters per path"),
    ("BANK_CHANNELS", BANK_CHANNELS, "channels per bank WAV file"),
    ("MAX_PRESETS", MAX_PRESETS, "presets in the presets folder"),
)

if __name__ == "__main__":  # the command docs/protocol.md names in its header
    from ganspace_server.protocol_doc import main

    sys.exit(main())
