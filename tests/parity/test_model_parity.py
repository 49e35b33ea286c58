"""Public model API on Magenta's fixture: audio parity, native format round trip, input errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import rel_err

from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.model import GANSynthModel
from ganspace.errors import CheckpointError, InputError, ModelFormatError
from ganspace.formats import load_model, magenta

AUDIO_TOL = 1e-3  # relative to the reference's max abs


@pytest.fixture(scope="module")
def ref(magenta_small):
    return dict(np.load(magenta_small / "reference_io.npz"))


@pytest.fixture(scope="module")
def small(magenta_small) -> GANSynthModel:
    return load_model(magenta_small, device="cpu")


def test_facts(small):
    assert small.latent_size == 32
    assert small.pitches == list(range(24, 85))
    assert (small.sample_rate, small.audio_length) == (16000, 64000)
    assert small.config.progress == 6.0
    assert small.provenance["global_step"] == 11_000_000
    assert small.device.type == "cpu"


def test_audio_matches_magenta(small, ref):
    audio = small.generate(ref["z"], ref["pitches"])
    assert audio.dtype == np.float32 and audio.shape == (4, 64000)
    assert rel_err(audio, ref["audio_api"]) <= AUDIO_TOL
    assert rel_err(audio, ref["waves_graph"][..., 0]) <= AUDIO_TOL


def test_odd_batch_and_chunking_match_magenta(small, ref):
    old = small.batch_size
    small.batch_size = 4  # 6 notes -> chunks of 4 and 2
    try:
        audio = small.generate(ref["z6"], ref["pitches6"])
    finally:
        small.batch_size = old
    assert rel_err(audio, ref["audio_api6"]) <= AUDIO_TOL


def test_fade_in_stage_audio_matches_magenta(magenta_small, ref):
    ck = magenta.find_checkpoint(magenta_small)
    cfg = GeneratorConfig.from_hparams(ck.hparams, len(ck.pitches), ck.num_blocks,
                                       float(ref["trans_progress"]))
    gen = Generator(cfg)
    gen.load_state_dict(magenta.generator_state_dict(ck))
    model = GANSynthModel(gen, ck.hparams, ck.pitches, device="cpu")
    audio = model.generate(ref["z"], ref["pitches"])
    assert rel_err(audio, ref["trans_waves_graph"][..., 0]) <= AUDIO_TOL


def test_native_round_trip(small, ref, tmp_path):
    out = small.save(tmp_path / "native")
    meta = json.loads((out / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["provenance"]["global_step"] == 11_000_000
    native = load_model(out, device="cpu")
    assert native.pitches == small.pitches and native.config == small.config
    assert native.fingerprint == small.fingerprint
    for k, v in small.generator.state_dict().items():
        assert torch.equal(native.generator.state_dict()[k], v)
    np.testing.assert_array_equal(native.generate(ref["z"], ref["pitches"]),
                                  small.generate(ref["z"], ref["pitches"]))


def test_native_unknown_version(small, tmp_path):
    out = small.save(tmp_path / "v")
    meta = json.loads((out / "model.json").read_text())
    meta["format_version"] = 99
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="format version 99 is not supported"):
        load_model(out)


def test_native_missing_or_broken_weights(small, tmp_path):
    out = small.save(tmp_path / "w")
    (out / "generator.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFormatError, match="generator.safetensors"):
        load_model(out)


def test_truncated_checkpoint_is_reported(magenta_small, tmp_path):
    copy = tmp_path / "ck"
    shutil.copytree(magenta_small, copy)
    data = next((copy / "stage_00012").glob("*.data-*"))
    data.chmod(0o644)
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated|beyond"):
        load_model(copy)


def test_missing_ema_tensor_is_reported(magenta_small, tmp_path, monkeypatch):
    from ganspace.formats import tfcheckpoint

    real_keys = tfcheckpoint.BundleReader.keys
    dropped = ("Generator/progressive_gan_generator/progressive_gan_block_3/conv1/conv2d/kernel/"
               "ExponentialMovingAverage")
    monkeypatch.setattr(tfcheckpoint.BundleReader, "keys",
                        lambda self: [k for k in real_keys(self) if k != dropped])
    with pytest.raises(CheckpointError, match="block_3/conv1"):
        load_model(magenta_small)


def test_input_errors(small):
    z = small.random_z(2, seed=0)
    with pytest.raises(InputError, match=r"pitch 90 is not one .*; valid pitches: 24-84"):
        small.generate(z, 90)
    with pytest.raises(InputError, match="z has width 31, but this model's latent size is 32"):
        small.generate(np.zeros((2, 31)), 60)
    bad = z.copy()
    bad[1, 3] = np.nan
    with pytest.raises(InputError, match=r"NaN or inf \(first at row 1, column 3\)"):
        small.generate(bad, 60)
    bad[1, 3] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        small.generate(bad, 60)
    with pytest.raises(InputError, match="give one pitch or 2 pitches"):
        small.generate(z, [60, 61, 62])
    with pytest.raises(InputError, match="pitch must be an integer"):
        small.label_for("C4")
    with pytest.raises(InputError, match="only offered on CUDA"):
        GANSynthModel(small.generator, small.hparams, small.pitches, device="cpu",
                      precision="float16")


def test_random_z_is_seeded(small):
    a, b = small.random_z(3, seed=5), small.random_z(3, seed=5)
    assert a.dtype == np.float32 and a.shape == (3, 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, small.random_z(3, seed=6))


def test_empty_batch(small):
    assert small.generate(np.zeros((0, 32)), 60).shape == (0, 64000)


def test_activations_public_api_matches_magenta(small, ref):
    act = small.activations(ref["z"], ref["pitches"], "conv0")
    assert tuple(act.shape) == (4, 2, 16, 32)  # NHWC, the layout of direction components
    want = ref["act__progressive_gan_block_1__conv0"]
    assert np.abs(act.cpu().numpy() - want).max() <= 1e-4 * np.abs(want).max()
    with pytest.raises(InputError, match="unknown layer"):
        small.activations(ref["z"], 60, "conv9")
