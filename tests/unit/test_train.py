"""Training: schedule, Magenta equivalences, steps, checkpoint/resume, export, torchrun (gloo).

Feature extraction itself (audio -> mel-IF -> audio) is tested in test_audio.py
(``test_round_trip_harmonic_tone`` and the Magenta parity tests); here only its use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import ganspace
from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.hparams import blocks_of_stage, compute_progress
from ganspace.engine.precision import CPU_BF16_ENV, resolve_train_precision
from ganspace.errors import InputError
from ganspace.train.dataset import Dataset, save_dataset
from ganspace.train.discriminator import Discriminator
from ganspace.train.schedule import (
    batch_size_of,
    blend_images,
    config_hparams,
    ema_decay,
    generate_at_stage,
    progress_of,
    stage_of,
)
from ganspace.train.synthdata import render_dataset
from ganspace.train.trainer import Trainer, TrainOptions, features, train


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Six synthetic notes over three pitches."""
    root = tmp_path_factory.mktemp("data")
    return render_dataset(root / "ds", [48, 55, 60], notes_per_pitch=2, seed=5)


def opts(ds: Dataset, out: Path, **kw: object) -> TrainOptions:
    base = dict(dataset=ds.path, out=out, config="tiny", threads=1, progress_bar=False,
                log_every=1, device="cpu", precision="float32")
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


def test_schedule_matches_magenta_progress() -> None:
    hp = config_hparams("tiny")  # 16 stable + 16 transition images per stage, 7 resolutions
    assert (stage_of(0, hp), progress_of(0, hp)) == (0, 0.0)
    assert (stage_of(15, hp), progress_of(15, hp)) == (0, 0.0)
    assert (stage_of(16, hp), progress_of(16, hp)) == (1, 0.0)
    assert (stage_of(24, hp), progress_of(24, hp)) == (1, 0.5)
    assert (stage_of(32, hp), progress_of(32, hp)) == (2, 1.0)
    assert (stage_of(200, hp), progress_of(200, hp)) == (12, 6.0)
    assert stage_of(10**6, hp) == 12 and blocks_of_stage(12) == 7 and blocks_of_stage(1) == 2
    for images in range(0, 260, 3):
        n = blocks_of_stage(stage_of(images, hp))
        assert progress_of(images, hp) == compute_progress(images, hp, n)
        assert n - 2 <= progress_of(images, hp) <= n - 1
    hp["batch_size_schedule"] = [16, 8, 4]
    assert [batch_size_of(s, hp) for s in (0, 1, 2, 3, 12)] == [16, 8, 8, 4, 4]
    with pytest.raises(InputError, match="unknown config"):
        config_hparams("huge")


def test_ema_decay_warms_up_to_magentas() -> None:
    assert ema_decay(0) == pytest.approx(0.1) and ema_decay(90) == pytest.approx(0.91)
    assert ema_decay(9000) == 0.999 and ema_decay(10**6) == 0.999


def _cfg(**kw: object) -> GeneratorConfig:
    base = dict(latent_size=4, num_pitches=3, num_blocks=7, fmap_base=1024, fmap_max=4)
    base.update(kw)
    return GeneratorConfig(**base)  # type: ignore[arg-type]


def magenta_blend(x: torch.Tensor, progress: float, cfg: GeneratorConfig) -> torch.Tensor:
    """Magenta's ``blend_images`` at full resolution (NCHW)."""
    out = torch.zeros_like(x)
    for k, alpha in enumerate(replace(cfg, progress=progress).alphas(), 1):
        s = 2 ** (cfg.num_resolutions - k)
        lod = x if s == 1 else F.interpolate(F.avg_pool2d(x, s), scale_factor=s, mode="nearest")
        out += alpha * lod
    return out


@pytest.mark.parametrize("progress", [0.0, 1.5, 3.0, 4.25, 5.5, 6.0])
def test_stage_resolution_equals_magenta_full_resolution(progress: float) -> None:
    cfg = _cfg()
    torch.manual_seed(0)
    disc = Discriminator(cfg)
    x = torch.rand(3, 2, 128, 1024) * 2 - 1
    full = magenta_blend(x, progress, cfg)
    staged = blend_images(x, progress, cfg)
    assert staged.shape[-2:] == cfg.resolution(min(7, int(np.ceil(progress)) + 1))
    s_full, c_full = disc(full, progress)
    s_stage, c_stage = disc(staged, progress)
    torch.testing.assert_close(s_stage, s_full, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c_stage, c_full, rtol=1e-4, atol=1e-5)
    # Gradient penalty: the norm w.r.t. the full-resolution input is the pooled one / factor.
    a = full.clone().requires_grad_(True)
    b = staged.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(disc(a, progress)[0].sum(), a)
    (gb,) = torch.autograd.grad(disc(b, progress)[0].sum(), b)
    factor = 128 // staged.shape[-2]
    torch.testing.assert_close(gb.flatten(1).norm(dim=1) / factor, ga.flatten(1).norm(dim=1),
                               rtol=1e-3, atol=1e-7)
    # Generator: the pooled output is the full-resolution blend pooled.
    gen = Generator(cfg)
    z, labels = torch.randn(2, 4), torch.tensor([0, 2])
    staged_fake = generate_at_stage(gen, z, labels, progress)
    full_fake = gen(z, labels)
    torch.testing.assert_close(F.interpolate(staged_fake, size=(128, 1024), mode="nearest"),
                               full_fake, rtol=0, atol=2e-4)  # float32 sums of up to 4096 pixels


def test_discriminator_rejects_too_small_input() -> None:
    disc = Discriminator(_cfg())
    with pytest.raises(ValueError, match="needs block 4"):
        disc(torch.zeros(2, 2, 8, 64), 2.5)


def test_features_shape_and_range(tiny_dataset: Dataset) -> None:
    x = features(tiny_dataset.audio[:2], config_hparams("tiny"), torch.device("cpu"))
    assert x.shape == (2, 2, 128, 1024) and x.dtype == torch.float32
    assert float(x.abs().max()) <= 1.0 and float(x[:, 0].std()) > 0.05


def test_train_checkpoint_export_and_refuse(tiny_dataset: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "run"
    torch.manual_seed(0)
    init = Generator(GeneratorConfig.from_hparams(config_hparams("tiny"), 3, 7, 0.0)).state_dict()
    train(opts(tiny_dataset, out, images=24))
    ckpt = out / "train" / "checkpoint"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["images_seen"] == 24 and state["steps"] == 6 and state["pitches"] == [48, 55, 60]
    trained = load_file(str(ckpt / "generator.safetensors"))
    changed = [k for k in init if not torch.equal(init[k], trained[k])]
    assert "blocks.0.conv1.weight" in changed and "to_rgb.1.weight" in changed
    assert "blocks.6.conv1.weight" not in changed  # block 7 is not in use yet
    assert state["ema_updates"] == [6, 1, 0, 0, 0, 0, 0]
    ema = load_file(str(ckpt / "generator_ema.safetensors"))
    torch.testing.assert_close(ema["blocks.6.conv1.weight"], init["blocks.6.conv1.weight"])
    assert not torch.equal(ema["blocks.0.conv1.weight"], trained["blocks.0.conv1.weight"])
    lines = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["images"] for r in lines] == [4, 8, 12, 16, 20, 24]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in lines)
    model = ganspace.load_model(out, device="cpu")
    assert model.pitches == [48, 55, 60] and model.generator.cfg.num_blocks == 2
    assert model.generator.cfg.progress == 0.5
    assert model.provenance["global_step"] == 24 and model.provenance["trainer"]
    torch.testing.assert_close(model.generator.state_dict()["blocks.0.conv1.weight"],
                               ema["blocks.0.conv1.weight"])
    notes = model.generate(model.random_z(2, seed=1), [48, 60])
    assert notes.shape == (2, 64000) and np.isfinite(notes).all()
    assert (out / "meta.json").is_file()
    with pytest.raises(InputError, match="already holds a training run"):
        Trainer.create(opts(tiny_dataset, out, images=32))
    with pytest.raises(InputError, match="no checkpoint"):
        Trainer.create(opts(tiny_dataset, tmp_path / "none", resume=True))


def test_resume_restores_state_and_continues_exactly(tiny_dataset: Dataset,
                                                     tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    train(opts(tiny_dataset, straight, images=40))  # crosses stages 0 -> 1 -> 2
    split = tmp_path / "split"
    train(opts(tiny_dataset, split, images=20))
    resumed = Trainer.create(opts(tiny_dataset, split, images=40, resume=True))
    ckpt = split / "train" / "checkpoint"
    assert resumed.images == 20 and resumed.steps == 5
    assert resumed.ema_updates == json.loads((ckpt / "state.json").read_text())["ema_updates"]
    assert resumed.ema_updates[:3] == [5, 0, 0]  # block 2 is blended once progress > 0
    for name, module in (("generator", resumed.gen), ("generator_ema", resumed.ema),
                         ("discriminator", resumed.disc)):
        saved = load_file(str(ckpt / f"{name}.safetensors"))
        for k, v in module.state_dict().items():
            assert torch.equal(v, saved[k]), (name, k)
    saved_opt = load_file(str(ckpt / "optimizer.safetensors"))
    live = resumed.opt_g.state_dict()["state"]
    g_keys = [k.split(".") for k in saved_opt if k.startswith("g.")]
    assert g_keys and all(torch.equal(saved_opt[".".join(k)], live[int(k[1])][k[2]])
                          for k in g_keys)
    resumed.run()
    a = load_file(str(straight / "train" / "checkpoint" / "generator_ema.safetensors"))
    b = load_file(str(ckpt / "generator_ema.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    lines = (split / "train" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["images"] for line in lines][-3:] == [32, 36, 40]


def test_torchrun_two_processes_gloo(tiny_dataset: Dataset, tmp_path: Path) -> None:
    exe = shutil.which("ganspacesynth")
    assert exe, "ganspacesynth is not installed (pip install -e .)"
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--no-python", exe, "train", str(tiny_dataset.path), "--out", str(out), "--config",
         "tiny", "--images", "24", "--device", "cpu", "--threads", "1", "--no-progress",
         "--log-every", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = ganspace.load_model(out, device="cpu")
    assert model.provenance["processes"] == 2 and model.provenance["global_step"] == 24
    lines = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["images"] for r in lines] == [4, 8, 12, 16, 20, 24]
    assert np.isfinite(model.generate(model.random_z(1, seed=0), [55])).all()
    # An odd batch cannot be split over two processes: every rank fails cleanly.
    bad = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--no-python", exe, "train", str(tiny_dataset.path), "--out", str(tmp_path / "bad"),
         "--config", "tiny", "--batch", "3", "--images", "6", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert bad.returncode != 0 and "does not split over 2 processes" in bad.stderr


def test_recon_objective_trains_and_resumes_exactly(tiny_dataset: Dataset, tmp_path: Path) -> None:
    """The reconstruction objective: the loss falls on a tiny config, and a run split by
    --resume logs the same losses and ends with the same weights as an uninterrupted one."""
    whole = train(opts(tiny_dataset, tmp_path / "whole", config="tiny-recon", images=48))
    log = [json.loads(line) for line in (whole / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["images"] for r in log] == list(range(4, 52, 4))
    assert all(np.isfinite(r["loss"]) for r in log) and log[-1]["mag_loss"] < log[0]["mag_loss"]
    model = json.loads((whole / "model.json").read_text())
    assert model["progress"] == 6.0 and model["hparams"]["objective"] == "recon"
    train(opts(tiny_dataset, tmp_path / "split", config="tiny-recon", images=24))
    # A step logged after the last checkpoint (the process was killed): dropped on resume.
    with (tmp_path / "split" / "train" / "log.jsonl").open("a") as f:
        f.write(json.dumps({**log[6], "loss": 999.0}) + "\n")
    train(opts(tiny_dataset, tmp_path / "split", config="tiny-recon", images=48, resume=True))
    split = [json.loads(line) for line in
             (tmp_path / "split" / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in split] == [r["loss"] for r in log]
    a = load_file(str(whole / "train" / "checkpoint" / "generator_ema.safetensors"))
    b = load_file(str(tmp_path / "split" / "train" / "checkpoint" / "generator_ema.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recon_objective_needs_latents(tiny_dataset: Dataset, tmp_path: Path) -> None:
    ds = save_dataset(tmp_path / "ds", np.asarray(tiny_dataset.audio),
                      [int(p) for p in tiny_dataset.pitches], ["x"] * len(tiny_dataset.names),
                      tiny_dataset.names)
    assert ds.latents is None
    with pytest.raises(InputError, match="latents"):
        train(opts(ds, tmp_path / "run", config="tiny-recon", images=8))


def test_resume_refuses_another_dataset(tiny_dataset: Dataset, tmp_path: Path) -> None:
    train(opts(tiny_dataset, tmp_path / "run", config="tiny-recon", images=8))
    other = render_dataset(tmp_path / "other", [48, 55, 60], notes_per_pitch=2, seed=6)
    with pytest.raises(InputError, match="not the dataset"):
        train(opts(other, tmp_path / "run", config="tiny-recon", images=16, resume=True))


@pytest.mark.parametrize("config", ["tiny", "tiny-recon"])
def test_bfloat16_autocast_trains_a_tiny_config_close_to_float32(
        tiny_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        config: str) -> None:
    """bfloat16 training (the CPU's support simulated: slow here, but the same code path as on
    AMX): finite losses, logged precision, and really in bfloat16 (its losses differ from a
    float32 run of the same seed) yet close to float32."""
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    logs = {}
    for precision in ("bfloat16", "float32"):
        out = train(opts(tiny_dataset, tmp_path / precision, config=config, images=16,
                         precision=precision))
        logs[precision] = [json.loads(line) for line in
                           (out / "train" / "log.jsonl").read_text().splitlines()]
        assert json.loads((out / "model.json").read_text())["provenance"]["precision"] == \
            precision
    key = "loss" if config == "tiny-recon" else "g_loss"
    half, full = ([r[key] for r in logs[p]] for p in ("bfloat16", "float32"))
    assert all(r["precision"] == "bfloat16" for r in logs["bfloat16"])
    assert np.isfinite(half).all() and half != full
    np.testing.assert_allclose(half[0], full[0], rtol=0.05, atol=0.05)


def test_training_precision_auto_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "0")  # a CPU without AVX512-BF16 / AMX
    assert resolve_train_precision("auto", "cpu") == torch.float32
    assert resolve_train_precision("float32", "cpu") == torch.float32
    with pytest.raises(InputError, match="AVX512-BF16"):
        resolve_train_precision("bfloat16", "cpu")
    with pytest.raises(InputError, match="loss scaling"):
        resolve_train_precision("float16", "cpu")
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert resolve_train_precision("auto", "cpu") == torch.bfloat16
    assert resolve_train_precision("auto", "meta") == torch.float32


def test_bench_train_reports_each_precision(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``ganspacesynth bench-train``: one full-resolution row per precision, in the precision
    asked (what runs in bfloat16 is simulated here), and bad values refused."""
    from ganspace.cli import main

    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert main(["bench-train", "--config", "tiny-recon", "--precision", "float32,bfloat16",
                 "--steps", "1", "--device", "cpu", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["rows"]) == ["float32", "bfloat16"]
    assert [r["dtype"] for r in report["rows"].values()] == ["float32", "bfloat16"]
    assert all(r["images_per_s"] > 0 for r in report["rows"].values())
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert main(["bench-train", "--config", "tiny-recon", "--precision", "bfloat16",
                 "--device", "cpu"]) == 2
    assert "AVX512-BF16" in capsys.readouterr().err
