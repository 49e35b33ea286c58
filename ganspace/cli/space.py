"""GANSpace verbs: layers, pca, import-pca, hallucinate, grid, bench-pca (see docs/ganspace.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ganspace.cli.args import add_device_arg, add_model_args, add_precision_arg
from ganspace.errors import InputError
from ganspace.space.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, estimator_help

if TYPE_CHECKING:  # verbs import these when they run
    from tqdm import tqdm

    from ganspace.engine.model import GANSynthModel
    from ganspace.space.directions import Directions

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the GANSpace verbs."""
    p = sub.add_parser("layers", help="list a model's generator layers and their shapes",
                       description="Print each layer name with its output shape H x W x C (time "
                       "frames x mel bins x channels) and the values per sample (the PCA size).")
    p.add_argument("model", type=Path, help="Magenta checkpoint folder or native model folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("pca", help="compute GANSpace directions of one layer",
                       description="Sample N random latents at one pitch, run the generator up to "
                       "LAYER and keep the top K principal components in a safe directions file "
                       "(.safetensors). Under torchrun the cov estimator splits the samples over "
                       "the ranks and gives the same file as one process.")
    add_model_args(p)
    p.add_argument("--layer", default="conv0", help="layer name (default conv0; see `layers`)")
    p.add_argument("--samples", type=int, required=True, help="number of random latents N")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--pitch", type=int, help="MIDI pitch (default 32, or the model's middle one)")
    p.add_argument("--estimator", default=DEFAULT_ESTIMATOR, choices=list(ESTIMATORS),
                   help=estimator_help())
    p.add_argument("--components", default="512", type=_components,
                   help="components K to keep, or 'all' (default 512)")
    p.add_argument("--batch", type=int, default=256, help="latents per forward pass (256)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="storage type of the components (default float16: half the size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="directions file to write")
    p.set_defaults(func=cmd_pca)

    p = sub.add_parser("import-pca", help="convert an original GANSpaceSynth PCA pickle",
                       description="Read a legacy .pickle with a restricted unpickler (numpy "
                       "arrays only; any other code in the file is refused, never run) and write "
                       "the safe directions format.")
    p.add_argument("pickle", type=Path, help="legacy PCA pickle")
    p.add_argument("--out", type=Path, required=True, help="directions file to write")
    p.add_argument("--model", type=Path,
                   help="model the PCA belongs to: shapes are checked, its fingerprint recorded")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="storage type of the components (default float16)")
    p.set_defaults(func=cmd_import_pca)

    p = sub.add_parser("hallucinate", help="render a hallucination clip",
                       description="z space: KEYPOINTS random latents with STEPS slerp steps "
                       "between them (N + (N-1) M sounds), optionally edited with --directions "
                       "and --coefficients. Coefficient space (noz): --coefficient-steps with "
                       "--subdivisions k (N + (N-1) max(0, k-1) sounds). Each sound is enveloped, "
                       "peak-normalised and placed SPACING seconds after the previous one; the "
                       "mix peaks at 0.5.")
    add_model_args(p)
    add_precision_arg(p)
    p.add_argument("--keypoints", type=int, help="number of random keypoint latents N (z space)")
    p.add_argument("--steps", type=int, default=0, help="slerp steps between keypoints M (0)")
    p.add_argument("--seed", type=int, help="seed of the keypoint latents")
    p.add_argument("--coefficient-steps",
                   help="coefficient keypoints: a .npy file [N, k] or 'c,c,c;c,c,c' (noz mode)")
    p.add_argument("--subdivisions", type=int, default=0,
                   help="with --coefficient-steps: k, giving k-1 points between steps (0)")
    p.add_argument("--pitch", type=int,
                   help="MIDI pitch (default 32, or the model's middle one)")
    p.add_argument("--directions", type=Path, help="directions file (from `pca`/`import-pca`)")
    p.add_argument("--coefficients", type=_floats,
                   help="z space: comma-separated coefficients c0,c1,... (standard deviations)")
    p.add_argument("--spacing", type=float, default=0.2, help="seconds between onsets (0.2)")
    p.add_argument("--trim", type=float, default=0.0, help="silence at each sound's start (0)")
    p.add_argument("--attack", type=float, default=0.5, help="linear attack seconds (0.5)")
    p.add_argument("--sustain", type=float, default=0.5, help="sustain seconds (0.5)")
    p.add_argument("--release", type=float, default=0.5, help="linear release seconds (0.5)")
    p.add_argument("--subtype", default="PCM_24", choices=SUBTYPES,
                   help="WAV sample format (default PCM_24, as the HALLU patch saves)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="output .wav")
    p.set_defaults(func=cmd_hallucinate)

    p = sub.add_parser("grid", help="spectrogram grid of moving along two directions",
                       description="Generate STEPS x STEPS notes with coefficients of two "
                       "directions swept over RANGE (first direction left to right, second bottom "
                       "to top) and save their log-mel spectrograms as one PNG.")
    add_model_args(p)
    p.add_argument("--directions", type=Path, required=True, help="directions file")
    p.add_argument("--components", type=_ints, default=[0, 1],
                   help="the two direction indices, e.g. 0,1 (default)")
    p.add_argument("--range", type=float, nargs=2, default=[-2.0, 2.0], metavar=("LO", "HI"),
                   help="coefficient range in standard deviations (default -2 2)")
    p.add_argument("--steps", type=int, default=5, help="values per axis (default 5)")
    p.add_argument("--pitch", type=int,
                   help="MIDI pitch (default 32, or the model's middle one)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, default=0, help="seed of the base latent (z mode)")
    g.add_argument("--noz", action="store_true", help="noz mode: start from the mean activation")
    p.add_argument("--thumb", type=int, default=128, help="thumbnail size in pixels (128)")
    p.add_argument("--wav-dir", type=Path, help="also write every note as a WAV here")
    p.add_argument("--out", type=Path, required=True, help="output .png")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("bench-pca", help="time the cov estimator against scikit-learn IPCA",
                       description="Generate N activations of LAYER once, then time the cov "
                       "estimator and (with --compare-ipca) full-rank IncrementalPCA on the same "
                       "activations in one run; also report the size of a K=512 directions file.")
    p.add_argument("model", type=Path, nargs="?", help="model folder (or --random published)")
    p.add_argument("--random", choices=["published"], help="random model with published dims")
    add_device_arg(p)
    p.add_argument("--layer", default="conv0", help="layer (default conv0)")
    p.add_argument("--samples", type=int, required=True, help="N")
    p.add_argument("--batch", type=int, default=256, help="activations per batch (256)")
    p.add_argument("--compare-ipca", action="store_true", help="also time IncrementalPCA")
    p.add_argument("--ipca-components", type=_components, default=None,
                   help="IPCA components K (default all = full rank, like the original)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench_pca)


# ---- argument helpers --------------------------------------------------------------------------
def _components(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def parse_coefficient_steps(text: str) -> np.ndarray:
    """``--coefficient-steps``: a ``.npy`` file [N, k] (read without pickles) or rows
    ``c,c,c;c,c,c`` -> float32 [N, k]."""
    if text.endswith(".npy"):
        try:
            arr = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{text}: cannot read coefficient steps ({exc})") from None
    else:
        try:
            rows = [[float(v) for v in row.split(",") if v.strip()]
                    for row in text.split(";") if row.strip()]
        except ValueError:
            raise InputError(f"coefficient steps must be numbers like '0,1;2,3', got {text!r}"
                             ) from None
        if len({len(r) for r in rows}) > 1:
            raise InputError("every coefficient step needs the same number of values")
        arr = np.array(rows, dtype=np.float32)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2 or len(arr) == 0:
        raise InputError(f"coefficient steps must be [N, k] with N >= 1, got shape "
                         f"{list(arr.shape)}")
    return arr


def _load_model(path: Path, device: str | None, precision: str = "float32") -> GANSynthModel:
    from ganspace.formats import load_model

    return load_model(path, device=device, precision=precision)


def _load_directions(path: Path) -> Directions:
    from ganspace.space.directions import load_directions

    return load_directions(path)


# ---- verbs -------------------------------------------------------------------------------------
def cmd_layers(args: argparse.Namespace) -> int:
    model = _load_model(args.model, "cpu")
    rows = [(n, model.layer_shape(n)) for n in model.layer_names()]
    if args.json:
        print(json.dumps([{"layer": n, "shape": list(s), "values": int(np.prod(s))}
                          for n, s in rows], indent=1))
        return 0
    print(f"{'layer':<10}{'H x W x C':>18}{'values':>10}")
    for n, (h, w, c) in rows:
        print(f"{n:<10}{f'{h} x {w} x {c}':>18}{h * w * c:>10}")
    return 0


def cmd_pca(args: argparse.Namespace) -> int:
    from ganspace.distrib import process_device, process_group, rank_and_size
    from ganspace.space.directions import save_directions
    from ganspace.space.pca import compute_directions

    device = process_device(args.device)
    with process_group(device):
        model = _load_model(args.model, str(device))
        d = compute_directions(model, args.layer, args.samples, seed=args.seed, pitch=args.pitch,
                               estimator=args.estimator, components=args.components,
                               batch=args.batch, progress=not args.no_progress)
        if rank_and_size()[0] == 0:
            save_directions(d, args.out, args.dtype)
            _summary(args.out, d)
    return 0


def _summary(path: Path, d: Directions) -> None:
    h, w, c = d.shape
    top = ", ".join(f"{v:.3f}" for v in d.var_ratio[:5])
    print(f"wrote {path}: layer {d.layer} ({h}x{w}x{c}), K={d.count}, "
          f"estimator {d.meta.get('estimator')}, N={d.meta.get('samples', '?')}; "
          f"variance ratio of the first components: {top}; K components explain "
          f"{float(d.var_ratio.sum()):.3f}")


def cmd_import_pca(args: argparse.Namespace) -> int:
    from ganspace.formats.legacy_pickle import import_legacy_pickle
    from ganspace.space.directions import save_directions

    model = _load_model(args.model, "cpu") if args.model else None
    d = import_legacy_pickle(args.pickle, model)
    save_directions(d, args.out, args.dtype)
    _summary(args.out, d)
    if model is None:
        print("note: no --model given, so the file records no model fingerprint")
    return 0


def _bar(enabled: bool, what: str) -> tqdm:
    from tqdm import tqdm

    return tqdm(unit="sound", desc=what, disable=True if not enabled else None)  # None: on a tty


def cmd_hallucinate(args: argparse.Namespace) -> int:
    import soundfile as sf

    from ganspace.engine import audio
    from ganspace.space.hallucinate import Envelope, hallucinate_coefficients, hallucinate_z

    env = Envelope(args.trim, args.attack, args.sustain, args.release)
    env.check(audio.AUDIO_LENGTH / audio.SAMPLE_RATE)  # refuse before loading anything
    noz = args.coefficient_steps is not None
    if noz == (args.keypoints is not None):
        raise InputError("give --keypoints N (z space) or --coefficient-steps (noz), one of them")
    if noz and args.directions is None:
        raise InputError("--coefficient-steps needs --directions")
    if noz and args.coefficients is not None:
        raise InputError("--coefficients is for z space; put coefficients in --coefficient-steps")
    if args.coefficients is not None and args.directions is None:
        raise InputError("--coefficients needs --directions")
    steps = parse_coefficient_steps(args.coefficient_steps) if noz else None
    directions = _load_directions(args.directions) if args.directions else None
    model = _load_model(args.model, args.device, args.precision)
    if args.pitch is None:
        from ganspace.engine.model import default_pitch

        args.pitch = default_pitch(model.pitches)
    with _bar(not args.no_progress, "hallucinate") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        if steps is not None:
            assert directions is not None  # checked above: --coefficient-steps needs it
            h = hallucinate_coefficients(model, directions, steps, args.subdivisions, args.pitch,
                                         env, args.spacing, progress=progress)
        else:
            if args.keypoints < 1:
                raise InputError(f"--keypoints must be >= 1, got {args.keypoints}")
            keypoints = model.random_z(args.keypoints, seed=args.seed)
            h = hallucinate_z(model, keypoints, args.steps, args.pitch, env, args.spacing,
                              directions, args.coefficients, progress=progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, h.clip, h.sample_rate, subtype=args.subtype)
    print(f"wrote {args.out}: {h.count} sounds, {len(h.clip)} samples ({h.seconds:g} s) at "
          f"{h.sample_rate} Hz")
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    import soundfile as sf
    import torch

    from ganspace.engine import audio
    from ganspace.space.grid import (
        MAX_GRID_STEPS,
        grid_coefficients,
        grid_image,
        grid_values,
    )

    if len(args.components) != 2 or min(args.components) < 0:
        raise InputError(f"--components takes two direction indices like 0,1, got "
                         f"{args.components}")
    if not 1 <= args.steps <= MAX_GRID_STEPS:
        raise InputError(f"--steps must be 1..{MAX_GRID_STEPS}, got {args.steps}")
    if not 16 <= args.thumb <= 512:
        raise InputError(f"--thumb must be 16..512 pixels, got {args.thumb}")
    if not all(np.isfinite(args.range)):
        raise InputError("--range must be finite")
    directions = _load_directions(args.directions)
    a, b = args.components
    if max(a, b) >= directions.count:
        raise InputError(f"components {a},{b}: the directions hold only {directions.count}")
    model = _load_model(args.model, args.device)
    directions.check_compatible(model)
    if args.pitch is None:
        from ganspace.engine.model import default_pitch

        args.pitch = default_pitch(model.pitches)
    values = grid_values(args.range[0], args.range[1], args.steps)
    coeffs = grid_coefficients(a, b, values)
    n = len(coeffs)
    z = None if args.noz else np.repeat(model.random_z(1, seed=args.seed), n, axis=0)
    spec = model.generate_specgram(z, args.pitch, directions, coeffs)  # [n, T, M, 2]
    mode = "noz" if args.noz else f"z seed {args.seed}"
    title = f"{directions.layer}, pitch {args.pitch}, {mode}"
    img = grid_image(spec[..., 0].cpu().numpy(), values, a, b, args.thumb, title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out)
    print(f"wrote {args.out} ({img.size[0]}x{img.size[1]} px, {n} notes)")
    if args.wav_dir is not None:
        args.wav_dir.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            notes = torch.cat([audio.melspecgrams_to_audio(spec[s : s + model.batch_size])
                               for s in range(0, n, model.batch_size)]).cpu().numpy()
        for cell, note in enumerate(notes):
            name = f"d{a}_{coeffs[cell, a]:+.2f}_d{b}_{coeffs[cell, b]:+.2f}.wav"
            sf.write(args.wav_dir / name, note, model.sample_rate, subtype="FLOAT")
        print(f"wrote {n} WAVs to {args.wav_dir}")
    return 0


# ---- bench -------------------------------------------------------------------------------------
def cmd_bench_pca(args: argparse.Namespace) -> int:
    import torch

    from ganspace.engine.model import random_model
    from ganspace.space.pca_bench import bench_pca

    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.model is None) == (args.random is None):
        raise InputError("give a MODEL folder or --random published (one of them)")
    if args.samples < 2 or args.batch < 1:
        raise InputError("--samples must be >= 2 and --batch >= 1")
    model = (random_model(args.random, device=args.device) if args.random
             else _load_model(args.model, args.device))
    out = bench_pca(model, args.layer, args.samples, batch=args.batch,
                    compare_ipca=args.compare_ipca, ipca_components=args.ipca_components)
    out["torch"] = torch.__version__
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0
