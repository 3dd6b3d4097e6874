"""Memory for large arrays, handed out again once nothing uses it, while a streaming conversion runs.

Fresh memory is not free: the kernel zeroes every page a process touches for the first time. A streaming
conversion reads each layer into new arrays, converts it into more new arrays and drops them all once the layer
is written, just before the next layer asks for the same sizes again; with NumPy's arrays going back to the
system on ``free`` (glibc returns large blocks at once), every layer paid for zeroed pages it then overwrote
(the kernel's ``clear_page`` is then a large share of a large conversion's CPU time).

Inside :func:`recycling` (which :func:`lstmconv.pipeline.convert.convert` enters), :func:`empty` returns
arrays backed by recycled buffers: a buffer is handed out again only when nothing refers to it any more, i.e.
no array made from it is alive anywhere (its reference count says so), so a caller that keeps an array keeps its
memory to itself. Outside :func:`recycling`, for arrays under 1 MiB and on interpreters without reference
counts, :func:`empty` is ``np.empty``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["empty", "recycling"]

_MIN_BYTES = 1 << 20  # smaller arrays come from the allocator's own free lists; recycling them gains nothing


def _reference_counts(buffers: list[np.ndarray]) -> list[int]:
    """Each buffer's reference count, as seen from here (the same expression for the pool and its calibration)."""
    return [sys.getrefcount(buffer) for buffer in buffers]


# The count of a buffer only the pool's list refers to, measured rather than assumed: what the interpreter adds
# for the loop and the call differs between Python versions. None where there are no reference counts (PyPy).
_IDLE: int | None = _reference_counts([np.empty(0, dtype=np.uint8)])[0] if hasattr(sys, "getrefcount") else None


class _Pool:
    """Buffers of raw bytes; one is idle when no array made from it is alive."""

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        """An idle buffer of exactly ``nbytes`` or, if there is none, a new one. Idle buffers are kept up to half
        the bytes in use (the least recently used go first): enough for the next layer to find the memory of
        the one before it (at most two layers are in flight), while the memory held stays within 1.5 times what
        the conversion uses (nearly every take reuses a buffer in a large conversion, for a few tens of MiB more peak RSS)."""
        with self.lock:
            idle = [count <= _IDLE for count in _reference_counts(self.buffers)]
            for position, (buffer, free) in enumerate(zip(self.buffers, idle)):
                if free and buffer.nbytes == nbytes:
                    del self.buffers[position]
                    self.buffers.append(buffer)  # most recently used last
                    return buffer
            fresh = np.empty(nbytes, dtype=np.uint8)
            in_use = nbytes + sum(buffer.nbytes for buffer, free in zip(self.buffers, idle) if not free)
            kept_idle = 0
            kept: list[np.ndarray] = []
            for buffer, free in reversed(list(zip(self.buffers, idle))):  # most recently used first
                if free:
                    if kept_idle + buffer.nbytes > in_use // 2:
                        continue  # released
                    kept_idle += buffer.nbytes
                kept.append(buffer)
            self.buffers = [*reversed(kept), fresh]
            return fresh


_pool: _Pool | None = None
_users = 0
_pool_lock = threading.Lock()


@contextlib.contextmanager
def recycling() -> Iterator[None]:
    """Recycle the buffers of :func:`empty` until the block ends (then they are released). Nests, and
    conversions running in several threads share one pool, which is safe: only unused buffers are reused."""
    global _pool, _users
    with _pool_lock:
        _users += 1
        if _pool is None:
            _pool = _Pool()
    try:
        yield
    finally:
        with _pool_lock:
            _users -= 1
            if _users == 0:
                _pool = None


def empty(shape: Any, dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C order), its memory recycled inside :func:`recycling`."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    pool = _pool
    if pool is None or nbytes < _MIN_BYTES or _IDLE is None:
        return np.empty(shape, dtype=dtype)
    # a view of the buffer: while it (or any view of it) lives, the buffer's reference count says it is in use
    return pool.take(nbytes).view(dtype).reshape(shape)
