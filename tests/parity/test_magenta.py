"""Tests of Magenta GANSynth folder handling against the fixture saved by Magenta 2.1.4."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tfcheckpoint import FIXTURE, PREFIX, read_bundle, write_bundle

from ganspace.engine.hparams import MAGENTA_DEFAULTS, compute_progress
from ganspace.errors import CheckpointError
from ganspace.formats.magenta import (
    find_checkpoint,
    generator_state_dict,
    load_hparams,
    load_pitches,
)

REFERENCE = np.load(FIXTURE / "reference_io.npz")
GEN = "Generator/progressive_gan_generator/progressive_gan_block_{}/{}/{}/ExponentialMovingAverage"


def copy_model(tmp_path: Path, stage: str = "stage_00012") -> Path:
    """Copy the fixture folder to ``tmp_path/model`` (writable) with its stage renamed."""
    folder = tmp_path / "model"
    (folder / stage).mkdir(parents=True)
    shutil.copyfile(FIXTURE / "experiment.json", folder / "experiment.json")
    for src in PREFIX.parent.iterdir():
        shutil.copyfile(src, folder / stage / src.name)
    return folder


def edit_experiment(folder: Path, **changes: object) -> None:
    path = folder / "experiment.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_fixture_checkpoint() -> None:
    ckpt = find_checkpoint(FIXTURE)
    # the state file names /home/user/gansynth/...: resolved by basename
    assert "/home/user" in (PREFIX.parent / "checkpoint").read_text()
    assert ckpt.prefix == PREFIX and ckpt.stage_dir == PREFIX.parent
    assert (ckpt.stage_id, ckpt.num_blocks) == (12, 7)
    assert ckpt.global_step == int(REFERENCE["final_global_step"]) == 11_000_000
    assert ckpt.progress == float(REFERENCE["progress"]) == 6.0
    assert ckpt.pitches == list(range(24, 85))
    assert ckpt.hparams["fmap_base"] == 1024 and ckpt.hparams["latent_vector_size"] == 32
    assert set(MAGENTA_DEFAULTS) <= set(ckpt.hparams)


def test_generator_state_dict_reads_ema_in_torch_layout() -> None:
    state = generator_state_dict(find_checkpoint(FIXTURE))
    assert len(state) == 7 * 6
    channels = [32, 32, 32, 32, 32, 16, 8]
    ema = read_bundle(PREFIX)
    for k in range(1, 8):
        cout, cin = channels[k - 1], channels[max(k - 2, 0)]
        kernel_hw = (2, 16) if k == 1 else (3, 3)
        cin = 32 + 61 if k == 1 else cin
        assert state[f"blocks.{k - 1}.conv0.weight"].shape == (cout, cin, *kernel_hw)
        assert state[f"blocks.{k - 1}.conv1.weight"].shape == (cout, cout, 3, 3)
        assert state[f"to_rgb.{k - 1}.weight"].shape == (2, cout, 1, 1)
        assert state[f"to_rgb.{k - 1}.bias"].shape == (2,)
        for layer in ("conv0", "conv1", "to_rgb"):
            name = f"to_rgb.{k - 1}" if layer == "to_rgb" else f"blocks.{k - 1}.{layer}"
            kernel = ema[GEN.format(k, layer, "conv2d/kernel")]
            weight = state[f"{name}.weight"]
            assert weight.dtype == torch.float32 and weight.is_contiguous()
            np.testing.assert_array_equal(weight.numpy(), kernel.transpose(3, 2, 0, 1))
            np.testing.assert_array_equal(
                state[f"{name}.bias"].numpy(), ema[GEN.format(k, layer, "bias")]
            )
    raw = ema[GEN.format(7, "conv1", "conv2d/kernel").removesuffix("/ExponentialMovingAverage")]
    assert not np.array_equal(state["blocks.6.conv1.weight"].numpy(), raw.transpose(3, 2, 0, 1))


def test_missing_ema_tensor_is_named(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    missing = GEN.format(6, "to_rgb", "bias")
    tensors = {k: v for k, v in read_bundle(PREFIX).items() if k != missing}
    write_bundle(folder / "stage_00012" / PREFIX.name, tensors)
    ckpt = find_checkpoint(folder)
    with pytest.raises(CheckpointError, match="lacks generator EMA tensors") as info:
        generator_state_dict(ckpt)
    assert missing in str(info.value)


def test_windows_state_path_resolved_by_basename(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    (folder / "stage_00012" / "checkpoint").write_text(
        'model_checkpoint_path: "C:\\\\runs\\\\stage_00012\\\\model.ckpt-11000000"\n'
    )
    assert find_checkpoint(folder).prefix == folder / "stage_00012" / PREFIX.name


@pytest.mark.parametrize("state", ["none", "stale"])
def test_fallback_to_highest_step_index(tmp_path: Path, state: str) -> None:
    folder = copy_model(tmp_path)
    stage = folder / "stage_00012"
    # a second bundle, numerically lower but lexicographically higher
    for src in PREFIX.parent.glob(PREFIX.name + ".*"):
        shutil.copyfile(src, stage / src.name.replace("11000000", "9000000"))
    if state == "none":
        (stage / "checkpoint").unlink()
    else:
        (stage / "checkpoint").write_text('model_checkpoint_path: "/x/model.ckpt-123"\n')
    assert find_checkpoint(folder).prefix == stage / PREFIX.name


def test_newest_stage_decides_blocks_and_progress(tmp_path: Path) -> None:
    folder = copy_model(tmp_path, stage="stage_00009")
    (folder / "stage_00003").mkdir()
    ckpt = find_checkpoint(folder)
    assert (ckpt.stage_id, ckpt.num_blocks) == (9, 6)
    assert ckpt.progress == 5.0  # 11,000,000 images is past the 6-block cap


def test_no_stage_folder(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    shutil.rmtree(folder / "stage_00012")
    with pytest.raises(CheckpointError, match="no stage_"):
        find_checkpoint(folder)


def test_missing_experiment_json(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    (folder / "experiment.json").unlink()
    with pytest.raises(CheckpointError, match="experiment.json is missing"):
        find_checkpoint(folder)


def test_defaults_merge_under_experiment_json(tmp_path: Path) -> None:
    (tmp_path / "experiment.json").write_text(json.dumps({"fmap_base": 4096, "extra": 1}))
    hparams = load_hparams(tmp_path)
    assert hparams["fmap_base"] == 4096 and hparams["extra"] == 1
    assert hparams["fmap_max"] == 128 and hparams["latent_vector_size"] == 256
    assert (hparams["start_height"], hparams["start_width"]) == (4, 8)
    assert hparams["stable_stage_num_images"] == 32 and hparams["train_time_limit"] is None
    hparams["batch_size_schedule"].append(1)
    assert MAGENTA_DEFAULTS["batch_size_schedule"] == [16, 8]


def test_pitches_from_meta_json(tmp_path: Path) -> None:
    meta = {"guitar_32": {"pitch": 32, "velocity": 100}, "bass_32": {"pitch": 32}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert load_pitches(tmp_path) == [32]
    meta = {"a_60": {"pitch": 60}, "b_48": {"pitch": 48}, "c_60": {"pitch": 60}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert load_pitches(tmp_path) == [48, 60]
    (tmp_path / "meta.json").write_text(json.dumps({"a": {"note": 3}}))
    with pytest.raises(CheckpointError, match="meta.json"):
        load_pitches(tmp_path)


def test_meta_json_used_by_find_checkpoint(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    (folder / "meta.json").write_text(json.dumps({"x_32": {"pitch": 32}}))
    assert find_checkpoint(folder).pitches == [32]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (int(REFERENCE["final_global_step"]), float(REFERENCE["progress"])),
        (int(REFERENCE["trans_global_step"]), float(REFERENCE["trans_progress"])),
        (9_200_000, 5.5),
        (0, 0.0),
        (800_000 + 400_000, 0.5),
        (1_600_000, 1.0),
        (10**12, 6.0),
    ],
)
def test_progress_from_global_step(step: int, expected: float) -> None:
    hparams = load_hparams(FIXTURE)
    assert compute_progress(step, hparams, num_blocks=7) == expected


def test_progress_without_progressive_training() -> None:
    hparams = {**load_hparams(FIXTURE), "train_progressive": False}
    assert compute_progress(0, hparams, num_blocks=7) == 6.0
    assert compute_progress(0, hparams, num_blocks=6) == 5.0


def test_progress_from_train_time(tmp_path: Path) -> None:
    # 13 stages of equal length over 13 s: transition stage i runs from i to i + 1 seconds
    hparams = {**load_hparams(FIXTURE), "train_time_limit": 13.0}
    progress = [compute_progress(0, hparams, 7, train_time=t) for t in (0.0, 1.5, 3.25, 99.0)]
    assert progress == [0.0, 0.5, 1.25, 6.0]
    assert compute_progress(0, hparams, 3, train_time=99.0) == 2.0
    with pytest.raises(CheckpointError, match="train time"):
        compute_progress(0, hparams, 7)
    folder = copy_model(tmp_path)
    edit_experiment(folder, train_time_limit=100.0)
    assert find_checkpoint(folder).progress == 0.0  # the fixture's train-time Variable is 0
