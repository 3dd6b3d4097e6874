"""Transpose a matrix with OpenBLAS's ``?omatcopy``, bit for bit, when NumPy's OpenBLAS offers it.

NumPy copies a transposed view one element at a time (about 1 GB/s per thread even in cache-sized tiles, see
:mod:`lstmconv._fast.copying`); OpenBLAS's ``cblas_somatcopy`` / ``cblas_domatcopy`` transposes in blocks, several times
faster on a large matrix (``tests/test_blas_transpose.py`` checks it is bit for bit the same).
NumPy's wheels ship OpenBLAS with every ``cblas_*`` symbol exported (``scipy_cblas_somatcopy64_`` in NumPy 2's
ILP64 build), so it is called through :mod:`ctypes`, found with threadpoolctl (already used to limit BLAS).

The routine computes ``b = alpha * a'`` with ``alpha = 1``, and a multiplication is not always a copy. It is
bit-exact for every finite value, infinity and signed zero, but it quiets a signalling NaN, and flushes
subnormal values to zero where the thread runs with the CPU's flush-to-zero or denormals-are-zero modes (which
a library built with ``-ffast-math`` can switch on). So :func:`transpose_into` copies again with NumPy a matrix
whose transposition holds a NaN (only a NaN becomes a NaN, so one there means one in the matrix; looking at the
result, contiguous and still in cache, costs half of looking at a strided matrix before), and refuses (returns
False, and the caller copies with NumPy) a call from a thread where a subnormal does not survive a one-element
transposition. The first use checks the binding against NumPy on a small matrix with unaligned
rows; any disagreement, missing symbol or other OpenBLAS (MKL, Accelerate) leaves NumPy's copy in charge.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import numpy as np

from lstmconv._fast.finite import no_nan

__all__ = ["transpose_into", "available"]

_ROW_MAJOR, _TRANSPOSE = 101, 112
# Symbol names by OpenBLAS build: NumPy 2 wheels (scipy-openblas, 64-bit integers), their 32-bit-integer build,
# NumPy 1.x wheels (openblas64_), a system OpenBLAS.
_SYMBOLS = (("scipy_cblas_", "64_", ctypes.c_int64), ("scipy_cblas_", "", ctypes.c_int32),
            ("cblas_", "64_", ctypes.c_int64), ("cblas_", "", ctypes.c_int32))  # fmt: skip

Omatcopy = Callable[..., None]
_kernels: dict[np.dtype, tuple[Omatcopy, type]] | None = None
_lock = threading.Lock()


def available() -> bool:
    """Whether OpenBLAS's transposition is bound and passed its check against NumPy."""
    return bool(_bound())


def transpose_into(target: np.ndarray, matrix: np.ndarray) -> bool:
    """``target[...] = matrix.T`` through OpenBLAS, bit for bit; False (nothing written) when it cannot be used.

    Both must be 2-D, of the same float32 or float64 native dtype, with contiguous rows (any row stride).
    """
    kernels = _bound()
    entry = kernels.get(matrix.dtype) if kernels else None
    if entry is None or not _fits(target, matrix, entry[1]):
        return False
    if not _subnormals_survive(entry, matrix.dtype):  # per call: the floating-point modes belong to the thread
        return False
    _call(entry, target, matrix)
    if not no_nan(target):
        target[...] = matrix.T  # a signalling NaN may have been quieted: NumPy copies its bits
    return True


def _fits(target: np.ndarray, matrix: np.ndarray, integer: type) -> bool:
    item = matrix.itemsize
    largest = 2**63 if integer is ctypes.c_int64 else 2**31
    return (
        matrix.ndim == 2
        and target.dtype == matrix.dtype
        and target.shape == matrix.shape[::-1]
        and matrix.dtype.isnative
        and matrix.strides[1] == item
        and target.strides[1] == item
        and matrix.strides[0] % item == 0
        and target.strides[0] % item == 0
        and matrix.strides[0] >= matrix.shape[1] * item
        and target.strides[0] >= target.shape[1] * item
        and max(*matrix.shape, matrix.strides[0] // item, target.strides[0] // item) < largest
        and matrix.flags.aligned
        and target.flags.aligned
        and target.flags.writeable
        and min(matrix.shape) > 0
    )


def _call(entry: tuple[Omatcopy, type], target: np.ndarray, matrix: np.ndarray) -> None:
    kernel, _ = entry
    rows, cols = matrix.shape
    kernel(
        _ROW_MAJOR, _TRANSPOSE, rows, cols, 1.0,
        matrix.ctypes.data, matrix.strides[0] // matrix.itemsize,
        target.ctypes.data, target.strides[0] // target.itemsize,
    )  # fmt: skip


def _subnormals_survive(entry: tuple[Omatcopy, type], dtype: np.dtype) -> bool:
    tiny = np.full((1, 1), np.finfo(dtype).smallest_subnormal, dtype=dtype)
    out = np.zeros_like(tiny)
    _call(entry, out, tiny)
    return out.tobytes() == tiny.tobytes()


def _bound() -> dict[np.dtype, tuple[Omatcopy, type]]:
    global _kernels
    with _lock:
        if _kernels is None:
            try:
                _kernels = _bind()
            except Exception:  # noqa: BLE001 - any surprise from a foreign library: use NumPy's copy
                _kernels = {}
        return _kernels


def _bind() -> dict[np.dtype, tuple[Omatcopy, type]]:
    from threadpoolctl import threadpool_info

    paths = [i["filepath"] for i in threadpool_info() if i.get("internal_api") == "openblas"]
    if not paths:
        return {}
    library = ctypes.CDLL(paths[0])
    for prefix, suffix, integer in _SYMBOLS:
        names = {np.float32: f"{prefix}somatcopy{suffix}", np.float64: f"{prefix}domatcopy{suffix}"}
        if not all(hasattr(library, name) for name in names.values()):
            continue
        kernels: dict[np.dtype, tuple[Omatcopy, type]] = {}
        for dtype, name in names.items():
            scalar = ctypes.c_float if dtype is np.float32 else ctypes.c_double
            function = getattr(library, name)
            function.argtypes = [ctypes.c_int, ctypes.c_int, integer, integer, scalar,
                                 ctypes.c_void_p, integer, ctypes.c_void_p, integer]  # fmt: skip
            function.restype = None
            kernels[np.dtype(dtype)] = (function, integer)
        return kernels if _agrees_with_numpy(kernels) else {}
    return {}


def _agrees_with_numpy(kernels: dict[np.dtype, tuple[Omatcopy, type]]) -> bool:
    """Transpose odd-sized blocks at unaligned offsets, inside wider rows, and compare bits with NumPy."""
    rng = np.random.default_rng(12345)
    for dtype, entry in kernels.items():
        wide = rng.standard_normal((41, 67)).astype(dtype)
        wide[3, 5], wide[7, 9] = -0.0, np.inf
        matrix = wide[1:38, 3:60]  # rows of 57 inside rows of 67, starting 3 elements in
        canvas = np.full((60, 45), 7, dtype=dtype)
        target = canvas[2:59, 1:38]
        _call(entry, target, matrix)
        expected = np.full_like(canvas, 7)
        expected[2:59, 1:38] = matrix.T
        if canvas.tobytes() != expected.tobytes():
            return False
    return True
