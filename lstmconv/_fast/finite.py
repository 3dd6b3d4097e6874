"""Whether arrays hold NaN or Inf, read in one pass with no temporary array.

``np.isfinite(array).all()`` allocates a boolean array a quarter of a float32 array's size: fresh memory that the
kernel zeroes first (see :mod:`lstmconv._fast.buffers`), for every weight of every layer. A sum needs none, reads any
memory layout in order, and cannot hide a NaN or an infinity: NaN plus anything is NaN, an infinity stays one
unless an opposite infinity makes it NaN. Only overflow makes a finite array's sum infinite, and only opposite
infinities make a NaN-free sum NaN; in those rare cases the exact test (with its temporary) decides.
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_finite", "no_nan"]


def _sum(array: np.ndarray) -> np.generic:
    with np.errstate(over="ignore", invalid="ignore"):  # overflow and inf - inf are expected outcomes here
        return np.sum(array)


def all_finite(array: np.ndarray) -> bool:
    """No element of ``array`` is NaN or infinite (integers and booleans always pass)."""
    if array.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(_sum(array))) or bool(np.isfinite(array).all())


def no_nan(array: np.ndarray) -> bool:
    """No element of ``array`` is NaN."""
    if array.dtype.kind not in "fc":
        return True
    return not bool(np.isnan(_sum(array))) or not bool(np.isnan(array).any())
