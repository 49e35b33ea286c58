"""``gansynth_ganspace``: the original PCA script's command line, writing the safe format.

Accepts the flags of SopiMlab's ``gansynth_ganspace`` (``--ckpt_dir --layer --random_z_count
--estimator --pca_out_file --seed --pitch --pca_batch_size --list_layers``, as ``--flag value`` or
``--flag=value``) and runs the same code as ``ganspacesynth pca``. Differences from the original:
the output is a ``.safetensors`` directions file, never a pickle (a ``.pickle`` out name gets the
``.safetensors`` suffix instead); the estimators are ``cov`` (default), ``ipca`` and ``pca``
(fbpca, ica and spca are refused); ``--components`` (default 512, ``all`` for the original's full
rank) is new.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ganspace.cli.args import add_device_arg
from ganspace.errors import GanspaceError, InputError
from ganspace.space.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, names_text

REFUSED_ESTIMATORS = {
    "fbpca": "fbpca (randomised PCA) is not offered; cov is exact and faster",
    "ica": "ica (independent components) is not offered; its directions are not principal "
           "components and the sliders' standard deviations would not mean anything",
    "spca": "spca (sparse PCA) is not offered; it does not scale to full layers",
}


def build_parser() -> argparse.ArgumentParser:
    """The original flags (plus ``--components`` and ``--device``)."""
    p = argparse.ArgumentParser(
        prog="gansynth_ganspace",
        description="Compute GANSpace directions of a GANSynth layer (the original "
        "gansynth_ganspace flags); writes a safe .safetensors directions file.",
    )
    p.add_argument("--ckpt_dir", type=Path, required=True,
                   help="Magenta checkpoint folder or native model folder")
    p.add_argument("--layer", default="conv0", help="layer name (default conv0)")
    p.add_argument("--random_z_count", type=int, default=8192,
                   help="number of random latents N (default 8192, the course default)")
    p.add_argument("--estimator", default=DEFAULT_ESTIMATOR,
                   help=names_text(f"{n} (default)" if n == DEFAULT_ESTIMATOR else n
                                   for n in ESTIMATORS) + "; fbpca, ica and spca are refused")
    p.add_argument("--pca_out_file", type=Path,
                   help="output file (default <ckpt>_<layer>_<estimator>_<N>.safetensors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--pitch", type=int, help="MIDI pitch (default 32, or the model's middle one)")
    p.add_argument("--pca_batch_size", type=int, default=256, help="latents per batch (256)")
    p.add_argument("--list_layers", action="store_true", help="print the layers and exit")
    p.add_argument("--components", default="512",
                   help="components to keep, or 'all' for full rank like the original (512)")
    add_device_arg(p)
    return p


def _out_path(args: argparse.Namespace) -> Path:
    if args.pca_out_file is None:
        name = f"{args.ckpt_dir.resolve().name}_{args.layer}_{args.estimator}_" \
               f"{args.random_z_count}.safetensors"
        return Path(name)
    out: Path = args.pca_out_file
    if out.suffix != ".safetensors":
        new = out.with_suffix(".safetensors")
        print(f"note: writing the safe directions format to {new} (not a pickle)")
        return new
    return out


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run; user errors print ``error: ...`` and return 2."""
    from ganspace.distrib import process_device, process_group, rank_and_size
    from ganspace.formats import load_model
    from ganspace.space.directions import save_directions
    from ganspace.space.pca import compute_directions

    args = build_parser().parse_args(argv)
    try:
        if args.estimator in REFUSED_ESTIMATORS:
            raise InputError(f"--estimator {args.estimator}: {REFUSED_ESTIMATORS[args.estimator]}"
                             f"; use --estimator {names_text()}")
        if args.estimator not in ESTIMATORS:
            raise InputError(f"unknown --estimator {args.estimator!r}; use {names_text()}")
        if args.components == "all":
            components = None
        elif args.components.isdigit():
            components = int(args.components)
        else:
            raise InputError(f"--components takes an integer or 'all', got {args.components!r}")
        if args.list_layers:
            model = load_model(args.ckpt_dir, device="cpu")
            for name in model.layer_names():
                h, w, c = model.layer_shape(name)
                print(f"{name}: {h}x{w}x{c} ({h * w * c} values)")
            return 0
        out = _out_path(args)
        device = process_device(args.device)
        with process_group(device):
            model = load_model(args.ckpt_dir, device=device)
            d = compute_directions(model, args.layer, args.random_z_count, seed=args.seed,
                                   pitch=args.pitch, estimator=args.estimator,
                                   components=components, batch=args.pca_batch_size,
                                   progress=True)
            if rank_and_size()[0] == 0:
                save_directions(d, out)
                print(f"wrote {out}: {d.layer}, K={d.count}, N={args.random_z_count}, "
                      f"estimator {args.estimator}")
    except GanspaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def gansynth_ganspace_main() -> int:
    """Entry point of the ``gansynth_ganspace`` console script."""
    return run(sys.argv[1:])
