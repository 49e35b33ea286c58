"""GANSpace directions: principal components of one generator layer, and their safe file format.

A directions file is a ``.safetensors`` file (no code runs when it is read) holding

==============  =====================  ===========================================================
tensor          shape                  meaning
==============  =====================  ===========================================================
``components``  ``[K, H, W, C]``       unit-norm principal directions (NHWC), float16 or float32
``stdev``       ``[K]`` float32        standard deviation of the activations along each direction
``var_ratio``   ``[K]`` float32        fraction of the layer's total variance along each direction
``mean``        ``[H, W, C]`` float32  mean activation of the layer (the "centre" of noz mode)
==============  =====================  ===========================================================

and, in the safetensors header metadata, ``format`` (``ganspacesynth-directions``),
``format_version`` (``1``) and ``directions``: a JSON object with ``layer``, ``fingerprint``
(the :attr:`~ganspace.engine.model.GANSynthModel.fingerprint` of the generator, or null for
imported legacy files) and ``meta`` (estimator, samples, seed, pitch, components,
total_variance, ...).

Components are sorted by decreasing variance. Sign convention: each component's entry of largest
absolute value is positive (the convention of scikit-learn >= 1.5's PCA), so a given model, layer,
seed and sample count always give the same signs.

Components are stored as float16 by default: the K = 512 directions of a published model's
``conv0`` (``[512, 2, 16, 256]``) take 8 MiB instead of 16 MiB, and the rounding (relative error
about 2e-4 per entry) is far below anything audible (see docs/ganspace.md for the measured edit
error). :func:`load_directions` always returns float32 arrays.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ganspace.errors import InputError, ModelFormatError

if TYPE_CHECKING:  # the engine (torch) is not needed to read and write directions files
    from ganspace.engine.model import GANSynthModel

FORMAT_NAME = "ganspacesynth-directions"
FORMAT_VERSION = 1
TENSORS = ("components", "stdev", "var_ratio", "mean")
STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}
_LABEL = re.compile(r"[a-z][a-z ]{0,23}")


class Directions:
    """Principal directions of one layer (see the module docstring for the meaning of each field).

    A plain class on purpose: hashed and compared by identity and weak-referenceable, because
    :class:`~ganspace.engine.model.GANSynthModel` caches device copies of the tensors per object.
    Treat the arrays as read-only once the object has been used for generation.

    Attributes:
        layer: generator layer name (``conv0``, ``conv1``, ``conv0_2``, ...).
        components: float32 [K, H, W, C], unit L2 norm per component, NHWC.
        stdev: float32 [K], standard deviations (ddof 1) along the components, descending.
        var_ratio: float32 [K], ``stdev**2 / total variance``.
        mean: float32 [H, W, C], mean activation.
        fingerprint: fingerprint of the model the directions were computed for, or None.
        meta: provenance (estimator, samples, seed, pitch, total_variance, format_version, ...).
    """

    def __init__(
        self,
        layer: str,
        components: np.ndarray,
        stdev: np.ndarray,
        var_ratio: np.ndarray,
        mean: np.ndarray,
        fingerprint: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.layer = str(layer)
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self.stdev = np.ascontiguousarray(stdev, dtype=np.float32)
        self.var_ratio = np.ascontiguousarray(var_ratio, dtype=np.float32)
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.fingerprint = fingerprint
        self.meta = dict(meta or {})
        self._validate()

    def _validate(self) -> None:
        comp = self.components
        if comp.ndim != 4:
            raise ModelFormatError(
                f"components must be [K, H, W, C], got shape {list(comp.shape)}"
            )
        k = comp.shape[0]
        if k < 1:
            raise ModelFormatError("directions hold no components")
        for name in ("stdev", "var_ratio"):
            arr = getattr(self, name)
            if arr.shape != (k,):
                raise ModelFormatError(
                    f"{name} must be [{k}] (one per component), got shape {list(arr.shape)}"
                )
        if self.mean.shape != comp.shape[1:]:
            raise ModelFormatError(
                f"mean must be {list(comp.shape[1:])} like one component, got shape "
                f"{list(self.mean.shape)}"
            )
        for name in TENSORS:
            if not np.isfinite(getattr(self, name)).all():
                raise ModelFormatError(f"{name} contains NaN or inf")
        if (self.stdev < 0).any():
            raise ModelFormatError("stdev contains negative values")

    @property
    def count(self) -> int:
        """Number of components K."""
        return int(self.components.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the layer."""
        h, w, c = self.components.shape[1:]
        return int(h), int(w), int(c)

    def check_compatible(self, model: GANSynthModel) -> None:
        """Raise InputError unless these directions fit ``model`` (a GANSynthModel): the layer
        exists, has the same shape, and the model fingerprint matches (when recorded).

        The model performs the same check when generating; call this to fail early (e.g. when a
        server loads a directions file for an already loaded model).
        """
        shape = model.layer_shape(self.layer)  # InputError listing the layers when unknown
        if tuple(shape) != self.shape:
            raise InputError(
                f"directions for layer {self.layer} have shape {list(self.shape)}, but this "
                f"model's {self.layer} is {list(shape)}: they were made for another model"
            )
        if self.fingerprint is not None and self.fingerprint != model.fingerprint:
            raise InputError(
                f"directions were computed for model {self.fingerprint}, not this one "
                f"({model.fingerprint}); recompute them with `ganspacesynth pca`"
            )

    @property
    def labels(self) -> dict[int, str]:
        """Measured slider labels (``meta["labels"]``, written by ``ganspacesynth eval
        --write-labels``): component index -> label, e.g. ``{0: "brightness"}``; entries that
        are not a short plain word are left out."""
        raw = self.meta.get("labels")
        if not isinstance(raw, dict):
            return {}
        out = {}
        for key, entry in raw.items():
            label = entry.get("label") if isinstance(entry, dict) else None
            if (isinstance(key, str) and key.isdigit() and int(key) < self.count
                    and isinstance(label, str) and _LABEL.fullmatch(label)):
                out[int(key)] = label
        return out

    def __repr__(self) -> str:
        h, w, c = self.shape
        return (f"Directions(layer={self.layer!r}, K={self.count}, shape={h}x{w}x{c}, "
                f"fingerprint={self.fingerprint!r})")


def save_directions(d: Directions, path: str | Path, dtype: str = "float16") -> Path:
    """Write ``d`` as a directions file (see the module docstring).

    Args:
        d: the directions.
        path: output file (parent folders are created; an existing file is replaced).
        dtype: storage type of the components, ``float16`` (default, half the size) or
            ``float32`` (exact). stdev, var_ratio and mean are always float32.
    Returns:
        The path written.
    """
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "components": np.ascontiguousarray(d.components, dtype=STORAGE_DTYPES[dtype]),
        "stdev": d.stdev,
        "var_ratio": d.var_ratio,
        "mean": d.mean,
    }
    meta = {k: v for k, v in d.meta.items() if k != "format_version"}
    header = {"layer": d.layer, "fingerprint": d.fingerprint, "meta": meta}
    try:
        text = json.dumps(header, sort_keys=True)
    except TypeError as exc:
        raise InputError(f"directions metadata is not JSON-serialisable ({exc})") from None
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "directions": text}
    save_file(tensors, str(out), metadata=metadata)
    return out


def write_labels(path: str | Path, labels: dict[str, dict[str, Any]]) -> Path:
    """Store measured labels (``ganspace.train.evaluate.direction_labels``) in a directions
    file's ``meta["labels"]``, replacing earlier ones; components keep their storage type."""
    p = Path(path)
    with safe_open(str(p), framework="numpy") as f:
        stored = str(f.get_slice("components").get_dtype()).lower()
    d = load_directions(p)
    d.meta["labels"] = labels
    return save_directions(d, p, dtype="float16" if stored in ("f16", "float16") else "float32")


def load_directions(path: str | Path) -> Directions:
    """Read a directions file written by :func:`save_directions` (never a pickle: import legacy
    pickles with ``ganspacesynth import-pca``).

    Returns:
        :class:`Directions` with float32 arrays; ``meta["format_version"]`` is the file's version.
    Raises:
        ModelFormatError: unreadable file, not a directions file, unknown format version, missing
            tensors or inconsistent shapes (the message names the file and the problem).
    """
    p = Path(path)
    try:
        with safe_open(str(p), framework="np") as f:
            metadata = f.metadata() or {}
            _check_header(p, metadata)
            missing = [name for name in TENSORS if name not in f.keys()]
            if missing:
                raise ModelFormatError(f"{p}: missing tensors {', '.join(missing)}")
            arrays = {name: f.get_tensor(name) for name in TENSORS}
    except (OSError, SafetensorError) as exc:
        raise ModelFormatError(f"{p}: not a readable directions file ({exc})") from None
    try:
        header = json.loads(metadata["directions"])
        layer = header["layer"]
        fingerprint = header["fingerprint"]
        meta = dict(header["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{p}: damaged directions metadata ({exc!r})") from None
    if not isinstance(layer, str) or not (fingerprint is None or isinstance(fingerprint, str)):
        raise ModelFormatError(f"{p}: damaged directions metadata (layer or fingerprint)")
    meta["format_version"] = FORMAT_VERSION
    try:
        return Directions(layer, arrays["components"], arrays["stdev"], arrays["var_ratio"],
                          arrays["mean"], fingerprint, meta)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{p}: {exc}") from None


def _check_header(p: Path, metadata: dict[str, str]) -> None:
    fmt = metadata.get("format")
    if fmt != FORMAT_NAME:
        raise ModelFormatError(
            f"{p}: not a {FORMAT_NAME} file (format {fmt!r}); legacy PCA pickles must be converted "
            "with `ganspacesynth import-pca`"
        )
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ModelFormatError(
            f"{p}: directions format version {version} is not supported by this ganspacesynth "
            f"(it reads version {FORMAT_VERSION}); upgrade ganspacesynth or recompute the "
            "directions with `ganspacesynth pca`"
        )
    if "directions" not in metadata:
        raise ModelFormatError(f"{p}: directions metadata is missing")
