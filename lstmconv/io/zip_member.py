"""A zip archive's member as a seekable file, for HDF5: every seek costs the same.

``ZipFile.open`` gives a stream whose backward seeks re-read the member from its start, and the HDF5 library
seeks back and forth all the time: reading a 100 MB Keras 3 weights file through it takes minutes. A stored
(uncompressed) member, as Keras writes ``model.weights.h5``, is read in place with ``pread`` over its byte range
in the archive; a compressed one is inflated once into a temporary file (its size was checked against zip
bombs before). Either way the cost is linear in the member's size.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_member"]


class _Region(io.RawIOBase):
    """Bytes ``[start, start + size)`` of an open file, read with ``pread``."""

    def __init__(self, descriptor: int, start: int, size: int) -> None:
        super().__init__()
        self.descriptor, self.start, self.size, self.position = descriptor, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        length = max(0, min(len(buffer), self.size - self.position))
        if not length:
            return 0
        data = os.pread(self.descriptor, length, self.start + self.position)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


@contextlib.contextmanager
def open_member(path: Path, member: str) -> Iterator[BinaryIO]:
    """``member`` of the zip archive ``path`` as a seekable binary file (see the module docstring)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        if info.compress_type == zipfile.ZIP_STORED:
            with path.open("rb") as handle:
                handle.seek(info.header_offset)
                header = handle.read(30)
                if len(header) < 30 or header[:4] != b"PK\x03\x04":
                    raise zipfile.BadZipFile(f"no local header for {member}")
                start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
                if start + info.file_size > os.fstat(handle.fileno()).st_size:
                    raise zipfile.BadZipFile(f"{member} runs past the end of the archive")
                yield io.BufferedReader(_Region(handle.fileno(), start, info.file_size), buffer_size=1 << 16)  # type: ignore[misc]
            return
        with tempfile.TemporaryFile() as inflated, archive.open(info) as stream:
            shutil.copyfileobj(stream, inflated, 1 << 20)
            inflated.seek(0)
            yield inflated  # type: ignore[misc]
