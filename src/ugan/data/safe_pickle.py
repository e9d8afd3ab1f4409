"""A restricted unpickler for numpy data (the CIFAR-10 python batches).

It builds dicts, lists, strings, bytes, numbers and numpy arrays and nothing else: any other
global is refused, so unpickling cannot import or call anything else. It also bounds memory: the
three numpy callables a pickle may use are wrapped, and each checks the size its arguments ask
for *before* anything is allocated —

- `numpy.ndarray(shape, dtype, …)` and `numpy.core.multiarray._reconstruct(ndarray, shape,
  dtype)` allocate `prod(shape) · itemsize` bytes: refused above `max_array_bytes` (by default
  the pickle file's own size: an array's bytes are stored in the file, so a real array is never
  larger than it);
- `numpy.dtype(…)`: refused when its item size exceeds the bound or it holds Python objects
  (object arrays are rebuilt from a list whose length numpy checks only after allocating);
- `_codecs.encode(str, "latin1")`, how Python 3 pickles bytes under protocol 2: other codecs
  are refused (chained `hex` encodings double the size at each call).

`ndarray.__setstate__` (the BUILD step that fills an array) checks its byte string against the
declared shape before it allocates, for every dtype allowed here.
"""

from __future__ import annotations

import codecs
import math
import pickle
from typing import BinaryIO

import numpy as np

from ugan.core.errors import UserError

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own array rebuilder
_LATIN1 = codecs.lookup("latin1").name


class RefusedGlobalError(UserError, pickle.UnpicklingError):
    """A pickle asked for a global outside the allowed ones, or used one in a way that is not
    allowed (an oversized array, an object dtype, another codec)."""


class OversizedArrayError(RefusedGlobalError):
    """A pickle declared a numpy array (or dtype) larger than the bound."""


def _as_dtype(dtype: object) -> np.dtype | None:
    try:
        return np.dtype(dtype)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None  # numpy rejects it in the call itself


def _nbytes(shape: object, dtype: np.dtype) -> int | None:
    """prod(shape) · itemsize, or None when numpy would reject the shape anyway."""
    try:
        dims = (shape,) if isinstance(shape, int) else tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        return None
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    return math.prod(dims) * dtype.itemsize


class _ArrayGuard:
    """The numpy callables a pickle may use, each bounded by `limit` bytes."""

    def __init__(self, limit: int):
        self.limit = limit

    def _check(self, what: str, shape: object, dtype: object) -> None:
        built = _as_dtype(dtype)
        if built is None:
            return
        if built.hasobject:
            raise RefusedGlobalError(f"refusing {what} of Python objects (dtype {built})")
        size = _nbytes(shape, built)
        if size is not None and size > self.limit:
            raise OversizedArrayError(
                f"refusing {what} of shape {shape} and dtype {built}: {size} bytes, more than "
                f"the {self.limit} bytes allowed (the file's size)"
            )

    def ndarray(self, shape=(), dtype=float, *args, **kwargs) -> np.ndarray:
        self._check("a numpy array", shape, dtype)
        return np.ndarray(shape, dtype, *args, **kwargs)

    def reconstruct(self, subtype, shape, dtype) -> np.ndarray:
        if subtype not in (self.ndarray, np.ndarray):  # a bound method: compared with ==
            raise RefusedGlobalError(f"refusing to rebuild an array of type {subtype!r}")
        self._check("a numpy array", shape, dtype)
        return _RECONSTRUCT(np.ndarray, shape, dtype)

    def dtype(self, *args, **kwargs) -> np.dtype:
        built = np.dtype(*args, **kwargs)
        if built.hasobject:
            raise RefusedGlobalError(f"refusing a numpy dtype of Python objects ({built})")
        if built.itemsize > self.limit:
            raise OversizedArrayError(
                f"refusing a numpy dtype of {built.itemsize} bytes per item, more than the "
                f"{self.limit} bytes allowed (the file's size)"
            )
        return built

    @staticmethod
    def encode(text: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        try:
            latin1 = codecs.lookup(encoding).name == _LATIN1
        except (LookupError, TypeError):
            latin1 = False
        if not latin1 or not isinstance(text, str):
            raise RefusedGlobalError(
                f"refusing _codecs.encode({type(text).__name__}, {encoding!r}): only str to "
                "latin1 (Python 3's protocol-2 bytes) is allowed"
            )
        return codecs.encode(text, encoding, errors)

    def allowed(self) -> dict[tuple[str, str], object]:
        allowed: dict[tuple[str, str], object] = {
            ("numpy", "ndarray"): self.ndarray,
            ("numpy", "dtype"): self.dtype,
            ("_codecs", "encode"): self.encode,
        }
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(module, "_reconstruct")] = self.reconstruct
        return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Builds builtin containers, strings, bytes, numbers and numpy arrays of at most
    `max_array_bytes` bytes each; refuses any other global."""

    def __init__(self, file: BinaryIO, *, max_array_bytes: int, **kwargs):
        super().__init__(file, **kwargs)
        self.allowed = _ArrayGuard(max_array_bytes).allowed()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refusing to load global {module}.{name}: only numpy arrays and builtin "
                "containers are allowed"
            ) from None
