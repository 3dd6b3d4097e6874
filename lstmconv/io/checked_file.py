"""A file written piece by piece, each piece read back as written, made durable before it is used.

The streaming writers (``.safetensors`` and ``.onnx``) hold one layer at a time, so the file is their only
copy of what they wrote: every piece is compared with the file's bytes right after it is written (through a
read-only map, without a second copy), and :meth:`CheckedFile.close` flushes the file to disk before the
caller renames it into place. Most of that flushing happens while the conversion goes on:
:meth:`CheckedFile.flush_behind` starts a background ``fdatasync`` of what is written so far (once 4 MiB are
unflushed), so the final ``fsync`` only has the last layer left to wait for.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstmconv.errors import VerificationError

if TYPE_CHECKING:  # imported on the first background flush: small files never start one
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["CheckedFile"]

_COMPARE_CHUNK = 8 << 20  # bytes compared at a time, so the comparison allocates little
_FLUSH_BEHIND_BYTES = 4 << 20  # less than this written since the last flush: left to close()

# macOS has no fdatasync; fsync is the same guarantee plus the metadata
_datasync = getattr(os, "fdatasync", os.fsync)


class CheckedFile:
    """Write ``path`` from ``start`` onwards (the bytes before it are written last with :meth:`write_at`)."""

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = path
        self.handle = path.open("w+b")
        self.handle.truncate(0)
        self.position = start
        self._flusher: ThreadPoolExecutor | None = None
        self._flushing: Future[None] | None = None
        self._flushed_to = start  # where the last background flush started

    def append(self, data: bytes | np.ndarray, *, tensor: str | None = None) -> int:
        """Write ``data`` at the current end, check it reads back, and return where it starts."""
        start = self.position
        self.write_at(start, data, tensor=tensor)
        self.position = start + _nbytes(data)
        return start

    def write_at(self, offset: int, data: bytes | np.ndarray, *, tensor: str | None = None) -> None:
        """Write ``data`` at ``offset`` and check it reads back (``tensor`` names it in the error)."""
        view = _bytes_view(data)
        self.handle.seek(offset)
        self.handle.write(view)
        self.handle.flush()
        if not self._reads_back(view, offset):
            raise VerificationError("bytes read back differ from what was written", file=self.path, tensor=tensor)

    def _reads_back(self, view: memoryview, start: int) -> bool:
        """Compare through read-only maps of the file, one window at a time (mapped pages count as memory)."""
        written = np.frombuffer(view, dtype=np.uint8)
        for offset in range(0, len(view), _COMPARE_CHUNK):
            part = written[offset : offset + _COMPARE_CHUNK]
            at = start + offset
            base = at - at % mmap.ALLOCATIONGRANULARITY
            with mmap.mmap(self.handle.fileno(), at - base + len(part), access=mmap.ACCESS_READ, offset=base) as mapped:
                on_disk = np.frombuffer(mapped, dtype=np.uint8, count=len(part), offset=at - base)
                same = _same_bytes(on_disk, part)
                del on_disk  # the map cannot close while an array looks into it
            if not same:
                return False
        return True

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (for moving data inside the file)."""
        return os.pread(self.handle.fileno(), size, offset)

    def flush_behind(self) -> None:
        """Start flushing what is written so far to disk in the background (unless a flush still runs, or
        less than 4 MiB was written since the last one: a small file is flushed once, by :meth:`close`)."""
        if self._flushing is not None and not self._flushing.done():
            return
        if self.position - self._flushed_to < _FLUSH_BEHIND_BYTES:
            return
        if self._flushing is not None:
            self._flushing.result()  # raise a failed flush (EIO, ENOSPC on some filesystems) now
        if self._flusher is None:
            from concurrent.futures import ThreadPoolExecutor

            self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmconv-flush")
        self._flushed_to = self.position
        self._flushing = self._flusher.submit(_datasync, self.handle.fileno())

    def _stop_flushing(self) -> None:
        """Wait for the background flush (so the file is not closed under it) and raise its error."""
        flushing, self._flushing = self._flushing, None
        if self._flusher is not None:
            self._flusher.shutdown(wait=True)
            self._flusher = None
        if flushing is not None:
            flushing.result()

    def close(self) -> None:
        """Flush everything to disk and close."""
        self.handle.flush()
        self._stop_flushing()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def abort(self) -> None:
        """Close without finishing (the caller removes the file); nothing after :meth:`close`."""
        if not self.handle.closed:
            try:
                self._stop_flushing()
            except OSError:
                pass  # the file is being thrown away: a failed flush of it does not matter
            finally:
                self.handle.close()


def _bytes_view(data: bytes | np.ndarray) -> memoryview:
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data)).cast("B")
    return memoryview(data).cast("B")


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two equally long byte arrays are equal, compared 8 bytes at a time (faster than byte by byte),
    the last ``len % 8`` bytes one by one."""
    whole = len(a) - len(a) % 8
    return np.array_equal(a[:whole].view(np.uint64), b[:whole].view(np.uint64)) and np.array_equal(a[whole:], b[whole:])


def _nbytes(data: bytes | np.ndarray) -> int:
    return data.nbytes if isinstance(data, np.ndarray) else len(data)
