"""Copy a transposed view into a C-ordered array fast: tile by tile, over two threads for large arrays.

Converting between Keras ``(in, out)`` and torch/ONNX ``(out, in)`` matrices is a transposition of every
weight, the largest cost of a conversion after the I/O. A plain ``target[...] = source.T`` walks one side with
a large stride and misses the cache on every element; copying 256 x 256 tiles keeps both sides in cache (about
twice as fast). NumPy releases the GIL while it copies, so large arrays are split into two bands of rows done
at once (half the time on two cores, measured in ``benchmarks/bench.py large``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["copy_into"]

_TILE = 256
_PARALLEL_BYTES = 1 << 20  # below this, starting a second thread costs more than it saves
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def copy_into(target: np.ndarray, source: np.ndarray) -> None:
    """``target[...] = source`` (same shape), faster when ``source`` is a transposed or strided 2-D view."""
    if source.ndim != 2 or source.flags.c_contiguous or source.size < _TILE * _TILE:
        target[...] = source
        return
    rows = source.shape[0]
    workers = min(2, os.cpu_count() or 1)
    if workers < 2 or source.nbytes < _PARALLEL_BYTES or rows < 2 * _TILE:
        _copy_tiles(target, source)
        return
    middle = (rows // 2 // _TILE) * _TILE
    other = _shared_pool().submit(_copy_tiles, target[middle:], source[middle:])
    _copy_tiles(target[:middle], source[:middle])
    other.result()


def _copy_tiles(target: np.ndarray, source: np.ndarray) -> None:
    rows, cols = source.shape
    for i in range(0, rows, _TILE):
        for j in range(0, cols, _TILE):
            target[i : i + _TILE, j : j + _TILE] = source[i : i + _TILE, j : j + _TILE]


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmconv-copy")
        return _pool
