"""Engine verbs: import, info, generate, render-midi, bench."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from ganspace.cli.args import add_device_arg, add_model_args, add_precision_arg
from ganspace.engine.export import EXPORT_FORMATS
from ganspace.engine.model import COMPILE_MODES
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
    add_precision_arg(p)
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
    add_precision_arg(p)
    p.add_argument("midi", type=Path, help="MIDI file")
    p.add_argument("--out", type=Path, required=True, help="output .wav path")
    p.add_argument("--secs-per-instrument", type=float, default=6.0,
                   help="seconds between random instrument keypoints (default 6)")
    p.add_argument("--seed", type=int, help="seed for the instrument latents")
    p.set_defaults(func=cmd_render_midi)

    p = sub.add_parser("export", help="write a model as ONNX or TorchScript for C++ hosts",
                       description="Export the float32 generator and the audio stage: inputs z "
                       "[N, latent] float32 and pitch [N] int64 (MIDI), outputs specgram [N, 128, "
                       "1024, 2] and audio [N, 64000] (docs/export.md).")
    p.add_argument("model", type=Path, help="Magenta checkpoint folder or native model folder")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="file format")
    p.add_argument("--out", type=Path, required=True, help="file to write (.onnx, .pt)")
    p.add_argument("--no-audio", action="store_true",
                   help="leave out the audio stage (output specgram only)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="time generation (generator and audio stages separately)",
                       description="Time generation, warm-up excluded, medians of --repeats "
                       "round-robin runs. Baselines (--baseline, --against) are timed in the "
                       "same run, so their ratios stay fair on a loaded machine. In reduced "
                       "precision the fidelity against float32 is measured too (trained weights: "
                       "the model, or the shipped default model with --random).")
    p.add_argument("model", type=Path, nargs="?", help="model folder (or use --random published)")
    p.add_argument("--random", choices=["published"], help="random model with published dims")
    add_device_arg(p)
    add_precision_arg(p)
    p.add_argument("--compile", choices=COMPILE_MODES, default=None,
                   help="run the generator through torch.compile in this mode")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per stage (median)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--baseline", action="store_true",
                   help="also time the faithful unfolded generator and, in reduced precision, "
                   "the float32 path, in the same run, and print the ratios")
    p.add_argument("--against", type=Path, nargs="+", default=[], metavar="TREE",
                   help="also time z-to-audio generation with other checkouts of this project "
                   "(e.g. main in a temporary folder), one worker process per tree, round-robin")
    p.add_argument("--fidelity-notes", type=int, default=32,
                   help="notes for the reduced-precision fidelity (default 32; 0 skips it)")
    p.add_argument("--load", action="store_true",
                   help="also time load_model(MODEL) (median of --repeats loads)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench)


def _load(args: argparse.Namespace) -> GANSynthModel:
    from ganspace.formats import load_model

    return load_model(args.model, device=args.device, precision=args.precision)


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


def cmd_export(args: argparse.Namespace) -> int:
    from ganspace.engine.export import export_model
    from ganspace.formats import load_model

    model = load_model(args.model, device="cpu")
    out = export_model(model, args.format, args.out, with_audio=not args.no_audio)
    print(f"wrote {out} ({args.format}, {out.stat().st_size:,} bytes; inputs z [N, "
          f"{model.latent_size}] float32, pitch [N] int64; outputs specgram"
          + ("" if args.no_audio else ", audio") + ")")
    return 0


def _fidelity(args: argparse.Namespace, model: GANSynthModel) -> dict[str, Any] | None:
    """Fidelity of the model's reduced precision on trained weights (see cmd_bench)."""
    from ganspace.engine.fidelity import measure_fidelity
    from ganspace.formats import default_model_dir, load_model
    from ganspace.train.evaluate import pitch_report

    if model.precision == "float32" or args.fidelity_notes < 1:
        return None
    trained = model
    if args.random:
        folder = default_model_dir()
        if not (folder / "model.json").is_file():
            return {"error": f"no trained model to judge the precision on ({folder} is missing)"}
        trained = load_model(folder, device=model.device, precision=model.precision)
    fid = measure_fidelity(trained, model.precision, args.fidelity_notes, in_tune=lambda n, p, sr:
                           float(pitch_report(n, p, sr)["in_tune_fraction"]))
    return {"model": "default (trained)" if args.random else str(args.model), **fid.as_dict(),
            "text": fid.describe()}


def _against(args: argparse.Namespace, model: GANSynthModel,
             batches: list[int]) -> list[dict[str, Any]]:
    """Round-robin z-to-audio timings of this tree (in the model's precision and, when reduced,
    in float32) and of the --against trees (float32), per batch size."""
    from ganspace.engine.benchmark import compare_trees, this_tree

    base = {"model": None if args.model is None else str(args.model.resolve()),
            "random": args.random, "device": str(model.device),
            "threads": args.threads or _threads(), "compile": args.compile}
    ours = [(this_tree(), {**base, "precision": model.precision})]
    if model.precision != "float32":
        ours.append((this_tree(), {**base, "precision": "float32"}))
    theirs = [(Path(t), {**base, "precision": "float32", "compile": None}) for t in args.against]
    out = []
    for b in batches:
        workers = [(tree, {**cfg, "batch": b}) for tree, cfg in ours + theirs]
        for (tree, cfg), t in zip(workers, compare_trees(workers, args.repeats), strict=True):
            out.append({"tree": str(tree), "precision": cfg["precision"], "batch": b,
                        "ms_per_note": round(t.ms_per_note, 2),
                        "rounds_ms_per_note": t.rounds_ms_per_note})
    return out


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _ratios(timings: list[Any], against: list[dict[str, Any]]) -> list[str]:
    """Speed-up lines: baselines over the measured path, same batch, same run."""
    by = {(t.stage, t.batch): t.ms_per_note for t in timings}
    lines = []
    for (stage, b), ms in sorted(by.items(), key=lambda kv: kv[0][1]):
        if stage == "generator_baseline":
            lines.append(f"batch {b}: folded generator {ms / by[('generator', b)]:.2f}x the "
                         "faithful one")
        if stage == "total_float32":
            lines.append(f"batch {b}: z to audio {ms / by[('total', b)]:.2f}x float32")
    for b in sorted({a["batch"] for a in against}):
        rows = [a for a in against if a["batch"] == b]
        ours = rows[0]
        for other in rows[1:]:
            ratio = other["ms_per_note"] / ours["ms_per_note"]
            spread = [x / y for x, y in zip(other["rounds_ms_per_note"],
                                            ours["rounds_ms_per_note"], strict=True)]
            lines.append(f"batch {b}: z to audio in {ours['precision']} {ratio:.2f}x "
                         f"{other['tree']} in {other['precision']} (per round "
                         f"{min(spread):.2f}-{max(spread):.2f}; {ours['ms_per_note']:.1f} vs "
                         f"{other['ms_per_note']:.1f} ms/note)")
    return lines


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from ganspace.engine.benchmark import run_bench, time_load, timings_as_dicts
    from ganspace.engine.model import random_model
    from ganspace.engine.precision import describe_cpu
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
    if args.compile:
        model.compile(args.compile)
    timings = run_bench(model, batches, repeats=args.repeats, baseline=args.baseline)
    against = _against(args, model, batches) if args.against else []
    header: dict[str, Any] = {
        "device": str(model.device), "precision": model.precision,
        "asked_precision": args.precision, "compile": args.compile,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": (torch.cuda.get_device_name(model.device) if model.device.type == "cuda"
                    else describe_cpu()),
        "parameters": model.generator.num_parameters()}
    if load_s is not None:
        header["load_model_s"] = round(load_s, 3)
    if args.precision == "auto" and model.precision == "float32":
        header["note"] = (f"auto is float32 here: {header['machine']} has no AVX512-BF16 or AMX "
                          "(bfloat16 would be slower than float32)")
    fidelity = _fidelity(args, model)
    ratios = _ratios(timings, against)
    if args.json:
        print(json.dumps({**header, "timings": timings_as_dicts(timings), "against": against,
                          "ratios": ratios, "fidelity": fidelity}, indent=1))
        return 0
    note = header.pop("note", None)
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    if note:
        print(note)
    print(f"{'stage':<20}{'batch':>6}{'ms/note':>12}{'notes/s':>12}")
    for t in timings:
        print(f"{t.stage:<20}{t.batch:>6}{t.ms_per_note:>12.2f}{t.notes_per_s:>12.1f}")
    for line in ratios:
        print(line)
    if fidelity is not None:
        print(f"fidelity ({fidelity.get('model', 'none')}): "
              f"{fidelity.get('text') or fidelity['error']}")
    return 0
