"""Directions file format, legacy pickle import, and GANSpace edits in model.generate."""

from __future__ import annotations

import gc
import json
import os
import pickle
import weakref
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from ganspace.engine import audio
from ganspace.engine.model import random_model
from ganspace.errors import InputError, ModelFormatError
from ganspace.formats.legacy_pickle import import_legacy_pickle, restricted_loads
from ganspace.space.directions import FORMAT_NAME, Directions, load_directions, save_directions
from ganspace.space.pca import compute_directions

K, H, W, C = 6, 2, 4, 3


def random_directions(seed: int = 0, fingerprint: str | None = "abc") -> Directions:
    rng = np.random.default_rng(seed)
    comp = rng.standard_normal((K, H, W, C)).astype(np.float32)
    comp /= np.linalg.norm(comp.reshape(K, -1), axis=1)[:, None, None, None]
    stdev = np.sort(rng.uniform(0.1, 2.0, K))[::-1].astype(np.float32)
    var = stdev.astype(np.float64) ** 2
    return Directions("conv1", comp, stdev, (var / (var.sum() * 1.5)).astype(np.float32),
                      rng.standard_normal((H, W, C)).astype(np.float32), fingerprint,
                      {"estimator": "cov", "samples": 100, "seed": seed, "pitch": 32,
                       "total_variance": float(var.sum() * 1.5)})


@pytest.fixture(scope="module")
def tiny_directions(tiny_model):
    return compute_directions(tiny_model, "conv0", 300, seed=0, components=None, batch=100)


# ---- file format -------------------------------------------------------------------------------
def test_round_trip_float32_is_exact(tmp_path):
    d = random_directions()
    path = save_directions(d, tmp_path / "sub" / "d.safetensors", dtype="float32")
    e = load_directions(path)
    assert e.layer == "conv1" and e.fingerprint == "abc"
    for name in ("components", "stdev", "var_ratio", "mean"):
        got = getattr(e, name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, getattr(d, name))
    assert e.meta == {**d.meta, "format_version": 1}
    assert e.count == K and e.shape == (H, W, C)


def test_round_trip_float16_components(tmp_path):
    d = random_directions()
    e = load_directions(save_directions(d, tmp_path / "d.safetensors"))  # default float16
    assert e.components.dtype == np.float32
    np.testing.assert_allclose(e.components, d.components, rtol=1e-3, atol=1e-4)
    assert not np.array_equal(e.components, d.components)  # really stored as float16
    np.testing.assert_array_equal(e.stdev, d.stdev)
    np.testing.assert_array_equal(e.mean, d.mean)
    s16 = (tmp_path / "d.safetensors").stat().st_size
    s32 = save_directions(d, tmp_path / "e.safetensors", "float32").stat().st_size
    assert s16 < s32


def test_metadata_is_in_the_safetensors_header(tmp_path):
    from safetensors import safe_open

    path = save_directions(random_directions(), tmp_path / "d.safetensors")
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == "1"
    header = json.loads(meta["directions"])
    assert header["layer"] == "conv1" and header["fingerprint"] == "abc"
    assert header["meta"]["samples"] == 100


def _write_raw(path, tensors, metadata):
    save_file(tensors, str(path), metadata=metadata)
    return path


def _arrays(d: Directions) -> dict[str, np.ndarray]:
    return {"components": d.components, "stdev": d.stdev, "var_ratio": d.var_ratio,
            "mean": d.mean}


def _header(d: Directions, version: str = "1") -> dict[str, str]:
    return {"format": FORMAT_NAME, "format_version": version,
            "directions": json.dumps({"layer": d.layer, "fingerprint": None, "meta": {}})}


def test_unknown_version_refused(tmp_path):
    d = random_directions()
    path = _write_raw(tmp_path / "v2.safetensors", _arrays(d), _header(d, "2"))
    with pytest.raises(ModelFormatError, match="version 2 is not supported"):
        load_directions(path)


def test_missing_tensor_refused(tmp_path):
    d = random_directions()
    arrays = _arrays(d)
    del arrays["mean"]
    path = _write_raw(tmp_path / "m.safetensors", arrays, _header(d))
    with pytest.raises(ModelFormatError, match="missing tensors mean"):
        load_directions(path)


def test_inconsistent_shapes_refused(tmp_path):
    d = random_directions()
    arrays = _arrays(d)
    arrays["stdev"] = arrays["stdev"][:-1].copy()
    path = _write_raw(tmp_path / "s.safetensors", arrays, _header(d))
    with pytest.raises(ModelFormatError, match=r"s\.safetensors: stdev must be \[6\]"):
        load_directions(path)
    arrays = _arrays(d)
    arrays["mean"] = np.zeros((H, W, C + 1), np.float32)
    path = _write_raw(tmp_path / "m.safetensors", arrays, _header(d))
    with pytest.raises(ModelFormatError, match="mean must be"):
        load_directions(path)


def test_not_a_directions_file(tmp_path, tiny_model_dir):
    with pytest.raises(ModelFormatError, match="not a ganspacesynth-directions file"):
        load_directions(tiny_model_dir / "generator.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(ModelFormatError, match="not a readable directions file"):
        load_directions(junk)
    with pytest.raises(ModelFormatError, match="not a readable directions file"):
        load_directions(tmp_path / "absent.safetensors")


def test_constructor_validates():
    d = random_directions()
    with pytest.raises(ModelFormatError, match="components must be"):
        Directions("conv0", d.components[0], d.stdev, d.var_ratio, d.mean)
    with pytest.raises(ModelFormatError, match="NaN"):
        Directions("conv0", d.components, d.stdev * np.nan, d.var_ratio, d.mean)
    with pytest.raises(ModelFormatError, match="negative"):
        Directions("conv0", d.components, -d.stdev, d.var_ratio, d.mean)


def test_identity_semantics():
    a, b = random_directions(), random_directions()
    assert a != b and a == a  # compared by identity even with equal contents
    assert len({a, b}) == 2
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None


# ---- compatibility -----------------------------------------------------------------------------
def test_check_compatible(tiny_model, tiny_directions):
    tiny_directions.check_compatible(tiny_model)
    other = random_model(seed=1)
    with pytest.raises(InputError, match="not this one"):
        tiny_directions.check_compatible(other)
    wrong = Directions("conv0", np.zeros((1, 2, 16, 4), np.float32), np.ones(1), np.ones(1),
                       np.zeros((2, 16, 4), np.float32))
    with pytest.raises(InputError, match="made for another model"):
        wrong.check_compatible(tiny_model)
    unknown = Directions("conv9", wrong.components, wrong.stdev, wrong.var_ratio, wrong.mean)
    with pytest.raises(InputError, match="unknown layer"):
        unknown.check_compatible(tiny_model)


def test_generate_refuses_directions_of_another_model(tiny_directions):
    other = random_model(seed=1)
    with pytest.raises(InputError, match="not this one"):
        other.generate_specgram(other.random_z(1, 0), 32, tiny_directions, [1.0])


# ---- editing (model.generate) ------------------------------------------------------------------
def test_zero_coefficients_change_nothing_in_z_mode(tiny_model, tiny_directions):
    z = tiny_model.random_z(2, seed=5)
    plain = tiny_model.generate(z, 40)
    edited = tiny_model.generate(z, 40, tiny_directions, np.zeros(tiny_directions.count))
    np.testing.assert_array_equal(edited, plain)
    moved = tiny_model.generate(z, 40, tiny_directions, [2.0])
    assert np.abs(moved - plain).max() > 1e-3


def _manual(model, z, pitch, layer, fn):
    """Faithful generator with a hand-written layer edit, denormalised like generate_specgram."""
    labels = model.labels(pitch, len(z) if z is not None else 1)
    with torch.no_grad():
        zt = None if z is None else torch.as_tensor(z)
        tanh = model.generator(zt, labels, edit=(layer, fn))
    return audio.denormalize(tanh.permute(0, 2, 3, 1), model.hparams)


def test_z_mode_edit_adds_scaled_components(tiny_model, tiny_directions):
    d = tiny_directions
    c = np.array([1.5, -2.0, 0.5], np.float32)
    offset = ((c * d.stdev[:3]) @ d.components[:3].reshape(3, -1)).reshape(d.shape)
    off = torch.from_numpy(offset).permute(2, 0, 1)[None]  # NHWC -> NCHW
    z = tiny_model.random_z(2, seed=6)
    want = _manual(tiny_model, z, 30, "conv0", lambda act: act + off)
    got = tiny_model.generate_specgram(z, 30, d, c)
    # folded vs faithful generator: float32 rounding, amplified by the random tiny network
    torch.testing.assert_close(got, want, rtol=0, atol=1e-2)
    assert (got - tiny_model.generate_specgram(z, 30)).abs().max() > 0.5


def test_noz_zero_coefficients_is_the_mean(tiny_model, tiny_directions):
    d = tiny_directions
    mean = torch.from_numpy(d.mean).permute(2, 0, 1)[None]
    want = _manual(tiny_model, None, 32, "conv0", lambda act: mean.expand_as(act).clone())
    got = tiny_model.generate_specgram(None, 32, d, np.zeros(3))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-2)
    # noz ignores z and (pitch only enters at the input) the pitch
    torch.testing.assert_close(tiny_model.generate_specgram(None, 60, d, np.zeros(3)), got)


def test_per_row_coefficients_equal_separate_calls(tiny_model, tiny_directions):
    d = tiny_directions
    z = tiny_model.random_z(3, seed=7)
    c = np.random.default_rng(0).uniform(-2, 2, (3, 4)).astype(np.float32)
    batch = tiny_model.generate_specgram(z, 32, d, c)
    # batch-size-dependent float32 rounding is amplified by the random network: atol 1e-2,
    # while a row paired with the wrong coefficients would be off by more than 0.5
    assert (batch[0] - batch[1]).abs().max() > 0.5
    for i in range(3):
        one = tiny_model.generate_specgram(z[i : i + 1], 32, d, c[i])
        torch.testing.assert_close(batch[i : i + 1], one, rtol=0, atol=1e-2)
    noz = tiny_model.generate_specgram(None, 32, d, c)
    assert noz.shape[0] == 3
    torch.testing.assert_close(noz[1:2], tiny_model.generate_specgram(None, 32, d, c[1]),
                               rtol=0, atol=1e-2)


def test_fewer_coefficients_are_zero_padded(tiny_model, tiny_directions):
    d = tiny_directions
    z = tiny_model.random_z(1, seed=8)
    short = tiny_model.generate_specgram(z, 32, d, [1.0, -1.0])
    padded = np.zeros(d.count, np.float32)
    padded[:2] = [1.0, -1.0]
    torch.testing.assert_close(short, tiny_model.generate_specgram(z, 32, d, padded),
                               rtol=0, atol=1e-3)


def test_too_many_coefficients_refused(tiny_model, tiny_directions):
    d = tiny_directions
    with pytest.raises(InputError, match="hold only 256"):
        tiny_model.generate_specgram(tiny_model.random_z(1, 0), 32, d, np.zeros(d.count + 1))
    with pytest.raises(InputError, match="NaN"):
        tiny_model.generate_specgram(tiny_model.random_z(1, 0), 32, d, [np.nan])


# ---- legacy pickles ----------------------------------------------------------------------------
def _legacy_dict(d: Directions) -> dict:
    """A dict like the original gansynth_ganspace wrote (float32 arrays)."""
    return {"layer": d.layer, "estimator": "ipca", "comp": d.components.copy(),
            "stdev": d.stdev.copy(), "var_ratio": d.var_ratio.copy(),
            "global_mean": d.mean.copy()}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_pickle_round_trip(tmp_path, tiny_model, tiny_directions, protocol):
    path = tmp_path / f"tiny_conv0_ipca_300_p{protocol}.pickle"
    path.write_bytes(pickle.dumps(_legacy_dict(tiny_directions), protocol=protocol))
    d = import_legacy_pickle(path)
    assert d.layer == "conv0" and d.fingerprint is None
    assert d.meta["estimator"] == "ipca" and d.meta["source_file"] == path.name
    np.testing.assert_array_equal(d.components, tiny_directions.components)
    np.testing.assert_array_equal(d.stdev, tiny_directions.stdev)
    np.testing.assert_array_equal(d.var_ratio, tiny_directions.var_ratio)
    np.testing.assert_array_equal(d.mean, tiny_directions.mean)
    # with a model: checked and fingerprinted; the result edits like the original directions
    e = import_legacy_pickle(path, tiny_model)
    assert e.fingerprint == tiny_model.fingerprint
    out = save_directions(e, tmp_path / "imported.safetensors", "float32")
    z = tiny_model.random_z(1, seed=1)
    torch.testing.assert_close(tiny_model.generate_specgram(z, 32, load_directions(out), [1.0]),
                               tiny_model.generate_specgram(z, 32, tiny_directions, [1.0]))


def test_legacy_pickle_samples_from_name(tmp_path, tiny_directions):
    path = tmp_path / "pruu_conv0_ipca_4194304.pickle"
    path.write_bytes(pickle.dumps(_legacy_dict(tiny_directions)))
    assert import_legacy_pickle(path).meta["samples"] == 4194304


def test_legacy_pickle_wrong_model(tmp_path, tiny_directions):
    path = tmp_path / "x.pickle"
    legacy = _legacy_dict(tiny_directions)
    legacy["comp"] = legacy["comp"][..., :4].copy()
    legacy["global_mean"] = legacy["global_mean"][..., :4].copy()
    path.write_bytes(pickle.dumps(legacy))
    with pytest.raises(InputError, match="another model"):
        import_legacy_pickle(path, random_model())


def test_legacy_pickle_bad_content(tmp_path, tiny_directions):
    legacy = _legacy_dict(tiny_directions)
    del legacy["stdev"]
    path = tmp_path / "missing.pickle"
    path.write_bytes(pickle.dumps(legacy))
    with pytest.raises(ModelFormatError, match="missing keys stdev"):
        import_legacy_pickle(path)
    legacy = _legacy_dict(tiny_directions)
    legacy["stdev"] = legacy["stdev"][:3]
    path.write_bytes(pickle.dumps(legacy))
    with pytest.raises(ModelFormatError, match="stdev must be"):
        import_legacy_pickle(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelFormatError, match="expected a dict"):
        import_legacy_pickle(path)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ModelFormatError):
        import_legacy_pickle(path)


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        import builtins

        return (builtins.eval, (self.code,))


def test_malicious_pickles_are_refused_without_running(tmp_path, tiny_directions):
    marker = tmp_path / "pwned"
    attacks = {
        "posix": _System(f"touch {marker}"),
        "builtins.eval": _Eval(f"open({str(marker)!r}, 'w').close()"),
    }
    for name, attack in attacks.items():
        legacy = _legacy_dict(tiny_directions)
        legacy["comp"] = attack  # buried inside an otherwise valid file
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(pickle.dumps(legacy))
        with pytest.raises(ModelFormatError, match=f"refused global {name}"):
            import_legacy_pickle(path)
        assert not marker.exists()
    with pytest.raises(ModelFormatError, match="refused global fractions.Fraction"):
        restricted_loads(pickle.dumps(np.array([Fraction(1, 2)], dtype=object)))
    with pytest.raises(ModelFormatError, match="refused _codecs.encode"):
        restricted_loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00base64"
                         b"\x86R.")
