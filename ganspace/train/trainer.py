"""GANSynth training in PyTorch: progressive growing, WGAN-GP, auxiliary pitch classifier, EMA.

(Over 450 lines: the trainer's state, its two objectives' steps, its checkpoint and the loop are
one object whose parts share every field; the maths lives in schedule, losses, reconstruction.)

Reproduces the essentials of Magenta's ``gansynth_train`` (``lib/model.py``, ``train_util.py``,
``networks.py``) on the engine's own :class:`~ganspace.engine.generator.Generator`; the schedule
and the stage-resolution images are in :mod:`ganspace.train.schedule`, the losses in
:mod:`ganspace.train.losses`. This module holds the loop:

- Per step a generator step then a discriminator step (tfgan's sequential steps); fake pitch
  classes are drawn from the data's pitch distribution.
- Adam (``generator_learning_rate`` / ``discriminator_learning_rate``, betas ``(adam_beta1,
  adam_beta2)``), reset when a stage starts (Magenta restores everything but the optimizer
  variables from the previous stage); generator EMA with decay 0.999, warmed up per block
  (:func:`~ganspace.train.schedule.ema_decay`), carried over between stages; the exported model
  holds the EMA weights.
- Precision (``TrainOptions.precision``, see
  :func:`~ganspace.engine.precision.resolve_train_precision`): the networks' forward passes and
  losses under ``torch.autocast`` in bfloat16 where the device runs it fast, else float32;
  weights, Adam state, EMA and features stay float32.
- Features: ``ganspace.engine.audio.audio_to_melspecgrams`` then ``normalize`` (Magenta's
  constants), computed once per process for datasets that fit :data:`FEATURE_CACHE_BYTES`
  (float16), else per batch.

Output folder ``--out``: ``model.json`` + ``generator.safetensors`` (native model, EMA weights of
the current stage, refreshed at every checkpoint), ``meta.json`` (the dataset's),
``train/checkpoint/`` (``generator``, ``generator_ema``, ``discriminator`` (GAN objective only),
``optimizer`` ``.safetensors`` + ``state.json``), ``train/log.jsonl`` (one JSON object per logged
step).

Distributed (:mod:`ganspace.distrib`): run under ``torchrun --nproc_per_node N``; each process
trains on its own shard (items ``i % N == rank``) with a ``batch / N`` share of the global batch,
gradients are averaged with all-reduce after every backward pass (gloo on CPU, nccl on CUDA).
Randomness is derived from ``(seed, rank, step)``, so ``--resume`` continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ganspace import distrib
from ganspace.engine import audio
from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.hparams import blocks_of_stage, compute_progress
from ganspace.engine.model import GANSynthModel
from ganspace.engine.precision import precision_name, resolve_train_precision
from ganspace.errors import InputError
from ganspace.train.dataset import META_JSON, Dataset, load_dataset
from ganspace.train.discriminator import Discriminator
from ganspace.train.losses import discriminator_loss, generator_loss
from ganspace.train.reconstruction import crop_forward, pool_to, supervised_loss
from ganspace.train.schedule import (
    batch_size_of,
    blend_images,
    config_hparams,
    ema_decay,
    generate_at_stage,
    progress_of,
    stage_of,
    top_block,
)

log = logging.getLogger(__name__)

#: Datasets whose float16 features fit in this many bytes per process are featurised once.
FEATURE_CACHE_BYTES = 3 << 30
CHECKPOINT_FORMAT = "ganspacesynth-train-checkpoint"
#: Training objectives (hparam ``objective``): Magenta's WGAN-GP game, or regression onto a
#: teacher synthesizer's notes from their latents (:mod:`ganspace.train.reconstruction`).
OBJECTIVES = ("gan", "recon")

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
    precision: str = "auto"  # "auto", "float32", "bfloat16" (resolve_train_precision)


def dataset_fingerprint(data: Dataset) -> str:
    """SHA-256 of a dataset's item names, pitches and teacher latents (what a resumed run must
    find again; the audio of a synthetic dataset follows from them)."""
    h = hashlib.sha256(json.dumps([data.names, [int(p) for p in data.pitches]]).encode())
    if data.latents is not None:
        h.update(np.ascontiguousarray(data.latents).tobytes())
    return h.hexdigest()


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
        self.dtype = resolve_train_precision(opts.precision, device)
        self.precision = precision_name(self.dtype)
        self.rank, self.world = distrib.rank_and_size()
        self.pitches = data.pitch_set
        self.cfg = GeneratorConfig.from_hparams(
            hparams, len(self.pitches), int(hparams["num_resolutions"]), 0.0)
        self.objective = str(hparams.get("objective", "gan"))
        if self.objective not in OBJECTIVES:
            raise InputError(f"unknown objective {self.objective!r}; choose from "
                             f"{', '.join(OBJECTIVES)}")
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
        self.cpu_seconds = 0.0  # process CPU time inside training steps (all threads)
        self.opt_stage = -1
        self._new_optimizers(stage_of(0, hparams))
        labels = data.labels()
        self.shard = np.arange(self.rank, len(labels), self.world)
        if len(self.shard) == 0:
            raise InputError(f"dataset has {len(labels)} items, fewer than {self.world} processes")
        self.shard_labels = torch.as_tensor(labels[self.shard], device=self.device)
        self.latents: Tensor | None = None
        if self.objective == "recon":
            if data.latents is None:
                raise InputError(f"{data.path}: the recon objective needs a dataset with teacher "
                                 "latents (latents.npy), e.g. scripts/make_default_dataset.py")
            if data.latents.shape[1] != self.cfg.latent_size:
                raise InputError(f"{data.path}: latents have {data.latents.shape[1]} numbers, the "
                                 f"generator's latent_vector_size is {self.cfg.latent_size}")
            self.latents = torch.as_tensor(data.latents[self.shard], device=self.device)
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
            if state.get("dataset_fingerprint", dataset_fingerprint(data)) != \
                    dataset_fingerprint(data):
                raise InputError(f"--resume: {opts.dataset} is not the dataset this run was "
                                 "trained on (its notes, pitches or latents differ)")
        else:
            if (opts.out / "train").exists() or (opts.out / "model.json").exists():
                raise InputError(f"{opts.out} already holds a training run; use --resume to "
                                 "continue it or choose another --out")
            hparams = config_hparams(opts.config)
        if opts.batch is not None:  # on --resume too: e.g. a GPU continuing a CPU run
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
            if trainer.rank == 0:
                trainer._trim_log()
        return trainer

    def _trim_log(self) -> None:
        """Drop log lines past the checkpoint (a run stopped without its last checkpoint logged
        steps that the resumed run repeats)."""
        path = self.opts.out / "train" / "log.jsonl"
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line and json.loads(line)["images"] <= self.images]
        if len(kept) != len(lines):
            path.write_text("".join(line + "\n" for line in kept))

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

    def _autocast(self) -> torch.autocast:
        """Reduced precision for forward passes and losses (a no-op in float32)."""
        return torch.autocast(self.device.type, dtype=self.dtype,
                              enabled=self.dtype != torch.float32)

    def step(self) -> dict[str, float]:
        """Train on one global batch; returns the losses (averaged over processes)."""
        if self.objective == "recon":
            return self._recon_step()
        return self._gan_step()

    def _update_ema(self, top: int) -> None:
        """One EMA step of the generator's blocks 1 .. top."""
        for k in range(top):
            self.ema_updates[k] += 1
        with torch.no_grad():
            for block, pe, p in self.ema_pairs:
                if block <= top:
                    pe.lerp_(p, 1.0 - ema_decay(self.ema_updates[block - 1]))

    def _recon_step(self) -> dict[str, float]:
        """One step of the reconstruction objective (:mod:`ganspace.train.reconstruction`): the
        generator regresses onto the teacher's notes from their latents, the high blocks on
        time crops, every block's head supervised."""
        hp = self.hparams
        assert self.latents is not None
        stage = stage_of(self.images, hp)
        if stage != self.opt_stage:
            self._new_optimizers(stage)
        progress = progress_of(self.images, hp)
        top = top_block(progress, self.cfg.num_resolutions)
        batch = batch_size_of(stage, hp) // self.world
        rng = self._rng()
        idx = torch.randint(len(self.shard), (batch,), generator=rng, device=self.device)
        height = self.cfg.resolution(top)[0]
        frames = min(int(hp["recon_crop_frames"]) or height, height)
        t0 = int(torch.randint(height - frames + 1, (1,), generator=rng, device=self.device))
        target = self._real_batch(idx)
        target = pool_to(target, height)
        weights = {name: float(hp[f"recon_{name}_weight"])
                   for name in ("mag", "mag_grad", "if", "peak")}
        with self._autocast():
            outputs = crop_forward(self.gen, self.latents[idx], self.shard_labels[idx],
                                   (t0, t0 + frames), int(hp["recon_crop_from_block"]), top)
            loss, parts = supervised_loss(outputs, target, hp, weights,
                                          float(hp["recon_deep_supervision"]))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        distrib.average_gradients(self.gen)
        self.opt_g.step()
        self._update_ema(top)
        self.images += batch * self.world
        self.steps += 1
        values = torch.stack([loss.detach(), *(v.detach() for v in parts.values())]).float()
        distrib.all_reduce_mean(values)
        names = ("loss", *(f"{k}_loss" for k in parts))
        return {"progress": progress, **dict(zip(names, values.tolist(), strict=True))}

    def _gan_step(self) -> dict[str, float]:
        """One generator step then one discriminator step of the WGAN-GP objective."""
        hp = self.hparams
        stage = stage_of(self.images, hp)
        if stage != self.opt_stage:
            self._new_optimizers(stage)
        progress = progress_of(self.images, hp)
        batch = batch_size_of(stage, hp) // self.world
        rng = self._rng()
        dev = self.device
        zsize = self.cfg.latent_size

        # Generator step.
        fake_labels = self.shard_labels[torch.randint(len(self.shard), (batch,), generator=rng,
                                                      device=dev)]
        z = torch.randn(batch, zsize, generator=rng, device=dev)
        self.disc.requires_grad_(False)
        with self._autocast():
            fake = generate_at_stage(self.gen, z, fake_labels, progress)
            g_loss, g_ac = generator_loss(self.disc, fake, fake_labels, progress, hp)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.disc.requires_grad_(True)
        distrib.average_gradients(self.gen)
        self.opt_g.step()
        top = top_block(progress, self.cfg.num_resolutions)
        self._update_ema(top)

        # Discriminator step.
        idx = torch.randint(len(self.shard), (batch,), generator=rng, device=dev)
        real_labels = self.shard_labels[idx]
        real = blend_images(self._real_batch(idx), progress, self.cfg)
        fake_labels = self.shard_labels[torch.randint(len(self.shard), (batch,), generator=rng,
                                                      device=dev)]
        z = torch.randn(batch, zsize, generator=rng, device=dev)
        eps = torch.rand(batch, 1, 1, 1, generator=rng, device=dev)
        pool = 2 ** (self.cfg.num_resolutions - top)
        with self._autocast():
            with torch.no_grad():
                fake = generate_at_stage(self.gen, z, fake_labels, progress)
            d = discriminator_loss(self.disc, real, real_labels, fake, eps, progress, pool, hp)
        self.opt_d.zero_grad(set_to_none=True)
        d.total.backward()
        distrib.average_gradients(self.disc)
        self.opt_d.step()

        self.images += batch * self.world
        self.steps += 1
        values = torch.stack([g_loss, d.total, d.wasserstein, d.gradient_penalty, d.drift, g_ac,
                              d.ac, d.real_score, d.fake_score]).detach().float()
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
            "cpu_seconds": self.cpu_seconds,
            "optimizer_stage": self.opt_stage,
            "ema_updates": self.ema_updates,
            "hparams": self.hparams,
            "pitches": self.pitches,
            "config": self.opts.config,
            "seed": self.opts.seed,
            "dataset": str(self.opts.dataset),
            "dataset_fingerprint": dataset_fingerprint(self.data),
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
        if self.objective == "gan":  # unused by recon (and rebuilt from the seed on resume)
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
        if (ckpt / "discriminator.safetensors").is_file():
            self.disc.load_state_dict(load_file(str(ckpt / "discriminator.safetensors"),
                                                device=str(dev)))
        elif self.objective == "gan":
            raise InputError(f"--resume: {ckpt} has no discriminator.safetensors")
        self.images = int(state["images_seen"])
        self.steps = int(state["steps"])
        self.train_seconds = float(state["train_seconds"])
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
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
            "cpu_seconds": round(self.cpu_seconds, 1),
            "config": self.opts.config,
            "dataset": str(self.opts.dataset),
            "dataset_items": len(self.data.names),
            "processes": self.world,
            "precision": self.precision,
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
                t0, c0 = time.monotonic(), time.process_time()
                before = self.images
                losses = self.step()
                dt = time.monotonic() - t0
                self.train_seconds += dt
                self.cpu_seconds += time.process_time() - c0
                stopping = distrib.any_rank(stop["flag"], self.device)
                if bar is not None:
                    bar.update(self.images - before)
                    main = ("g_loss", "d_loss") if self.objective == "gan" else ("loss",)
                    bar.set_postfix(stage=stage_of(before, self.hparams),
                                    p=f"{losses['progress']:.2f}",
                                    img_s=f"{(self.images - before) / dt:.1f}",
                                    **{k: f"{losses[k]:.3f}" for k in main})
                if logf is not None and (self.steps % opts.log_every == 0 or stopping
                                         or self.images >= total):
                    record = {"step": self.steps, "images": self.images,
                              "stage": stage_of(before, self.hparams),
                              "time": round(self.train_seconds, 2),
                              "cpu_time": round(self.cpu_seconds, 2),
                              "images_per_s": round((self.images - before) / dt, 2),
                              "precision": self.precision,
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
