"""The public model object: a generator with its pitches, hparams and audio pipeline; generate
audio, spectrograms and layer activations, edited along GANSpace directions.

Models are read by :func:`ganspace.formats.load_model`; :func:`random_model` makes one with
random weights for tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from ganspace.engine import audio
from ganspace.engine.generator import FastGenerator, Generator, GeneratorConfig
from ganspace.engine.hparams import NSYNTH_PITCHES, published_hparams
from ganspace.engine.latent import check_latents
from ganspace.engine.precision import (
    PRECISIONS,
    cpu_bf16_hardware,
    precision_name,
    resolve_precision,
)
from ganspace.errors import InputError, ModelFormatError

DEFAULT_PITCH = 32
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
"""torch.compile modes :meth:`GANSynthModel.compile` takes (``reduce-overhead`` adds CUDA
graphs on CUDA)."""
#: Architectures of :func:`random_model`: overrides of the published hparams.
RANDOM_SIZES: dict[str, dict[str, Any]] = {
    "published": {},  # Magenta's mel_prog_hires: 256 latent, 7.3 M generator parameters
    "tiny": {"latent_vector_size": 8, "fmap_base": 1024, "fmap_max": 8},  # 8 channels per block
}


class DirectionsLike(Protocol):
    """What :meth:`GANSynthModel.generate` needs from a directions object (see
    ``ganspace.space.directions.Directions``)."""

    layer: str
    components: np.ndarray  # [K, H, W, C]
    stdev: np.ndarray  # [K]
    mean: np.ndarray  # [H, W, C]
    fingerprint: str | None

    def check_compatible(self, model: GANSynthModel) -> None:
        """Raise InputError unless these directions fit ``model``."""


def describe_pitches(pitches: Sequence[int]) -> str:
    """Compact text for a pitch set: ``24-84`` for a run, ``32`` or ``24-30, 40``."""
    parts: list[str] = []
    ps = sorted(pitches)
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        parts.append(str(ps[i]) if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return ", ".join(parts)


def default_pitch(pitches: Sequence[int]) -> int:
    """The pitch used when none is given: 32 (the original GANSpaceSynth's fixed pitch) when the
    model knows it, else the middle of its sorted pitches."""
    ps = sorted(pitches)
    return DEFAULT_PITCH if DEFAULT_PITCH in ps else ps[len(ps) // 2]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class GANSynthModel:
    """A loaded GANSynth generator with its audio pipeline.

    Attributes:
        latent_size: width of z.
        pitches: sorted MIDI pitches the model knows (label i is ``pitches[i]``).
        sample_rate: Hz (16000).
        audio_length: samples per note (64000).
        device: where generation runs.
        precision: the generator's precision name (``float32``, ``bfloat16``, ``float16``; what
            ``auto`` resolved to on this device, see :mod:`ganspace.engine.precision`).
        hparams: Magenta-style hyper-parameters.
        generator: the trainable :class:`Generator` (eval mode).
        fast_generator: the folded :class:`FastGenerator` used for inference (same weights).
        provenance: where the weights came from (source path, global_step, stage, ...).
        batch_size: most notes per forward pass (bounds memory; larger requests are chunked).
    """

    def __init__(
        self,
        generator: Generator,
        hparams: dict[str, Any],
        pitches: Sequence[int],
        provenance: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        precision: str = "float32",
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("device cuda was asked for, but no CUDA GPU is available")
        self.precision = precision_name(resolve_precision(precision, self.device))
        self.hparams = dict(hparams)
        self.pitches = sorted(int(p) for p in pitches)
        if len(self.pitches) != generator.cfg.num_pitches:
            raise ModelFormatError(
                f"{len(self.pitches)} pitches given but the generator has a one-hot of "
                f"{generator.cfg.num_pitches}"
            )
        if generator.cfg.output_size != (audio.N_FRAMES, audio.N_BINS):
            raise ModelFormatError(
                f"generator output {generator.cfg.output_size} is not the {audio.N_FRAMES}x"
                f"{audio.N_BINS} mel spectrogram this audio pipeline turns into sound"
            )
        self.provenance = dict(provenance or {})
        self.generator = generator.to(self.device).eval()
        self.fast_generator = FastGenerator.from_generator(
            self.generator, PRECISIONS[self.precision]).to(self.device)
        if self.device.type == "cpu" and (self.precision == "float32" or cpu_bf16_hardware()):
            self.fast_generator.enable_prepack()  # oneDNN packs bfloat16 only where it runs it
        self.batch_size = 256 if self.device.type == "cuda" else 8
        self.compile_mode: str | None = None
        self._compiled: Callable[..., Tensor] | None = None
        self._fingerprint: str | None = None
        self._dir_cache: weakref.WeakKeyDictionary[
            DirectionsLike, tuple[Tensor, Tensor, Tensor]] = weakref.WeakKeyDictionary()

    def compile(self, mode: str = "default") -> None:
        """Run the folded generator through ``torch.compile`` (inductor) from now on.

        The first call at each new batch size compiles (tens of seconds on a CPU; later
        processes reuse torch's on-disk cache); generation with a layer edit (directions) stays
        eager. ``mode``: one of :data:`COMPILE_MODES`.
        """
        if mode not in COMPILE_MODES:
            raise InputError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got "
                             f"{mode!r}")
        self.fast_generator.disable_prepack()  # inductor packs the weights itself
        self._compiled = torch.compile(self.fast_generator,
                                       mode=None if mode == "default" else mode)
        self.compile_mode = mode

    # ---- facts -------------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        """Width of z."""
        return self.generator.cfg.latent_size

    @property
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""
        return int(self.hparams.get("sample_rate", audio.SAMPLE_RATE))

    @property
    def audio_length(self) -> int:
        """Samples per generated note."""
        return int(self.hparams.get("audio_length", audio.AUDIO_LENGTH))

    @property
    def config(self) -> GeneratorConfig:
        """The generator's architecture."""
        return self.generator.cfg

    @property
    def fingerprint(self) -> str:
        """16-hex-digit digest of the generator weights (directions record it)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, t in sorted(self.generator.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def with_precision(self, precision: str) -> GANSynthModel:
        """This model in another precision (``auto`` resolved on :attr:`device`): ``self`` when it
        already runs in it, else a new model sharing this one's generator weights."""
        if precision_name(resolve_precision(precision, self.device)) == self.precision:
            return self
        return GANSynthModel(self.generator, self.hparams, self.pitches, self.provenance,
                             self.device, precision)

    def layer_names(self) -> list[str]:
        """Generator layer names (``conv0``, ``conv1``, ``conv0_2``, ...)."""
        return self.config.layer_names()

    def layer_shape(self, name: str) -> tuple[int, int, int]:
        """(H, W, C) of a layer's output."""
        return self.config.layer_shape(name)

    # ---- inputs ------------------------------------------------------------------------------
    def label_for(self, pitch: int) -> int:
        """Index of a MIDI pitch in :attr:`pitches`; InputError listing the valid ones."""
        try:
            p = int(pitch)
        except (TypeError, ValueError):
            raise InputError(f"pitch must be an integer, got {pitch!r}") from None
        if p != pitch or p not in self.pitches:
            raise InputError(
                f"pitch {pitch} is not one this model knows; valid pitches: "
                f"{describe_pitches(self.pitches)}"
            )
        return self.pitches.index(p)

    def labels(self, pitches: int | Sequence[int] | np.ndarray, n: int) -> Tensor:
        """Long tensor [n] of labels for one pitch (broadcast) or n pitches."""
        ps = np.atleast_1d(np.asarray(pitches))
        if ps.ndim != 1 or len(ps) not in (1, n):
            raise InputError(f"give one pitch or {n} pitches, got {len(ps)}")
        labels = [self.label_for(p) for p in ps.tolist()]
        if len(labels) == 1:
            labels *= n
        return torch.tensor(labels, dtype=torch.long, device=self.device)

    def random_z(self, n: int, seed: int | None = None) -> np.ndarray:
        """Standard-normal latents (Magenta's ``generate_z``): float32 [n, latent_size]."""
        if n < 0:
            raise InputError(f"count must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, self.latent_size)).astype(np.float32)

    # ---- generation --------------------------------------------------------------------------
    def _direction_tensors(self, d: DirectionsLike) -> tuple[Tensor, Tensor, Tensor]:
        """Cached device copies: components [K, H*W*C], stdev [K], mean [H*W*C] (NHWC order)."""
        cached = self._dir_cache.get(d)
        if cached is None:
            d.check_compatible(self)
            comp = np.asarray(d.components)
            comp_t, stdev_t, mean_t = (
                torch.as_tensor(a, dtype=torch.float32, device=self.device)
                for a in (comp.reshape(len(comp), -1), d.stdev, np.asarray(d.mean).reshape(-1)))
            cached = comp_t, stdev_t, mean_t
            self._dir_cache[d] = cached
        return cached

    def _offsets(self, d: DirectionsLike, coefficients: ArrayLike, n: int) -> Tensor:
        """``(c * stdev) @ components`` as one matrix product -> [n or 1, H*W*C]."""
        comp, stdev, _ = self._direction_tensors(d)
        c = np.asarray(coefficients, dtype=np.float32)
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[0] not in (1, n):
            raise InputError(f"coefficients must be [k] or [{n}, k], got shape {list(c.shape)}")
        k = c.shape[1]
        if k > len(stdev):
            raise InputError(f"{k} coefficients given but the directions hold only {len(stdev)}")
        if not np.isfinite(c).all():
            raise InputError("coefficients contain NaN or inf")
        ct = torch.as_tensor(c, device=self.device)
        return (ct * stdev[:k]) @ comp[:k]

    def _latents(self, z: ArrayLike) -> Tensor:
        """Checked latents as a float32 tensor [N, latent_size] on :attr:`device`."""
        return torch.as_tensor(check_latents(z, self.latent_size), device=self.device)

    @torch.inference_mode()
    def activations(self, z: ArrayLike, pitches: int | Sequence[int] | np.ndarray,
                    layer: str) -> Tensor:
        """Output of ``layer`` for latents z [N, latent_size] at one pitch or N pitches:
        float32 [N, H, W, C] (NHWC, the layout of direction components) on :attr:`device`;
        later layers are not computed."""
        zt = self._latents(z)
        act = self.fast_generator.activations(zt, self.labels(pitches, zt.shape[0]), layer)
        return act.permute(0, 2, 3, 1).float()

    def _specgram_chunks(
        self,
        z: ArrayLike | None,
        pitches: int | Sequence[int] | np.ndarray,
        directions: DirectionsLike | None,
        coefficients: ArrayLike | None,
    ) -> Iterator[Tensor]:
        """Denormalised spectrograms [b, 128, 1024, 2], :attr:`batch_size` notes at a time, so
        callers never hold more than one chunk of the (1 MiB per note) spectrograms."""
        if z is None:
            if directions is None:
                raise InputError("noz mode (no z) needs directions")
            n = len(np.atleast_1d(np.asarray(pitches)))
            if coefficients is not None:
                cshape = np.shape(coefficients)
                n = max(n, cshape[0] if len(cshape) == 2 else 1)
            zt = None
        else:
            zt = self._latents(z)
            n = zt.shape[0]
        labels = self.labels(pitches, n)
        if directions is not None:
            offsets = self._offsets(directions, coefficients if coefficients is not None else [], n)
            base = self._direction_tensors(directions)[2] if zt is None else None
            shape = self.layer_shape(directions.layer)
        for s in range(0, n, self.batch_size):
            e = min(n, s + self.batch_size)
            edit = None
            if directions is not None:
                off = offsets if offsets.shape[0] == 1 else offsets[s:e]
                edit = (directions.layer, offset_edit(off, shape, base))
            gen = self._compiled if edit is None and self._compiled is not None else (
                self.fast_generator)
            tanh = gen(None if zt is None else zt[s:e], labels[s:e], edit=edit)
            yield audio.denormalize(tanh.permute(0, 2, 3, 1), self.hparams)

    @torch.inference_mode()
    def generate_specgram(
        self,
        z: ArrayLike | None,
        pitches: int | Sequence[int] | np.ndarray,
        directions: DirectionsLike | None = None,
        coefficients: ArrayLike | None = None,
    ) -> Tensor:
        """Denormalised mel spectrograms for a batch of notes.

        Args:
            z: [N, latent_size] latents, or None for noz mode (needs ``directions``: the layer is
               set to ``mean + offset``).
            pitches: one MIDI pitch for all, or N pitches.
            directions: optional GANSpace directions (``ganspace.load_directions``).
            coefficients: [k] (shared) or [N, k] (per note) in standard deviations, k <= K;
               missing ones are zero.
        Returns:
            [N, 128, 1024, 2] float32 on :attr:`device` (log mel power, mel IF / pi).
        """
        chunks = list(self._specgram_chunks(z, pitches, directions, coefficients))
        if not chunks:
            return torch.empty((0, audio.N_FRAMES, audio.N_BINS, 2), device=self.device)
        return torch.cat(chunks)

    @torch.inference_mode()
    def generate(
        self,
        z: ArrayLike | None,
        pitches: int | Sequence[int] | np.ndarray,
        directions: DirectionsLike | None = None,
        coefficients: ArrayLike | None = None,
    ) -> np.ndarray:
        """Generate notes: float32 [N, audio_length] at :attr:`sample_rate`, unnormalised like
        Magenta. Arguments as :meth:`generate_specgram`; the spectrograms are turned into audio
        chunk by chunk."""
        outs = [audio.melspecgrams_to_audio(spec).cpu()
                for spec in self._specgram_chunks(z, pitches, directions, coefficients)]
        if not outs:
            return np.zeros((0, self.audio_length), dtype=np.float32)
        return torch.cat(outs).numpy().astype(np.float32, copy=False)

    def save(self, out_dir: str | Path) -> Path:
        """Write the native format into ``out_dir`` (created; existing files replaced); see
        :mod:`ganspace.formats.native`."""
        from ganspace.formats import native  # the format builds on the engine, not the reverse

        return native.save(self, out_dir)


def offset_edit(offset: Tensor, shape: tuple[int, int, int],
                base: Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """Layer edit (the ``fn`` of a :data:`~ganspace.engine.generator.LayerEdit`) adding
    ``offset`` [n|1, H*W*C] (NHWC order) to the activation [n, C, H, W] of a layer of shape
    ``(H, W, C)``, or replacing the activation by ``base + offset`` when ``base`` [H*W*C] is
    given (noz mode)."""
    h, w, c = shape

    def edit(act: Tensor) -> Tensor:
        n = act.shape[0]
        off = offset if base is None else offset + base
        off = off.expand(n, -1).reshape(n, h, w, c).permute(0, 3, 1, 2).to(act.dtype)
        return off.clone() if base is not None else act + off

    return edit


def random_model(size: str = "tiny", pitches: Sequence[int] | None = None,
                 latent_size: int | None = None, seed: int = 0, progress: float = 6.0,
                 device: torch.device | str | None = "cpu",
                 precision: str = "float32") -> GANSynthModel:
    """A model with random weights (it makes noise, not music), for tests and benchmarks.

    Args:
        size: a key of :data:`RANDOM_SIZES`: ``tiny`` (8 channels per block, latent 8: fast on a
            CPU) or ``published`` (Magenta's published dims).
        pitches: MIDI pitches; default the NSynth range 24..84.
        latent_size: width of z; default the size's.
        seed: ``torch.manual_seed`` before the weights are drawn (same seed, same weights).
        progress: blend position (0 .. 6; 7 blocks).
        device, precision: as :class:`GANSynthModel`.
    Returns:
        A :class:`GANSynthModel` with provenance ``{"source": "random <size>"}``.
    """
    if size not in RANDOM_SIZES:
        raise InputError(f"unknown random model size {size!r}; choose from "
                         f"{', '.join(RANDOM_SIZES)}")
    ps = list(NSYNTH_PITCHES) if pitches is None else list(pitches)
    hp = {**published_hparams(), **RANDOM_SIZES[size]}
    if latent_size is not None:
        hp["latent_vector_size"] = latent_size
    torch.manual_seed(seed)
    cfg = GeneratorConfig.from_hparams(hp, len(ps), num_blocks=7, progress=progress)
    return GANSynthModel(Generator(cfg), hp, ps, {"source": f"random {size}"}, device, precision)

