"""Import the original GANSpaceSynth PCA pickles without running code from them.

The original ``gansynth_ganspace`` wrote a Python pickle of a dict ``{layer, estimator, comp [K, H,
W, C], stdev [K], var_ratio [K], global_mean [H, W, C]}``. Unpickling can call any importable
function, so this module reads pickles with :class:`RestrictedUnpickler`, whose ``find_class``
admits only the few numpy callables that rebuild arrays and scalars; any other global
(``os.system``, ``builtins.eval``, ...) is refused before it is called. This is the only place
in the product that reads a pickle, and only from the ``import-pca`` command (never from a
network message).
"""

from __future__ import annotations

import codecs
import io
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ganspace.errors import InputError, ModelFormatError
from ganspace.space.directions import Directions

if TYPE_CHECKING:
    from ganspace.engine.model import GANSynthModel

MAX_PICKLE_BYTES = 2 * 2**30
"""Largest pickle accepted (a full-rank conv0 file is about 256 MiB in float32)."""
REQUIRED_KEYS = ("layer", "estimator", "comp", "stdev", "var_ratio", "global_mean")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]  # private
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = _frombuffer  # protocol 5 arrays
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, dtypes and scalars (plus the builtin containers
    pickle encodes without globals) and refuses every other global.

    Admitted: ``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray._reconstruct`` and
    ``.scalar``, ``numpy.core.numeric._frombuffer`` (protocol 5), their ``numpy._core``
    equivalents, and ``_codecs.encode`` restricted to latin-1 (protocol 2 bytes).
    """

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Return an admitted global or raise ``pickle.UnpicklingError`` naming the refused one."""
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a PCA file only needs numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (a PCA pickle never has them)."""
        raise pickle.UnpicklingError("refused persistent id: a PCA file only needs numpy arrays")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (ModelFormatError on refusal or
    damage)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise ModelFormatError(f"unsafe or damaged pickle: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as exc:
        raise ModelFormatError(f"damaged pickle ({type(exc).__name__}: {exc})") from None


def _array(d: dict[str, Any], key: str, p: Path) -> np.ndarray:
    v = d[key]
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "fiu":
        raise ModelFormatError(f"{p}: {key} must be a numeric numpy array, got {type(v).__name__}")
    return v.astype(np.float32)


def import_legacy_pickle(path: str | Path, model: GANSynthModel | None = None) -> Directions:
    """Read an original GANSpaceSynth PCA pickle safely and return it as :class:`Directions`.

    Args:
        path: the ``.pickle`` file.
        model: optional GANSynthModel the directions belong to: its layer shape is checked and its
            fingerprint recorded (without it the fingerprint is None and any model with the same
            layer shape accepts the directions).
    Returns:
        Directions (float32; meta: estimator, source file, ``samples`` when the file name follows
        ``<model>_<layer>_<estimator>_<N>.pickle``, total variance from the leading component).
    Raises:
        ModelFormatError: a refused global, a damaged pickle, missing keys or inconsistent shapes.
        InputError: the directions do not fit ``model``.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise ModelFormatError(f"{p}: {size} bytes is larger than any PCA pickle")
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"{p}: unreadable ({exc})") from None
    try:
        obj = restricted_loads(data)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{p}: {exc}") from None
    if not isinstance(obj, dict):
        raise ModelFormatError(f"{p}: expected a dict, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ModelFormatError(f"{p}: missing keys {', '.join(missing)} (expected "
                               f"{', '.join(REQUIRED_KEYS)})")
    layer, estimator = obj["layer"], obj["estimator"]
    if not isinstance(layer, str) or not isinstance(estimator, str):
        raise ModelFormatError(f"{p}: layer and estimator must be strings")
    comp = _array(obj, "comp", p)
    mean = _array(obj, "global_mean", p)
    if comp.ndim == 5 and comp.shape[1] == 1:  # [K, 1, H, W, C]: a batch axis left in
        comp = comp[:, 0]
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    stdev = _array(obj, "stdev", p).reshape(-1)
    var_ratio = _array(obj, "var_ratio", p).reshape(-1)
    meta: dict[str, Any] = {"estimator": estimator, "source": "legacy pickle",
                            "source_file": p.name}
    m = re.search(r"_(\d+)\.pickle$", p.name)
    if m:
        meta["samples"] = int(m.group(1))
    if len(var_ratio) and var_ratio[0] > 0:
        meta["total_variance"] = float(stdev[0]) ** 2 / float(var_ratio[0])
    ignored = sorted(str(k) for k in obj if k not in REQUIRED_KEYS)
    if ignored:
        meta["ignored_keys"] = ignored
    try:
        d = Directions(layer, comp, stdev, var_ratio, mean, None, meta)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{p}: {exc}") from None
    if model is not None:
        try:
            d.check_compatible(model)
        except InputError as exc:
            raise InputError(f"{p}: {exc}") from None
        d.fingerprint = model.fingerprint
    return d
