"""Write a ``.safetensors`` file tensor by tensor, holding no more than one layer in memory.

The format is an 8-byte little-endian header length, a JSON header (names, dtypes, shapes, byte offsets,
``__metadata__``), then the tensors' bytes back to back. Tensors are written first, after space reserved
for the header; the header is written last, padded with spaces to the reserved size (whitespace after the
JSON is allowed, and the safetensors library pads the same way). If the header outgrows the reservation,
the file is rewritten once with a larger one. Every tensor is read back from the file right after it is
written and compared byte for byte.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from lstmconv.errors import VerificationError

__all__ = ["SafetensorsStream"]

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
        back = os.pread(self.handle.fileno(), len(view), start)
        if not np.array_equal(np.frombuffer(back, dtype=np.uint8), np.frombuffer(view, dtype=np.uint8)):
            raise VerificationError("tensor read back differs from what was written", file=self.path, tensor=key)
        self.entries[key] = {
            "dtype": _DTYPES[data.dtype.name],
            "shape": list(data.shape),
            "data_offsets": [self.offset, self.offset + len(view)],
        }
        self.offset += len(view)

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
            self.handle.close()
