"""Copy a transposed view into a C-ordered array fast: with OpenBLAS, or tile by tile, over two threads.

Converting between Keras ``(in, out)`` and torch/ONNX ``(out, in)`` matrices is a transposition of every
weight, the largest cost of a conversion after the I/O. Matrices of 1 MiB and more go through OpenBLAS's
transposition when NumPy's OpenBLAS has it and it is exact for them (:mod:`lstmconv._fast.blas_transpose`, 5.5 times
faster). Otherwise a plain ``target[...] = source.T`` would walk one side with a large stride and miss the
cache on every element; copying 256 x 256 tiles keeps both sides in cache (about twice as fast). Both release
the GIL, so large arrays are split into two bands of rows done at once.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from lstmconv._fast.blas_transpose import transpose_into

if TYPE_CHECKING:  # imported when first needed: a small conversion never starts the pool
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["copy_into"]

_TILE = 256
_PARALLEL_BYTES = 1 << 20  # below this, starting a second thread costs more than it saves
_BLAS_BYTES = 1 << 20  # below this, not worth binding OpenBLAS (threadpoolctl must first find it among the loaded libraries)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def copy_into(target: np.ndarray, source: np.ndarray) -> None:
    """``target[...] = source`` (same shape), faster when ``source`` is a transposed or strided 2-D view."""
    if source.ndim != 2 or source.flags.c_contiguous or source.size < _TILE * _TILE:
        target[...] = source
        return
    rows = source.shape[0]
    workers = min(2, os.cpu_count() or 1)
    copy = _copy_transposed if source.nbytes >= _BLAS_BYTES else _copy_tiles
    if workers < 2 or source.nbytes < _PARALLEL_BYTES or rows < 2 * _TILE:
        copy(target, source)
        return
    middle = (rows // 2 // _TILE) * _TILE
    other = _shared_pool().submit(copy, target[middle:], source[middle:])
    copy(target[:middle], source[:middle])
    other.result()


def _copy_transposed(target: np.ndarray, source: np.ndarray) -> None:
    """OpenBLAS when ``source`` is a transposed matrix it can take, else tiles."""
    if not transpose_into(target, source.T):
        _copy_tiles(target, source)


def _copy_tiles(target: np.ndarray, source: np.ndarray) -> None:
    rows, cols = source.shape
    for i in range(0, rows, _TILE):
        for j in range(0, cols, _TILE):
            target[i : i + _TILE, j : j + _TILE] = source[i : i + _TILE, j : j + _TILE]


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmconv-copy")
        return _pool
