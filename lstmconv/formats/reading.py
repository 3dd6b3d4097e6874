"""Read a tensor's bytes from a file straight into its array (no intermediate ``bytes`` copy)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

__all__ = ["read_into"]


def read_into(handle: BinaryIO, array: np.ndarray, offset: int) -> bool:
    """Fill C-contiguous ``array`` with the file's bytes from ``offset`` on; False if the file ends first.

    ``readinto`` of a buffered file hands a large read to the operating system with the array as its buffer.
    """
    view = memoryview(array.reshape(-1)).cast("B")
    handle.seek(offset)
    done = 0
    while done < len(view):  # a read may return less than asked for
        read = handle.readinto(view[done:])
        if not read:
            return False
        done += read
    return True
