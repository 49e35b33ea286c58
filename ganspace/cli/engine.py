"""Engine verbs: import, info, generate, render-midi, bench."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from ganspace.cli.args import add_device_arg, add_model_args, add_precision_arg
from ganspace.errors import InputError

if TYPE_CHECKING:  # verbs import the engine when they run, so --help stays light
    from ganspace.engine.model import GANSynthModel


def register(sub: argparse._SubParsersAction) -> None:
    """Add the engine verbs."""
    p = sub.add_parser("import", help="convert a Magenta GANSynth checkpoint to the native format",
                       description="Read a Magenta checkpoint folder (no TensorFlow needed) and "
                       "write model.json + generator.safetensors into OUT_DIR.")
    p.add_argument("magenta_dir", type=Path, help="folder with experiment.json and stage_* folders")
    p.add_argument("out_dir", type=Path, help="native model folder to write")
    p.add_argument("--force", action="store_true", help="replace an existing model in OUT_DIR")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="describe a model (hparams, pitches, stage, parameters)")
    p.add_argument("model", type=Path, help="Magenta checkpoint folder or native model folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="generate notes as WAV files",
                       description="Generate COUNT notes at one pitch from random (or given) "
                       "latents; writes OUT if one note, else OUT_0.wav, OUT_1.wav, ...")
    add_model_args(p)
    p.add_argument("--pitch", type=int, required=True, help="MIDI pitch the model knows")
    p.add_argument("--count", type=int, default=1, help="number of notes (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, help="seed for random latents")
    g.add_argument("--z", type=Path, help=".npy file with latents [N, latent_size]")
    p.add_argument("--normalize", action="store_true", help="peak-normalise each note to 1")
    p.add_argument("--out", type=Path, required=True, help="output .wav path")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("render-midi", help="render a MIDI file with random instruments (Magenta)")
    add_model_args(p)
    p.add_argument("midi", type=Path, help="MIDI file")
    p.add_argument("--out", type=Path, required=True, help="output .wav path")
    p.add_argument("--secs-per-instrument", type=float, default=6.0,
                   help="seconds between random instrument keypoints (default 6)")
    p.add_argument("--seed", type=int, help="seed for the instrument latents")
    p.set_defaults(func=cmd_render_midi)

    p = sub.add_parser("bench", help="time generation (generator and audio stages separately)")
    p.add_argument("model", type=Path, nargs="?", help="model folder (or use --random published)")
    p.add_argument("--random", choices=["published"], help="random model with published dims")
    add_device_arg(p)
    add_precision_arg(p)
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per stage (median)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--baseline", action="store_true",
                   help="also time the faithful unfolded generator, in the same run")
    p.add_argument("--load", action="store_true",
                   help="also time load_model(MODEL) (median of --repeats loads)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench)


def _load(args: argparse.Namespace) -> GANSynthModel:
    from ganspace.formats import load_model

    return load_model(args.model, device=args.device)


def cmd_import(args: argparse.Namespace) -> int:
    from ganspace.formats import load_model
    from ganspace.formats.native import MODEL_JSON

    if (args.out_dir / MODEL_JSON).exists() and not args.force:
        raise InputError(f"{args.out_dir} already holds a model; pass --force to replace it")
    model = load_model(args.magenta_dir, device="cpu")
    model.save(args.out_dir)
    print(f"wrote {args.out_dir} ({model.generator.num_parameters():,} parameters, "
          f"{len(model.pitches)} pitches, progress {model.config.progress:g})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ganspace.engine.model import describe_pitches
    from ganspace.formats import load_model

    model = load_model(args.model, device="cpu")
    cfg = model.config
    info: dict[str, Any] = {
        "path": str(args.model),
        "latent_size": model.latent_size,
        "pitches": describe_pitches(model.pitches),
        "num_pitches": len(model.pitches),
        "sample_rate": model.sample_rate,
        "audio_length": model.audio_length,
        "num_blocks": cfg.num_blocks,
        "progress": cfg.progress,
        "channels": [cfg.channels(k) for k in range(1, cfg.num_blocks + 1)],
        "parameters": model.generator.num_parameters(),
        "layers": {n: list(cfg.layer_shape(n)) for n in cfg.layer_names()},
        "provenance": model.provenance,
        "fingerprint": model.fingerprint,
        "hparams": model.hparams,
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for k, v in info.items():
        if k == "hparams":
            print("hparams:")
            for hk in sorted(v):
                print(f"  {hk}: {v[hk]}")
        elif k == "layers":
            print("layers: " + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in v.items()))
        else:
            print(f"{k}: {v}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    model = _load(args)
    if args.z is not None:
        try:
            z = np.load(args.z, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{args.z}: cannot read latents ({exc})") from None
    else:
        if args.count < 1:
            raise InputError(f"--count must be >= 1, got {args.count}")
        z = model.random_z(args.count, seed=args.seed)
    model.label_for(args.pitch)
    notes = model.generate(z, args.pitch)
    if args.normalize:
        peaks = np.abs(notes).max(axis=1, keepdims=True)
        notes = np.divide(notes, peaks, out=np.zeros_like(notes), where=peaks > 0)
    paths = [args.out] if len(notes) == 1 else [
        args.out.with_name(f"{args.out.stem}_{i}{args.out.suffix or '.wav'}")
        for i in range(len(notes))
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path, note in zip(paths, notes, strict=True):
        sf.write(path, note, model.sample_rate, subtype="FLOAT")
        print(f"wrote {path}")
    return 0


def cmd_render_midi(args: argparse.Namespace) -> int:
    from ganspace.engine.midi import load_midi, render_midi

    model = _load(args)
    result = render_midi(model, load_midi(args.midi), args.secs_per_instrument, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, result.clip.astype(np.float32), model.sample_rate, subtype="FLOAT")
    print(f"wrote {args.out}: {len(result.notes.pitches)} notes, {len(result.z_instruments)} "
          f"instruments, {len(result.clip) / model.sample_rate:g} s"
          + (f" ({result.dropped} notes skipped: pitch outside 36..84 or unknown to the model)"
             if result.dropped else ""))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from ganspace.engine.benchmark import run_bench, time_load, timings_as_dicts
    from ganspace.engine.model import random_model
    from ganspace.formats import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        raise InputError(f"--batch takes comma-separated integers, got {args.batch!r}") from None
    if any(b < 1 for b in batches):
        raise InputError("batch sizes must be >= 1")
    if (args.model is None) == (args.random is None):
        raise InputError("give a MODEL folder or --random published (one of them)")
    if args.load and args.model is None:
        raise InputError("--load needs a MODEL folder")
    load_s = None
    if args.random:
        model = random_model(args.random, device=args.device, precision=args.precision)
    else:
        model = load_model(args.model, device=args.device, precision=args.precision)
        if args.load:
            load_s = time_load(args.model, args.device, args.repeats)
    timings = run_bench(model, batches, repeats=args.repeats, baseline=args.baseline)
    header = {"device": str(model.device), "precision": model.precision,
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "parameters": model.generator.num_parameters()}
    if load_s is not None:
        header["load_model_s"] = round(load_s, 3)
    if args.json:
        print(json.dumps({**header, "timings": timings_as_dicts(timings)}, indent=1))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    print(f"{'stage':<20}{'batch':>6}{'ms/note':>12}{'notes/s':>12}")
    for t in timings:
        print(f"{t.stage:<20}{t.batch:>6}{t.ms_per_note:>12.2f}{t.notes_per_s:>12.1f}")
    return 0
