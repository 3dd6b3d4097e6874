"""Write a ``.safetensors`` file tensor by tensor, holding no more than one layer in memory.

The format is an 8-byte little-endian header length, a JSON header (names, dtypes, shapes, byte offsets,
``__metadata__``), then the tensors' bytes back to back. Tensors are written first, after space reserved
for the header; the header is written last, padded with spaces to the reserved size (whitespace after the
JSON is allowed, and the safetensors library pads the same way). If the header outgrows the reservation,
the data is moved up once to make room. Every piece is read back as written and the file is made durable
before it is closed (:class:`~lstmconv.io.checked_file.CheckedFile`).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from lstmconv.io.checked_file import CheckedFile

__all__ = ["SafetensorsStream", "SAFETENSORS_DTYPES"]

SAFETENSORS_DTYPES = {  # NumPy dtype name -> the safetensors header's dtype
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
_MOVE_CHUNK = 64 << 20


class SafetensorsStream:
    """Append tensors to ``path``; call :meth:`finish` with the metadata to write the header."""

    def __init__(self, path: Path, reserve: int) -> None:
        self.path = path
        self.reserve = max(reserve, 64)
        self.file = CheckedFile(path, start=8 + self.reserve)
        self.entries: dict[str, dict[str, object]] = {}
        self.offset = 0  # end of the data, counted from the end of the header

    def add(self, key: str, array: np.ndarray) -> None:
        """Write ``array`` under ``key`` (read back as written)."""
        if key in self.entries:
            raise ValueError(f"duplicate tensor {key}")
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))  # safetensors is little-endian
        self.file.append(array, tensor=key)
        self.entries[key] = {
            "dtype": SAFETENSORS_DTYPES[array.dtype.name],
            "shape": list(array.shape),
            "data_offsets": [self.offset, self.offset + array.nbytes],
        }
        self.offset += array.nbytes

    def flush_behind(self) -> None:
        """Start flushing the tensors written so far to disk in the background."""
        self.file.flush_behind()

    def finish(self, metadata: dict[str, str]) -> None:
        """Write the header (moving the data up once if the reservation was too small), flush and close."""
        header = json.dumps({"__metadata__": metadata, **self.entries}, separators=(",", ":")).encode()
        if len(header) > self.reserve:
            self._grow(len(header))
        padded = header + b" " * (self.reserve - len(header))
        self.file.write_at(0, struct.pack("<Q", len(padded)) + padded, tensor="the header")
        self.file.close()

    def _grow(self, needed: int) -> None:
        new_reserve = needed + 4096
        shift = new_reserve - self.reserve
        data_start = 8 + self.reserve
        position = data_start + self.offset
        while position > data_start:  # move the data up, last chunk first, so no chunk overwrites unread data
            size = min(_MOVE_CHUNK, position - data_start)
            position -= size
            self.file.write_at(position + shift, self.file.read(position, size))
        self.reserve = new_reserve

    def abort(self) -> None:
        """Close without a header (the caller removes the file)."""
        self.file.abort()
