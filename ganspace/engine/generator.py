"""The GANSynth progressive generator in PyTorch, faithful to Magenta's ``networks.generator``.

(Over 450 lines: the trainable network and its folded inference copy share one forward pass,
``_GeneratorBase._run``, and the in-place activation helpers; apart, those would become public.)

Two modules share one set of weights:

- :class:`Generator` is the trainable network. Its parameters are stored as Magenta stores them
  (kernels *without* the equalized-learning-rate scale, PyTorch layout ``[cout, cin, kh, kw]``), so
  a Magenta checkpoint, a native model and a training run all use the same state dict.
- :class:`FastGenerator` is an inference-only copy derived from a ``Generator``: scales folded into
  the weights, block 1's ``conv0`` as one matrix product, every "nearest upsample x2 then 3x3 conv"
  as one 4x4 transposed convolution with stride 2 on the small image (2.25x fewer multiply-adds,
  exactly the same maths), channels-last activations overwritten in place, ``to_rgb`` heads with
  blend weight 0 skipped, optionally in bfloat16 or float16.

Layout is NCHW: ``[B, C, H, W]``, H = time frames, W = mel bins. Layer names follow the SopiMlab
fork: ``conv0``, ``conv1`` (block 1), then ``conv0_<k>``, ``conv1_<k>`` for blocks k = 2, 3, ...
"""

from __future__ import annotations

import abc
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganspace.errors import InputError, ModelFormatError

LayerEdit = tuple[str, Callable[[Tensor], Tensor]]
"""``(layer_name, fn)``: ``fn`` receives that layer's activation ``[B, C, H, W]`` and returns the
replacement of the same shape. With ``z=None`` the function must ignore its input (noz mode)."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a GANSynth generator (the subset of Magenta's hparams that shapes it).

    ``num_resolutions`` fixes the output size, ``num_blocks`` the blocks of the current stage
    (``(stage_id + 1) // 2 + 1``). ``progress`` (0 .. num_blocks - 1) sets the fade-in blend.
    """

    latent_size: int
    num_pitches: int
    num_blocks: int
    num_resolutions: int = 7
    fmap_base: int = 4096
    fmap_decay: float = 1.0
    fmap_max: int = 256
    start_height: int = 2
    start_width: int = 16
    scale_base: int = 2
    kernel_size: int = 3
    progress: float = 6.0

    @classmethod
    def from_hparams(
        cls, hparams: dict[str, Any], num_pitches: int, num_blocks: int, progress: float
    ) -> GeneratorConfig:
        """Build a config from Magenta-style hparams (``experiment.json`` merged with defaults)."""
        if hparams.get("simple_arch"):
            raise ModelFormatError("simple_arch generators are not supported (only progressive)")
        if hparams.get("to_rgb_activation", "tanh") != "tanh":
            raise ModelFormatError(
                f"to_rgb_activation {hparams['to_rgb_activation']!r} is not supported (tanh only)"
            )
        if int(hparams.get("scale_base", 2)) != 2:
            raise ModelFormatError("only scale_base 2 is supported")
        return cls(
            latent_size=int(hparams["latent_vector_size"]),
            num_pitches=num_pitches,
            num_blocks=num_blocks,
            num_resolutions=int(hparams["num_resolutions"]),
            fmap_base=int(hparams["fmap_base"]),
            fmap_decay=float(hparams["fmap_decay"]),
            fmap_max=int(hparams["fmap_max"]),
            start_height=int(hparams["start_height"]),
            start_width=int(hparams["start_width"]),
            scale_base=int(hparams.get("scale_base", 2)),
            kernel_size=int(hparams.get("kernel_size", 3)),
            progress=float(progress),
        )

    def channels(self, block: int) -> int:
        """Channels of block k (1-based): ``min(fmap_base / 2**(k*decay), fmap_max)``."""
        return int(min(self.fmap_base / 2 ** (block * self.fmap_decay), self.fmap_max))

    def resolution(self, block: int) -> tuple[int, int]:
        """(H, W) of block ``block``'s output."""
        f = self.scale_base ** (block - 1)
        return self.start_height * f, self.start_width * f

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the generator output (always the final resolution)."""
        return self.resolution(self.num_resolutions)

    def layer_names(self) -> list[str]:
        """Names of every conv layer output, in forward order."""
        names = []
        for k in range(1, self.num_blocks + 1):
            suffix = "" if k == 1 else f"_{k}"
            names += [f"conv0{suffix}", f"conv1{suffix}"]
        return names

    def layer_index(self, name: str) -> tuple[int, int]:
        """(block 1-based, conv 0 or 1) of a layer name; InputError listing valid names."""
        names = self.layer_names()
        if name not in names:
            raise InputError(f"unknown layer {name!r}; this model has: {', '.join(names)}")
        i = names.index(name)
        return i // 2 + 1, i % 2

    def layer_shape(self, name: str) -> tuple[int, int, int]:
        """(H, W, C) of a layer's output."""
        block, _ = self.layer_index(name)
        h, w = self.resolution(block)
        return h, w, self.channels(block)

    def alphas(self) -> list[float]:
        """Blend weight of each block's ``to_rgb`` head: ``max(0, min(p - (k - 2), k - p))``."""
        p = self.progress
        return [max(0.0, min(p - (k - 2), k - p)) for k in range(1, self.num_blocks + 1)]


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Normalise each pixel's features over channels (dim 1): ``x * rsqrt(mean(x^2) + eps)``."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def _act(x: Tensor) -> Tensor:
    return pixel_norm(F.leaky_relu(x, 0.2))


def _pixel_norm_inplace(x: Tensor) -> Tensor:
    """``pixel_norm(x)`` overwriting x [B, C, H, W] in two memory passes and five operations
    (inference only; fastest on channels_last tensors, where the channel reduction is
    contiguous; few operations, since each one synchronises the thread pool). The sums of
    squares are float32 whatever x's dtype (no float16 overflow, no bfloat16 rounding)."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32)
    inv = torch.full_like(norm, 1e-8).addcmul_(norm, norm, value=1.0 / x.shape[1]).rsqrt_()
    return x.mul_(inv.to(x.dtype))


def _act_inplace(x: Tensor) -> Tensor:
    """``pixel_norm(leaky_relu(x))`` overwriting x [B, C, H, W] (see
    :func:`_pixel_norm_inplace`)."""
    return _pixel_norm_inplace(F.leaky_relu_(x, 0.2))


def he_scale(cin: int, kh: int, kw: int, slope: float) -> float:
    """Equalized-learning-rate scale ``sqrt(2 / ((1 + slope^2) * kh * kw * cin))``."""
    return math.sqrt(2.0 / ((1.0 + slope * slope) * kh * kw * cin))


class EqConv2d(nn.Module):
    """Conv with runtime He scale: ``conv2d(x, W) * scale + b``; ``W`` is stored unscaled."""

    def __init__(self, cin: int, cout: int, kh: int, kw: int, slope: float, padding: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = he_scale(cin, kh, kw, slope)
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, cin, H, W] -> [B, cout, H', W']."""
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class FirstConv(nn.Module):
    """Block 1 ``conv0``: the 1x1 latent image zero-padded and convolved VALID with a
    ``start_h x start_w`` kernel, written as one matrix product (only one input pixel is non-zero;
    fan-in still counts the whole kernel, as in Magenta)."""

    def __init__(self, cin: int, cout: int, kh: int, kw: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = he_scale(cin, kh, kw, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, cin] (pixel-normalised latent) -> [B, cout, kh, kw]."""
        w = self.weight.flip((2, 3)) * self.scale
        return torch.einsum("bc,ochw->bohw", x, w) + self.bias[:, None, None]


class Block(nn.Module):
    """A progressive block: (upsample x2 unless first) -> conv0 -> conv1, each pixel-norm(lrelu)."""

    def __init__(self, cfg: GeneratorConfig, block: int) -> None:
        super().__init__()
        cout, k = cfg.channels(block), cfg.kernel_size
        if block == 1:
            cin = cfg.latent_size + cfg.num_pitches
            self.conv0: FirstConv | EqConv2d = FirstConv(cin, cout, cfg.start_height,
                                                         cfg.start_width)
        else:
            self.conv0 = EqConv2d(cfg.channels(block - 1), cout, k, k, 0.0, k // 2)
        self.conv1 = EqConv2d(cout, cout, k, k, 0.0, k // 2)


class _GeneratorBase(nn.Module, abc.ABC):
    """Shared forward skeleton: input normalisation, layer read/override, to_rgb blend."""

    cfg: GeneratorConfig

    def layer_names(self) -> list[str]:
        """Layer names in forward order (``conv0``, ``conv1``, ``conv0_2``, ...)."""
        return self.cfg.layer_names()

    def layer_shape(self, name: str) -> tuple[int, int, int]:
        """(H, W, C) of a layer's output."""
        return self.cfg.layer_shape(name)

    def input_vector(self, z: Tensor, labels: Tensor) -> Tensor:
        """Block 1's input: [B, Z + P] pixel-normalised ``concat(z, one_hot(labels))``."""
        one_hot = F.one_hot(labels.long(), self.cfg.num_pitches).to(z.dtype)
        return pixel_norm(torch.cat([z, one_hot], dim=1))

    @abc.abstractmethod
    def _conv(self, block: int, conv: int, x: Tensor) -> Tensor:
        """Run conv ``conv`` (0 or 1) of block ``block`` (1-based), activation included:
        x [B, C, H, W] (block 1 conv0: the [B, Z + P] input) -> [B, C', H', W']."""

    @abc.abstractmethod
    def _to_rgb(self, block: int, x: Tensor) -> Tensor:
        """tanh(to_rgb) of block ``block``'s output: [B, C, H, W] -> [B, 2, H, W]."""

    def _run(
        self, z: Tensor | None, labels: Tensor, stop_at: str | None, edit: LayerEdit | None
    ) -> Tensor:
        cfg = self.cfg
        names = cfg.layer_names()
        alphas = cfg.alphas()
        last_alive = max(k for k, a in enumerate(alphas, 1) if a > 0)
        if stop_at is not None:
            cfg.layer_index(stop_at)
        replaced = -1  # in noz mode, layers up to the edited one are not computed
        if edit is not None:
            block, _ = cfg.layer_index(edit[0])
            if z is None:
                replaced = names.index(edit[0])
                if any(a > 0 for a in alphas[: block - 1]):
                    raise InputError(f"noz mode at {edit[0]!r} would skip a blended to_rgb head")
        elif z is None:
            raise InputError("z is required unless a layer edit replaces a layer (noz mode)")
        full = cfg.output_size
        x = None if z is None else self.input_vector(z, labels)
        out: Tensor | None = None
        for i, name in enumerate(names):
            block, conv = i // 2 + 1, i % 2
            if i > replaced:
                assert x is not None
                x = self._conv(block, conv, x)
            if edit is not None and name == edit[0]:
                if x is None:
                    h, w, c = cfg.layer_shape(name)
                    x = torch.zeros((labels.shape[0], c, h, w), device=labels.device)
                x = edit[1](x)
            if name == stop_at:
                assert x is not None
                return x
            if conv == 1 and alphas[block - 1] > 0:
                assert x is not None
                rgb = self._to_rgb(block, x)
                if rgb.shape[-2:] != full:
                    rgb = F.interpolate(rgb, size=full, mode="nearest")
                if alphas[block - 1] != 1.0:
                    rgb = rgb * alphas[block - 1]
                out = rgb if out is None else out + rgb
            if conv == 1 and block == last_alive:
                break
        assert out is not None
        return out

    def forward(
        self, z: Tensor | None, labels: Tensor, edit: LayerEdit | None = None
    ) -> Tensor:
        """Generate the tanh blend (Magenta's ``predictions_tanh_blend``).

        Args:
            z: [B, latent_size] float latents, or None in noz mode (``edit`` must then set a layer).
            labels: [B] int pitch-class indices (index into the model's sorted pitches).
            edit: optional ``(layer, fn)`` overriding that layer's output [B, C, H, W].
        Returns:
            [B, 2, H, W] (NCHW; channel 0 log-magnitude, 1 IF, both normalised to [-1, 1]).
        """
        return self._run(z, labels, None, edit)

    def activations(self, z: Tensor, labels: Tensor, layer: str) -> Tensor:
        """Output of ``layer`` for latents z [B, Z] and labels [B] -> [B, C, H, W]; later layers
        are not computed."""
        return self._run(z, labels, layer, None)


class Generator(_GeneratorBase):
    """Trainable GANSynth generator; ``state_dict`` names: ``blocks.{k-1}.conv{0,1}.{weight,bias}``,
    ``to_rgb.{k-1}.{weight,bias}`` (k = 1..num_blocks)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg, k) for k in range(1, cfg.num_blocks + 1))
        self.to_rgb = nn.ModuleList(
            EqConv2d(cfg.channels(k), 2, 1, 1, 1.0, 0) for k in range(1, cfg.num_blocks + 1)
        )

    def block(self, k: int) -> Block:
        """Block k (1-based)."""
        return cast(Block, self.blocks[k - 1])

    def rgb_head(self, k: int) -> EqConv2d:
        """The ``to_rgb`` head of block k (1-based)."""
        return cast(EqConv2d, self.to_rgb[k - 1])

    def _conv(self, block: int, conv: int, x: Tensor) -> Tensor:
        b = self.block(block)
        if conv == 0:
            if block > 1:
                x = F.interpolate(x, scale_factor=self.cfg.scale_base, mode="nearest")
            return _act(b.conv0(x))
        return _act(b.conv1(x))

    def _to_rgb(self, block: int, x: Tensor) -> Tensor:
        return torch.tanh(self.rgb_head(block)(x))

    def block_conv(self, block: int, conv: int, x: Tensor) -> Tensor:
        """Conv ``conv`` (0 or 1) of block ``block`` with its activation (and, for conv0 of
        blocks > 1, the nearest x2 upsampling before it): [B, C, H, W] (block 1 conv0: the
        [B, Z + P] :meth:`input_vector`) -> [B, C', H', W']."""
        return self._conv(block, conv, x)

    def block_conv_valid_rows(self, block: int, conv: int, x: Tensor) -> Tensor:
        """Conv ``conv`` of block ``block`` (> 1) on a band of rows: no upsampling, zero
        padding along frequency only, so the output has two rows fewer than x
        ([B, C, h, W] -> [B, C', h - 2, W]); for training on time crops."""
        eq = self.block(block).conv0 if conv == 0 else self.block(block).conv1
        if not isinstance(eq, EqConv2d) or eq.padding != 1:
            raise InputError("block_conv_valid_rows needs a 3x3 conv of a block after the first")
        return _act(F.conv2d(x, eq.weight * eq.scale, eq.bias, padding=(0, 1)))

    def rgb_output(self, block: int, x: Tensor) -> Tensor:
        """``tanh(to_rgb)`` of block ``block``'s output: [B, C, H, W] -> [B, 2, H, W]."""
        return self._to_rgb(block, x)

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_state_dict(
        cls, cfg: GeneratorConfig, state: dict[str, Tensor], source: str | Path
    ) -> Generator:
        """A generator of architecture ``cfg`` holding ``state`` (as float32, without a random
        initialisation first); ModelFormatError naming ``source`` when the names or shapes do
        not fit the architecture."""
        with torch.device("meta"):
            gen = cls(cfg)
        expected = gen.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ModelFormatError(
                f"{source}: weights do not fit the architecture (missing: {missing[:4]}, "
                f"unexpected: {extra[:4]})"
            )
        for k, v in expected.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ModelFormatError(
                    f"{source}: tensor {k} has shape {list(state[k].shape)}, expected "
                    f"{list(v.shape)}"
                )
        gen.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
        return gen


def upsample_conv_kernel(w: Tensor) -> Tensor:
    """Turn a 3x3 kernel applied after nearest x2 upsampling into the 4x4 kernel of one
    transposed convolution (stride 2, padding 1) on the small image.

    Output row 2i + a of ``conv3x3(upsample(x))`` sums taps over rows i - 1, i (a = 0: taps
    ``t0`` and ``t1 + t2``) or i, i + 1 (a = 1: taps ``t0 + t1`` and ``t2``); a transposed
    convolution with stride 2 and padding 1 reads input row i at kernel row ``2 (j - i) + a + 1``
    for output row 2j + a, so its kernel rows are ``(t2, t1 + t2, t0 + t1, t0)``; the same along
    the columns. Same maths as the upsampled conv with 16 instead of 36 multiply-adds per input
    pixel, and no upsampled copy.

    Args:
        w: [cout, cin, 3, 3] (a conv2d kernel).
    Returns:
        [cin, cout, 4, 4] (a conv_transpose2d kernel).
    """
    def fold(k: Tensor, dim: int) -> Tensor:
        t0, t1, t2 = k.unbind(dim)
        return torch.stack((t2, t1 + t2, t0 + t1, t0), dim)

    return fold(fold(w, 2), 3).transpose(0, 1)


def _first_act(x: Tensor, w: Tensor, b: Tensor, shape: tuple[int, int]) -> Tensor:
    """Block 1 conv0 and activation: x [B, cin] @ w [cin, cout*h*w] + b -> [B, cout, h, w]
    (channels_last memory)."""
    y = torch.addmm(b, x, w).view(x.shape[0], -1, *shape)
    return _act_inplace(y.contiguous(memory_format=torch.channels_last))


def _up_conv_act(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Nearest upsample x2, 3x3 conv and activation as one transposed conv (see
    :func:`upsample_conv_kernel`): x [B, cin, H, W] -> [B, cout, 2H, 2W]."""
    return _act_inplace(F.conv_transpose2d(x, w, b, stride=2, padding=1))


def _conv_act(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Same-size conv and activation: x [B, cin, H, W] -> [B, cout, H, W]."""
    return _act_inplace(F.conv2d(x, w, b, padding=w.shape[-1] // 2))


def _rgb(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """tanh of the 1x1 ``to_rgb`` conv: x [B, C, H, W] -> [B, 2, H, W]."""
    return torch.tanh(F.conv2d(x, w, b))


def _prepack_ops_available() -> bool:
    """Whether this torch has oneDNN's weight prepacking and fused convolution operators (the
    ones torch.compile's CPU backend uses)."""
    mkldnn = torch.ops.mkldnn
    return torch.backends.mkldnn.is_available() and all(
        hasattr(mkldnn, op) for op in ("_reorder_convolution_weight", "_convolution_pointwise",
                                       "_reorder_convolution_transpose_weight",
                                       "_convolution_transpose_pointwise"))


PREPACKED_BATCHES = 4
"""Batch sizes whose prepacked weights a :class:`FastGenerator` keeps (least recently used
dropped): oneDNN's best weight layout depends on the input shape."""

FLOAT32_BLOCKS = 2
"""Leading blocks a reduced-precision :class:`FastGenerator` keeps in float32. Measured on the
default model (32 notes, log-mel median difference, docs/benchmarks.md): every block adds about
the same error in bfloat16 (all blocks 1.11 dB; one block back in float32 0.04-0.11 dB less);
blocks 1-2 in float32 give 0.95 dB for 1.4 % of the published generator's multiply-adds."""


class FastGenerator(_GeneratorBase):
    """Inference-only generator with folded weights (see module docstring). Build it with
    :meth:`from_generator`; it holds buffers, no parameters, and gives the same output as the
    ``Generator`` it came from (rounding aside).

    In reduced precision (``dtype`` bfloat16 or float16) the convolutions of blocks
    ``FLOAT32_BLOCKS + 1`` to N run with weights and activations in that dtype; the first
    :data:`FLOAT32_BLOCKS` blocks, the ``to_rgb`` heads and the pixel norms' sums of squares stay
    float32, and the output is float32.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.dtype = torch.float32
        # Prepacked oneDNN weights by batch size, then layer name; None: not used.
        self._prepacked: OrderedDict[int, dict[str, Tensor]] | None = None

    def enable_prepack(self) -> bool:
        """On the CPU, from now on run the convolutions after block 1's conv0 with weights
        prepacked once per batch size in oneDNN's layout for that input shape, and the leaky ReLU
        fused into them (without it oneDNN reorders every weight at every call: 1.15x at batch
        4, 1.3x at batch 1 on 2 cores, docs/benchmarks.md). Same arithmetic. Returns whether
        this torch build offers it; tracing (export, torch.compile) and other devices use the
        plain operators."""
        if _prepack_ops_available():
            self._prepacked = OrderedDict()
        return self._prepacked is not None

    def disable_prepack(self) -> None:
        """Back to the plain operators (drops the prepacked weights)."""
        self._prepacked = None

    def _packed_conv(self, name: str, x: Tensor, b: Tensor) -> Tensor:
        """leaky_relu(conv ``name``(x)) with prepacked weights: x [B, C, H, W] channels_last."""
        assert self._prepacked is not None
        mkldnn = torch.ops.mkldnn
        batch = x.shape[0]
        packs = self._prepacked.pop(batch, {})
        self._prepacked[batch] = packs  # most recently used last
        if len(self._prepacked) > PREPACKED_BATCHES:
            self._prepacked.popitem(last=False)
        w = packs.get(name)
        transposed = name.startswith("c0_")
        if w is None:
            dense = self.get_buffer(f"{name}_w")
            if transposed:
                w = mkldnn._reorder_convolution_transpose_weight(
                    dense, [1, 1], [0, 0], [2, 2], [1, 1], 1, list(x.shape))
            else:
                w = mkldnn._reorder_convolution_weight(dense, [1, 1], [1, 1], [1, 1], 1,
                                                       list(x.shape))
            packs[name] = w
        if transposed:
            return mkldnn._convolution_transpose_pointwise(
                x, w, b, [1, 1], [0, 0], [2, 2], [1, 1], 1, "leaky_relu", [0.2], "")
        return mkldnn._convolution_pointwise(x, w, b, [1, 1], [1, 1], [1, 1], 1, "leaky_relu",
                                             [0.2], "")

    @classmethod
    @torch.no_grad()
    def from_generator(cls, gen: Generator, dtype: torch.dtype = torch.float32) -> FastGenerator:
        """Fold scales and rewrite the upsampling convolutions of ``gen``; convolution weights
        of the blocks after the first :data:`FLOAT32_BLOCKS` in ``dtype``."""
        fast = cls(gen.cfg)
        fast.dtype = dtype
        for k in range(1, gen.cfg.num_blocks + 1):
            block = gen.block(k)
            c0 = block.conv0
            kd = torch.float32 if k <= FLOAT32_BLOCKS else dtype
            if k == 1:
                w = (c0.weight.flip((2, 3)) * c0.scale).transpose(0, 1).flatten(1)
                h, wd = gen.cfg.start_height, gen.cfg.start_width
                fast._put(f"c0_{k}", w, c0.bias.repeat_interleave(h * wd), torch.float32)
            else:
                fast._put(f"c0_{k}", upsample_conv_kernel(c0.weight * c0.scale), c0.bias, kd)
            fast._put(f"c1_{k}", block.conv1.weight * block.conv1.scale, block.conv1.bias, kd)
            rgb = gen.rgb_head(k)
            fast._put(f"rgb_{k}", rgb.weight * rgb.scale, rgb.bias, torch.float32)
        return fast

    def _put(self, name: str, weight: Tensor, bias: Tensor, dtype: torch.dtype) -> None:
        weight = weight.detach().to(dtype, copy=True)
        if weight.dim() == 4:
            weight = weight.contiguous(memory_format=torch.channels_last)
        self.register_buffer(f"{name}_w", weight)
        self.register_buffer(f"{name}_b", bias.detach().to(dtype, copy=True).contiguous())

    def _wb(self, name: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{name}_w"), getattr(self, f"{name}_b")

    def _conv(self, block: int, conv: int, x: Tensor) -> Tensor:
        w, b = self._wb(f"c{conv}_{block}")
        if block == 1 and conv == 0:
            return _first_act(x, w, b, (self.cfg.start_height, self.cfg.start_width))
        # A no-op except where the precision changes (after the float32 blocks) or after an edit.
        x = x.to(w.dtype).contiguous(memory_format=torch.channels_last)
        if (self._prepacked is not None and x.device.type == "cpu"
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling()):
            return _pixel_norm_inplace(self._packed_conv(f"c{conv}_{block}", x, b))
        return _conv_act(x, w, b) if conv == 1 else _up_conv_act(x, w, b)

    def _to_rgb(self, block: int, x: Tensor) -> Tensor:
        w, b = self._wb(f"rgb_{block}")
        return _rgb(x.float(), w, b)
