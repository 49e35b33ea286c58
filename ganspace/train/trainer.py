"""GANSynth training in PyTorch: progressive growing, WGAN-GP, auxiliary pitch classifier, EMA.

Reproduces the essentials of Magenta's ``gansynth_train`` (``lib/model.py``, ``train_util.py``,
``networks.py``) on the engine's own :class:`~ganspace.engine.generator.Generator`:

- **Schedule by images seen.** Stage ``s`` (0 .. 2 * (num_resolutions - 1)) alternates stable and
  transition phases of ``stable_stage_num_images`` / ``transition_stage_num_images`` images;
  stage ``s`` uses ``(s + 1) // 2 + 1`` blocks and ``progress = ganspace.engine.hparams.
  compute_progress(images_seen, hparams, num_blocks)``, exactly Magenta's value, so an exported
  model's progress and the generator's alpha blend agree with ``global_step``.
  Adam's state is reset when a stage starts (Magenta restores everything but the optimizer
  variables from the previous stage); the EMA carries over.
- **Stage resolution.** Magenta feeds full-resolution images everywhere: real data blurred by
  ``blend_images`` (box downscale + nearest upscale per block, weighted by the generator's
  alphas), generator output nearest-upscaled, and a discriminator that only looks at
  average-pooled copies. Here both are average-pooled to the highest resolution in use before the
  discriminator, which gives the same scores with far less work at low stages. The gradient
  penalty's norm is divided by the pooling factor, which is its value with respect to the
  full-resolution interpolate (pooling by s x s scales a gradient's norm by 1 / s).
- **Losses** (per step, generator step then discriminator step, as tfgan's sequential steps):
  ``L_G = -mean(D(G(z, c))) + generator_ac_loss_weight * CE(cls(G(z, c)), c)``;
  ``L_D = mean(D(fake)) - mean(D(real)) + gradient_penalty_weight * mean((|grad D(x_hat)| /
  target - 1)^2) + real_score_penalty_weight * mean(D(real)^2) +
  discriminator_ac_loss_weight * CE(cls(real), c_real)`` with ``x_hat`` a uniform random
  interpolate; fake pitch classes are drawn from the data's pitch distribution.
- Adam (``generator_learning_rate`` / ``discriminator_learning_rate``, betas ``(adam_beta1,
  adam_beta2)``), generator EMA with decay 0.999 (warmed up per block, :func:`ema_decay`); the
  exported model holds the EMA weights.
- Features: ``ganspace.engine.audio.audio_to_melspecgrams`` then ``normalize`` (Magenta's
  constants), computed once per process for datasets that fit :data:`FEATURE_CACHE_BYTES`
  (float16), else per batch.

Output folder ``--out``: ``model.json`` + ``generator.safetensors`` (native model, EMA weights of
the current stage, refreshed at every checkpoint), ``meta.json`` (the dataset's),
``train/checkpoint/`` (``generator``, ``generator_ema``, ``discriminator``, ``optimizer``
``.safetensors`` + ``state.json``), ``train/log.jsonl`` (one JSON object per logged step).

Distributed: run under ``torchrun --nproc_per_node N``; each process trains on its own shard
(items ``i % N == rank``) with a ``batch / N`` share of the global batch, gradients are averaged
with all-reduce after every backward pass (gloo on CPU, nccl on CUDA). Randomness is derived
from ``(seed, rank, step)``, so ``--resume`` continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ganspace import distrib
from ganspace.engine import audio
from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.hparams import blocks_of_stage, compute_progress, published_hparams
from ganspace.engine.model import GANSynthModel
from ganspace.errors import InputError
from ganspace.train.dataset import META_JSON, Dataset, load_dataset
from ganspace.train.discriminator import Discriminator

log = logging.getLogger(__name__)

#: Datasets whose float16 features fit in this many bytes per process are featurised once.
FEATURE_CACHE_BYTES = 3 << 30
#: Magenta's generator EMA decay; see :func:`ema_decay` for the warm-up of new blocks.
EMA_DECAY = 0.999
CHECKPOINT_FORMAT = "ganspacesynth-train-checkpoint"

#: Named configs: overrides of Magenta's published ``mel_prog_hires`` hparams.
CONFIGS: dict[str, dict[str, Any]] = {
    # Magenta's published recipe: 7.3 M-parameter generator, 11 M images (days on a V100).
    "published": {},
    # The default instrument on a CPU: channels 64,64,64,32,16,8,4, latent 64; long stable
    # stages (500 steps each) so the pitch conditioning is learnt at the cheap low resolutions;
    # the final stage starts after 31,200 images (~50 min on one shared core).
    "small": {
        "latent_vector_size": 64,
        "fmap_base": 512,
        "fmap_max": 64,
        "stable_stage_num_images": 4000,
        "transition_stage_num_images": 1200,
        "total_num_images": 60_000,
        "batch_size_schedule": [8],
        "save_summaries_num_images": 1000,
    },
    # Tests: 4 channels everywhere, 16 images per stage.
    "tiny": {
        "latent_vector_size": 8,
        "fmap_base": 1024,
        "fmap_max": 4,
        "stable_stage_num_images": 16,
        "transition_stage_num_images": 16,
        "total_num_images": 256,
        "batch_size_schedule": [4],
        "save_summaries_num_images": 16,
    },
}


def config_hparams(name: str) -> dict[str, Any]:
    """Full hparams of a named config (published defaults + overrides; a fresh dict)."""
    if name not in CONFIGS:
        raise InputError(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    return {**published_hparams(), **copy.deepcopy(CONFIGS[name])}


def stage_of(images: int, hparams: dict[str, Any]) -> int:
    """Magenta stage id (0 .. 2 * (num_resolutions - 1)) while ``images`` images have been seen."""
    stable = int(hparams["stable_stage_num_images"])
    trans = int(hparams["transition_stage_num_images"])
    whole, rest = divmod(int(images), stable + trans)
    return min(2 * whole + int(rest >= stable), 2 * (int(hparams["num_resolutions"]) - 1))


def batch_size_of(stage: int, hparams: dict[str, Any]) -> int:
    """Global batch size of a stage: ``batch_size_schedule[num_blocks - 1]`` (clamped)."""
    schedule = list(hparams["batch_size_schedule"])
    return int(schedule[min(blocks_of_stage(stage) - 1, len(schedule) - 1)])


def progress_of(images: int, hparams: dict[str, Any]) -> float:
    """Training progress after ``images`` images (Magenta's ``compute_progress``)."""
    return compute_progress(images, hparams, blocks_of_stage(stage_of(images, hparams)))


def top_block(progress: float, num_blocks: int) -> int:
    """Highest block whose output is blended at ``progress``: ``ceil(progress) + 1``."""
    return min(num_blocks, math.ceil(progress) + 1)


def stage_real(x: Tensor, progress: float, cfg: GeneratorConfig) -> Tensor:
    """Magenta's ``blend_images`` on real data, at the resolution of :func:`top_block`.

    Args:
        x: [B, 2, 128, 1024] normalised mel-IF images (NCHW, full resolution).
        progress: training progress.
        cfg: the architecture (resolutions, generator alphas).
    Returns:
        [B, 2, H_top, W_top]: sum over blocks k of alpha_k(progress) * (x box-downscaled to block
        k and nearest-upscaled to block ``top``), average-pooled to block ``top``.
    """
    cfg_p = replace(cfg, progress=progress)
    top = top_block(progress, cfg.num_resolutions)
    x = F.avg_pool2d(x, 2 ** (cfg.num_resolutions - top)) if top < cfg.num_resolutions else x
    out = torch.zeros_like(x)
    for k, alpha in enumerate(cfg_p.alphas()[:top], 1):
        if alpha > 0.0:
            f = 2 ** (top - k)
            lod = x if f == 1 else F.interpolate(F.avg_pool2d(x, f), scale_factor=f,
                                                 mode="nearest")
            out += alpha * lod
    return out


def generate_at_stage(gen: Generator, z: Tensor, labels: Tensor, progress: float) -> Tensor:
    """Generator output at the resolution of :func:`top_block` (NCHW [B, 2, H_top, W_top]):
    Magenta's full-resolution blend, average-pooled (exact, since it is nearest-upscaled)."""
    gen.cfg = replace(gen.cfg, progress=progress)
    out = gen(z, labels)
    top = top_block(progress, gen.cfg.num_resolutions)
    f = 2 ** (gen.cfg.num_resolutions - top)
    return F.avg_pool2d(out, f) if f > 1 else out


def ema_decay(updates: int) -> float:
    """EMA decay after a block's ``updates``-th generator step in use: ``min(0.999, (1 + n) /
    (10 + n))``, TensorFlow's ``ExponentialMovingAverage(num_updates=n)`` rule.

    Magenta uses a constant 0.999, which is the same once a block has been trained for about
    9000 steps (every block of a published run). In a short run the constant decay would keep a
    large share of a new block's random initialisation in the shadow weights (0.999**1000 = 37 %
    after 1000 steps), so the counter starts when the block enters the blend.
    """
    return min(EMA_DECAY, (1.0 + updates) / (10.0 + updates))


def _param_block(name: str) -> int:
    """1-based block of a generator parameter (``blocks.{k-1}.*`` or ``to_rgb.{k-1}.*``)."""
    return int(name.split(".")[1]) + 1


def features(batch: np.ndarray | Tensor, hparams: dict[str, Any], device: torch.device) -> Tensor:
    """Audio [B, 64000] -> normalised mel-IF images [B, 2, 128, 1024] (NCHW, float32, [-1, 1])."""
    x = torch.as_tensor(np.array(batch, dtype=np.float32), device=device)
    spec = audio.normalize(audio.audio_to_melspecgrams(x), hparams)
    return spec.permute(0, 3, 1, 2).contiguous()


@dataclass
class TrainOptions:
    """What ``ganspacesynth train`` was asked to do."""

    dataset: Path
    out: Path
    config: str = "small"
    images: int | None = None  # total images to reach; None: the config's total_num_images
    batch: int | None = None  # global batch size for every stage; None: the config's schedule
    device: str | None = None  # "cpu", "cuda"; None: cuda when available
    resume: bool = False
    seed: int = 0
    checkpoint_seconds: float = 600.0
    log_every: int = 10  # steps
    threads: int | None = None  # torch intra-op threads; None: leave torch's default
    progress_bar: bool = True


def _make_adam(module: nn.Module, lr: float, hparams: dict[str, Any]) -> torch.optim.Adam:
    betas = (float(hparams["adam_beta1"]), float(hparams["adam_beta2"]))
    return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=1e-8)


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, Tensor]:
    """Adam state as flat tensors ``<prefix>.<param index>.<step|exp_avg|exp_avg_sq>``."""
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"{prefix}.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        head, idx, key = name.split(".")
        if head == prefix:
            state.setdefault(int(idx), {})[key] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


class Trainer:
    """One training process (see module docstring). Build with :meth:`create`, then :meth:`run`."""

    def __init__(self, opts: TrainOptions, hparams: dict[str, Any], data: Dataset,
                 device: torch.device) -> None:
        self.opts = opts
        self.hparams = hparams
        self.data = data
        self.device = device
        self.rank, self.world = distrib.rank_and_size()
        self.pitches = data.pitch_set
        self.cfg = GeneratorConfig.from_hparams(
            hparams, len(self.pitches), int(hparams["num_resolutions"]), 0.0)
        torch.manual_seed(opts.seed)
        self.gen = Generator(self.cfg).to(self.device)
        self.disc = Discriminator(self.cfg).to(self.device)
        self.ema = copy.deepcopy(self.gen).requires_grad_(False)
        self.ema_pairs = [(_param_block(name), pe, p) for (name, p), pe in zip(
            self.gen.named_parameters(), self.ema.parameters(), strict=True)]
        self.ema_updates = [0] * self.cfg.num_resolutions  # generator steps per block in use
        self.images = 0
        self.steps = 0
        self.train_seconds = 0.0
        self.opt_stage = -1
        self._new_optimizers(stage_of(0, hparams))
        labels = data.labels()
        self.shard = np.arange(self.rank, len(labels), self.world)
        if len(self.shard) == 0:
            raise InputError(f"dataset has {len(labels)} items, fewer than {self.world} processes")
        self.shard_labels = torch.as_tensor(labels[self.shard], device=self.device)
        self.cache: Tensor | None = None
        if len(self.shard) * 2 * 128 * 1024 * 2 <= FEATURE_CACHE_BYTES:
            chunks = [features(data.audio[self.shard[i : i + 16]], hparams, self.device).half()
                      for i in range(0, len(self.shard), 16)]
            self.cache = torch.cat(chunks)

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, opts: TrainOptions) -> Trainer:
        """Set up (or resume) a run: process group, dataset, networks, checkpoint."""
        if opts.threads:
            torch.set_num_threads(opts.threads)
        device = distrib.process_device(opts.device)
        distrib.join_process_group(device)
        world = distrib.rank_and_size()[1]
        data = load_dataset(opts.dataset)
        ckpt = opts.out / "train" / "checkpoint"
        if opts.resume:
            if not (ckpt / "state.json").is_file():
                raise InputError(f"--resume: no checkpoint in {ckpt}")
            state = json.loads((ckpt / "state.json").read_text())
            hparams = state["hparams"]
            if state["pitches"] != data.pitch_set:
                raise InputError(f"--resume: {opts.dataset} has other pitches than the checkpoint")
        else:
            if (opts.out / "train").exists() or (opts.out / "model.json").exists():
                raise InputError(f"{opts.out} already holds a training run; use --resume to "
                                 "continue it or choose another --out")
            hparams = config_hparams(opts.config)
            if opts.batch is not None:
                hparams["batch_size_schedule"] = [int(opts.batch)]
        if opts.images is not None:
            hparams["total_num_images"] = int(opts.images)
        for stage in range(2 * int(hparams["num_resolutions"]) - 1):
            if batch_size_of(stage, hparams) % world:
                raise InputError(f"batch size {batch_size_of(stage, hparams)} does not split over "
                                 f"{world} processes")
        trainer = cls(opts, hparams, data, device)
        if opts.resume:
            trainer.load_checkpoint(ckpt)
        return trainer

    def _new_optimizers(self, stage: int) -> None:
        """Fresh Adam optimizers (at the start of every stage, as Magenta)."""
        self.opt_g = _make_adam(self.gen, float(self.hparams["generator_learning_rate"]),
                                self.hparams)
        self.opt_d = _make_adam(self.disc, float(self.hparams["discriminator_learning_rate"]),
                                self.hparams)
        self.opt_stage = stage

    # ---- one step ----------------------------------------------------------------------------
    def _rng(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(((self.opts.seed * 1_000_003 + self.rank) * 1_000_003 + self.steps)
                      % (1 << 63))
        return g

    def _real_batch(self, idx: Tensor) -> Tensor:
        if self.cache is not None:
            return self.cache[idx].float()
        return features(self.data.audio[self.shard[idx.cpu().numpy()]], self.hparams,
                        self.device)

    def step(self) -> dict[str, float]:
        """Train on one global batch; returns the losses (averaged over processes)."""
        hp = self.hparams
        stage = stage_of(self.images, hp)
        if stage != self.opt_stage:
            self._new_optimizers(stage)
        progress = progress_of(self.images, hp)
        batch = batch_size_of(stage, hp) // self.world
        rng = self._rng()
        dev = self.device
        zsize = self.cfg.latent_size
        ac_g = float(hp["generator_ac_loss_weight"])
        ac_d = float(hp["discriminator_ac_loss_weight"])

        # Generator step.
        fake_labels = self.shard_labels[torch.randint(len(self.shard), (batch,), generator=rng,
                                                      device=dev)]
        z = torch.randn(batch, zsize, generator=rng, device=dev)
        self.disc.requires_grad_(False)
        score, cls = self.disc(generate_at_stage(self.gen, z, fake_labels, progress), progress)
        g_ac = F.cross_entropy(cls, fake_labels)
        g_loss = -score.mean() + ac_g * g_ac
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.disc.requires_grad_(True)
        distrib.average_gradients(self.gen)
        self.opt_g.step()
        top = top_block(progress, self.cfg.num_resolutions)
        for k in range(top):
            self.ema_updates[k] += 1
        with torch.no_grad():
            for block, pe, p in self.ema_pairs:
                if block <= top:
                    pe.lerp_(p, 1.0 - ema_decay(self.ema_updates[block - 1]))

        # Discriminator step.
        idx = torch.randint(len(self.shard), (batch,), generator=rng, device=dev)
        real_labels = self.shard_labels[idx]
        real = stage_real(self._real_batch(idx), progress, self.cfg)
        fake_labels = self.shard_labels[torch.randint(len(self.shard), (batch,), generator=rng,
                                                      device=dev)]
        z = torch.randn(batch, zsize, generator=rng, device=dev)
        with torch.no_grad():
            fake = generate_at_stage(self.gen, z, fake_labels, progress)
        d_real, cls_real = self.disc(real, progress)
        d_fake, _ = self.disc(fake, progress)
        eps = torch.rand(batch, 1, 1, 1, generator=rng, device=dev)
        interp = (real + eps * (fake - real)).requires_grad_(True)
        d_interp, _ = self.disc(interp, progress)
        (grad,) = torch.autograd.grad(d_interp.sum(), interp, create_graph=True)
        pool = 2 ** (self.cfg.num_resolutions - top_block(progress, self.cfg.num_resolutions))
        slopes = torch.sqrt(grad.square().sum(dim=(1, 2, 3)) / pool**2 + 1e-10)
        target = float(hp["gradient_penalty_target"])
        gp = (slopes / target - 1.0).square().mean()
        wass = d_fake.mean() - d_real.mean()
        drift = d_real.square().mean()
        d_ac = F.cross_entropy(cls_real, real_labels)
        d_loss = (wass + float(hp["gradient_penalty_weight"]) * gp
                  + float(hp["real_score_penalty_weight"]) * drift + ac_d * d_ac)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        distrib.average_gradients(self.disc)
        self.opt_d.step()

        self.images += batch * self.world
        self.steps += 1
        values = torch.stack([g_loss, d_loss, wass, gp, drift, g_ac, d_ac,
                              d_real.mean(), d_fake.mean()]).detach().float()
        distrib.all_reduce_mean(values)
        names = ("g_loss", "d_loss", "wasserstein", "gradient_penalty", "drift", "g_ac", "d_ac",
                 "d_real", "d_fake")
        return {"progress": progress, **dict(zip(names, values.tolist(), strict=True))}

    # ---- checkpoints and export --------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """The JSON part of a checkpoint."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": 1,
            "images_seen": self.images,
            "steps": self.steps,
            "train_seconds": self.train_seconds,
            "optimizer_stage": self.opt_stage,
            "ema_updates": self.ema_updates,
            "hparams": self.hparams,
            "pitches": self.pitches,
            "config": self.opts.config,
            "seed": self.opts.seed,
            "dataset": str(self.opts.dataset),
        }

    def save_checkpoint(self) -> Path:
        """Write ``train/checkpoint`` atomically (rank 0 only) and refresh the exported model."""
        ckpt = self.opts.out / "train" / "checkpoint"
        if self.rank != 0:
            return ckpt
        tmp = ckpt.with_name("checkpoint.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

        def cpu(module: nn.Module) -> dict[str, Tensor]:
            return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

        save_file(cpu(self.gen), str(tmp / "generator.safetensors"))
        save_file(cpu(self.ema), str(tmp / "generator_ema.safetensors"))
        save_file(cpu(self.disc), str(tmp / "discriminator.safetensors"))
        save_file({**_optimizer_tensors(self.opt_g, "g"), **_optimizer_tensors(self.opt_d, "d")},
                  str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps(self.checkpoint_state(), indent=1) + "\n")
        old = ckpt.with_name("checkpoint.old")
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
        self.export(self.opts.out)
        return ckpt

    def load_checkpoint(self, ckpt: Path) -> None:
        """Restore networks, optimizers and counters from ``ckpt`` (every process reads it)."""
        state = json.loads((ckpt / "state.json").read_text())
        dev = self.device
        self.gen.load_state_dict(load_file(str(ckpt / "generator.safetensors"), device=str(dev)))
        self.ema.load_state_dict(load_file(str(ckpt / "generator_ema.safetensors"),
                                           device=str(dev)))
        self.disc.load_state_dict(load_file(str(ckpt / "discriminator.safetensors"),
                                            device=str(dev)))
        self.images = int(state["images_seen"])
        self.steps = int(state["steps"])
        self.train_seconds = float(state["train_seconds"])
        self.ema_updates = [int(n) for n in state["ema_updates"]]
        self._new_optimizers(int(state["optimizer_stage"]))
        tensors = load_file(str(ckpt / "optimizer.safetensors"), device=str(dev))
        _load_optimizer(self.opt_g, tensors, "g")
        _load_optimizer(self.opt_d, tensors, "d")

    def export_model(self) -> GANSynthModel:
        """The EMA generator of the current stage as a :class:`GANSynthModel` (on the CPU)."""
        stage = stage_of(self.images, self.hparams)
        num_blocks = blocks_of_stage(stage)
        progress = compute_progress(self.images, self.hparams, num_blocks)
        cfg = replace(self.cfg, num_blocks=num_blocks, progress=progress)
        gen = Generator(cfg)
        wanted = gen.state_dict().keys()
        gen.load_state_dict({k: v.detach().cpu() for k, v in self.ema.state_dict().items()
                             if k in wanted})
        provenance = {
            "source": "ganspacesynth train",
            "created_by": "ganspace.train",
            "trainer": "ganspace.train (PyTorch port of gansynth_train)",
            "global_step": self.images,
            "images_seen": self.images,
            "stage": stage,
            "steps": self.steps,
            "train_seconds": round(self.train_seconds, 1),
            "config": self.opts.config,
            "dataset": str(self.opts.dataset),
            "dataset_items": len(self.data.names),
            "processes": self.world,
            "weights": "generator EMA (decay 0.999, warmed up per block)",
        }
        return GANSynthModel(gen, self.hparams, self.pitches, provenance, "cpu")

    def export(self, out: Path) -> Path:
        """Save :meth:`export_model` in the native format plus the dataset's ``meta.json``."""
        self.export_model().save(out)
        meta = self.data.path / META_JSON
        if meta.is_file():
            shutil.copyfile(meta, out / META_JSON)
        return out

    # ---- loop --------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train until ``total_num_images``; checkpoint every ``checkpoint_seconds``, at the end
        and on SIGINT/SIGTERM. Returns the output folder (rank 0 has written the model)."""
        total = int(self.hparams["total_num_images"])
        opts = self.opts
        if self.rank == 0:
            (opts.out / "train").mkdir(parents=True, exist_ok=True)
        stop = {"flag": False}

        def on_signal(signum: int, _frame: object) -> None:
            stop["flag"] = True

        old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = None
        if self.rank == 0 and opts.progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.images, unit="img", dynamic_ncols=True)
        logf = (opts.out / "train" / "log.jsonl").open("a") if self.rank == 0 else None
        last_ckpt = time.monotonic()
        try:
            while self.images < total:
                t0 = time.monotonic()
                before = self.images
                losses = self.step()
                dt = time.monotonic() - t0
                self.train_seconds += dt
                stopping = distrib.any_rank(stop["flag"], self.device)
                if bar is not None:
                    bar.update(self.images - before)
                    bar.set_postfix(stage=stage_of(before, self.hparams),
                                    p=f"{losses['progress']:.2f}", d=f"{losses['d_loss']:.2f}",
                                    g=f"{losses['g_loss']:.2f}")
                if logf is not None and (self.steps % opts.log_every == 0 or stopping
                                         or self.images >= total):
                    record = {"step": self.steps, "images": self.images,
                              "stage": stage_of(before, self.hparams),
                              "time": round(self.train_seconds, 2),
                              "images_per_s": round((self.images - before) / dt, 2),
                              **{k: round(v, 5) for k, v in losses.items()}}
                    logf.write(json.dumps(record) + "\n")
                    logf.flush()
                if stopping:
                    break
                if time.monotonic() - last_ckpt >= opts.checkpoint_seconds:
                    self.save_checkpoint()
                    last_ckpt = time.monotonic()
            self.save_checkpoint()
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if bar is not None:
                bar.close()
            if logf is not None:
                logf.close()
        return opts.out


def train(opts: TrainOptions) -> Path:
    """Run ``ganspacesynth train``: create (or resume) a run and train it to the end."""
    trainer = Trainer.create(opts)
    try:
        return trainer.run()
    finally:
        distrib.leave_process_group()
