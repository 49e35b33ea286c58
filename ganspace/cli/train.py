"""CLI verbs for datasets, training and evaluation: ``dataset chop|pad|make``, ``train``,
``eval``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ganspace.cli.args import add_device_arg, add_precision_arg
from ganspace.engine.precision import TRAIN_PRECISION_CHOICES
from ganspace.errors import InputError


def _chop(args: argparse.Namespace) -> int:
    from ganspace.train.dataset import chop

    written = chop(args.inputs, args.out, pitch=args.pitch, hop=args.hop)
    print(f"{len(written)} chunks -> {args.out}")
    return 0


def _pad(args: argparse.Namespace) -> int:
    from ganspace.train.dataset import pad

    written = pad(args.inputs, args.out, pitch=args.pitch, peak=args.peak)
    print(f"{len(written)} sounds -> {args.out}")
    return 0


def _make(args: argparse.Namespace) -> int:
    from ganspace.train.dataset import make_dataset

    ds = make_dataset(args.folder, args.out)
    print(f"{len(ds.names)} notes, {len(ds.pitch_set)} pitches "
          f"({ds.pitch_set[0]}..{ds.pitch_set[-1]}) -> {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ganspace.train.trainer import TrainOptions, train

    out = train(TrainOptions(
        dataset=args.dataset, out=args.out, config=args.config, images=args.images,
        batch=args.batch, device=args.device, resume=args.resume, seed=args.seed,
        checkpoint_seconds=args.checkpoint_minutes * 60.0, log_every=args.log_every,
        threads=args.threads, progress_bar=not args.no_progress, precision=args.precision,
    ))
    print(f"model -> {out}")
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    from ganspace.train.speed import format_speed, train_speed

    if args.steps < 1:
        raise InputError("--steps must be at least 1")
    report = train_speed(args.config, args.precision.split(","), args.device, args.steps,
                         batch=args.batch, threads=args.threads)
    print(json.dumps(report, indent=1) if args.json else format_speed(report))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ganspace.formats import load_model
    from ganspace.space.directions import write_labels
    from ganspace.train.evaluate import direction_labels, evaluate, format_report

    if args.write_labels and args.directions is None:
        raise InputError("--write-labels needs --directions")
    model = load_model(args.model, device=args.device, precision=args.precision)
    report = evaluate(model, count=args.count, seed=args.seed, directions=args.directions,
                      components=args.components)
    report["model"]["path"] = str(args.model)
    report["model"]["precision"] = model.precision
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    if args.write_labels:
        labels = direction_labels(report["directions"]["components"])
        write_labels(args.directions, labels)
        print(f"labels {labels or 'none (no direction met the bar)'} -> {args.directions}",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dataset``, ``train`` and ``eval`` to the ganspacesynth parser."""
    ds = sub.add_parser("dataset", help="prepare training data (chop, pad, make)")
    dsub = ds.add_subparsers(dest="dataset_verb", metavar="STEP", required=True)

    p = dsub.add_parser("chop", help="cut long recordings into 4 s / 16 kHz mono chunks")
    p.add_argument("inputs", nargs="+", type=Path, help="audio files (any rate; resampled)")
    p.add_argument("--out", type=Path, required=True, help="folder for the chunks")
    p.add_argument("--pitch", type=int, default=32, help="MIDI pitch label (default 32)")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between chunks (default 1)")
    p.set_defaults(func=_chop)

    p = dsub.add_parser("pad", help="peak-normalise one-shots and pad/trim them to 4 s")
    p.add_argument("inputs", nargs="+", type=Path, help="audio files (any rate; resampled)")
    p.add_argument("--out", type=Path, required=True, help="folder for the padded sounds")
    p.add_argument("--pitch", type=int, default=None,
                   help="MIDI pitch for every file (default: from <instrument>_<pitch> names)")
    p.add_argument("--peak", type=float, default=1.0, help="peak after normalising (default 1)")
    p.set_defaults(func=_pad)

    p = dsub.add_parser("make", help="validate <instrument>_<pitch> files, write a dataset")
    p.add_argument("folder", type=Path, help="folder of 16 kHz mono 4 s audio files")
    p.add_argument("out", type=Path, help="dataset folder to create (must not exist)")
    p.set_defaults(func=_make)

    from ganspace.train.schedule import CONFIGS

    p = sub.add_parser("train", help="train a GANSynth model (progressive WGAN-GP)")
    p.add_argument("dataset", type=Path, help="dataset folder (ganspacesynth dataset make)")
    p.add_argument("--out", type=Path, required=True, help="model folder (native format)")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small",
                   help="published = Magenta's mel_prog_hires; default = the default instrument's "
                        "recipe (recon objective, docs/training.md); small = a small GAN; "
                        "tiny, tiny-recon = tests (default small)")
    p.add_argument("--images", type=int, default=None,
                   help="total training images (default: the config's total_num_images)")
    p.add_argument("--batch", type=int, default=None,
                   help="global batch size for all stages (with --resume: from now on)")
    add_device_arg(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="minutes between checkpoints (default 10)")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--precision", choices=list(TRAIN_PRECISION_CHOICES), default="auto",
                   help="autocast precision of the forward passes (default auto: bfloat16 on "
                        "CUDA and on CPUs with AVX512-BF16 or AMX, float32 elsewhere)")
    p.set_defaults(func=_train)

    p = sub.add_parser("bench-train", help="time training steps per precision, side by side",
                       description="Images/s of a config's training steps at full resolution "
                       "on a small synthetic dataset, one trainer per precision, timed "
                       "round-robin (ganspace/train/speed.py).")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--precision", default="float32,bfloat16",
                   help="comma-separated training precisions (auto, float32, bfloat16; "
                        "default float32,bfloat16)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per precision (default 5)")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_device_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_bench_train)

    p = sub.add_parser("eval", help="pitch accuracy and sanity of a model's random notes")
    p.add_argument("model", type=Path, help="model folder")
    p.add_argument("--count", type=int, default=200, help="random notes (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--directions", type=Path, default=None,
                   help="GANSpace directions file: measure what the first components change")
    p.add_argument("--components", type=int, default=4, help="components to measure (default 4)")
    p.add_argument("--write-labels", action="store_true",
                   help="store the measured slider labels in the directions file (a component "
                        "gets one only when one descriptor moves monotonically on most notes)")
    add_device_arg(p)
    add_precision_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_eval)
