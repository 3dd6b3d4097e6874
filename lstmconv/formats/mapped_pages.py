"""Give back the pages of a read-only file mapping once they have been copied out.

A page of a mapped file that has been read stays counted in the process's memory (its resident set) until the
mapping is closed, so reading a whole mapped file layer by layer would end with the whole file resident
(measured: a 1.1 GiB ``.pt`` mapped by ``torch.load(mmap=True)`` and copied out tensor by tensor peaked at 1.37
GiB RSS). ``madvise(MADV_DONTNEED)`` on a private file mapping drops the pages from the process; the data stays
in the file (and usually in the page cache), and touching the range again reads it back from the file.

Only for mappings of a file that nothing has written to: on anonymous memory, or on pages of a private mapping
that were written (copy-on-write), ``MADV_DONTNEED`` discards the data and later reads see zeros or the file's
bytes. Where ``madvise`` is not available (not Linux/glibc) nothing is dropped: the pages then stay resident
until the mapping is closed, which costs memory but never data.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Any

__all__ = ["drop_pages"]

_MADV_DONTNEED = 4  # <sys/mman.h> on Linux


def _madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_madvise_function = _madvise()


def drop_pages(address: int, nbytes: int) -> int:
    """Drop from the process the whole pages inside ``[address, address + nbytes)`` of a read-only private file
    mapping (see the module's docstring for why only those); partial pages at either end are kept, since they
    may hold data of a neighbour. Returns how many bytes were dropped (0 when ``madvise`` is unavailable or fails:
    dropping is only ever a saving)."""
    page = mmap.PAGESIZE
    start = -(-address // page) * page
    end = (address + nbytes) // page * page
    if _madvise_function is None or end <= start:
        return 0
    return end - start if _madvise_function(start, end - start, _MADV_DONTNEED) == 0 else 0
