"""Write a ``.safetensors`` file tensor by tensor, holding no more than one layer in memory.

The format is an 8-byte little-endian header length, a JSON header (names, dtypes, shapes, byte offsets,
``__metadata__``), then the tensors' bytes back to back. Tensors are written first, after space reserved
for the header; the header is written last, padded with spaces to the reserved size (whitespace after the
JSON is allowed, and the safetensors library pads the same way). If the header outgrows the reservation,
the file is rewritten once with a larger one. Every tensor is read back from the file right after it is
written and compared byte for byte.

The file is made durable before it is renamed into place, but most of that flushing happens while the
conversion goes on: :meth:`flush_behind` starts a background ``fdatasync`` of what is written so far, so the
final ``fsync`` only has the last layer and the header left to wait for.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lstmconv.errors import VerificationError

__all__ = ["SafetensorsStream"]

_READ_BACK_CHUNK = 8 << 20  # bytes compared at a time, so the comparison allocates little

# macOS has no fdatasync; fsync is the same guarantee plus the metadata
_datasync = getattr(os, "fdatasync", os.fsync)

_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


class SafetensorsStream:
    """Append tensors to ``path``; call :meth:`finish` with the metadata to write the header."""

    def __init__(self, path: Path, reserve: int) -> None:
        self.path = path
        self.reserve = max(reserve, 64)
        self.handle = path.open("w+b")
        self.handle.truncate(0)
        self.entries: dict[str, dict[str, object]] = {}
        self.offset = 0
        self._flusher: ThreadPoolExecutor | None = None
        self._flushing: Future[None] | None = None

    def add(self, key: str, array: np.ndarray) -> None:
        """Write ``array`` under ``key`` and check it by reading it back."""
        if key in self.entries:
            raise ValueError(f"duplicate tensor {key}")
        data = np.ascontiguousarray(array)
        view = memoryview(data).cast("B")
        start = 8 + self.reserve + self.offset
        self.handle.seek(start)
        self.handle.write(view)
        self.handle.flush()
        if not self._reads_back(data, start):
            raise VerificationError("tensor read back differs from what was written", file=self.path, tensor=key)
        self.entries[key] = {
            "dtype": _DTYPES[data.dtype.name],
            "shape": list(data.shape),
            "data_offsets": [self.offset, self.offset + len(view)],
        }
        self.offset += len(view)

    def _reads_back(self, data: np.ndarray, start: int) -> bool:
        """Whether the file holds ``data``'s bytes at ``start``, compared through a read-only map (no copy)."""
        if data.nbytes == 0:
            return True
        base = start - start % mmap.ALLOCATIONGRANULARITY
        written = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        with mmap.mmap(self.handle.fileno(), start - base + data.nbytes, access=mmap.ACCESS_READ, offset=base) as mapped:
            on_disk = np.frombuffer(mapped, dtype=np.uint8, count=data.nbytes, offset=start - base)
            same = all(
                np.array_equal(on_disk[i : i + _READ_BACK_CHUNK], written[i : i + _READ_BACK_CHUNK])
                for i in range(0, data.nbytes, _READ_BACK_CHUNK)
            )
            del on_disk  # the map cannot close while an array looks into it
        return same

    def flush_behind(self) -> None:
        """Start flushing what is written so far to disk in the background (unless a flush still runs)."""
        if self._flushing is not None and not self._flushing.done():
            return
        if self._flushing is not None:
            self._flushing.result()  # raise a failed flush (EIO, ENOSPC on some filesystems) now
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmconv-flush")
        self._flushing = self._flusher.submit(_datasync, self.handle.fileno())

    def _stop_flushing(self) -> None:
        """Wait for the background flush (so the file is not closed under it) and raise its error."""
        flushing, self._flushing = self._flushing, None
        if self._flusher is not None:
            self._flusher.shutdown(wait=True)
            self._flusher = None
        if flushing is not None:
            flushing.result()

    def finish(self, metadata: dict[str, str]) -> None:
        """Write the header (rewriting the file once if the reservation was too small) and close."""
        header = json.dumps({"__metadata__": metadata, **self.entries}, separators=(",", ":")).encode()
        if len(header) > self.reserve:
            self._grow(len(header))
        padded = header + b" " * (self.reserve - len(header))
        self.handle.seek(0)
        self.handle.write(struct.pack("<Q", len(padded)))
        self.handle.write(padded)
        self.handle.flush()
        self._stop_flushing()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def _grow(self, needed: int) -> None:
        new_reserve = needed + 4096
        shift = new_reserve - self.reserve
        end = 8 + self.reserve + self.offset
        chunk = 64 << 20
        position = end
        while position > 8 + self.reserve:  # move the data up, last chunk first, never overlapping badly
            size = min(chunk, position - (8 + self.reserve))
            position -= size
            data = os.pread(self.handle.fileno(), size, position)
            os.pwrite(self.handle.fileno(), data, position + shift)
        self.reserve = new_reserve

    def abort(self) -> None:
        """Close without a header (the caller removes the file)."""
        if not self.handle.closed:
            try:
                self._stop_flushing()
            except OSError:
                pass  # the file is being thrown away: a failed flush of it does not matter
            finally:
                self.handle.close()
