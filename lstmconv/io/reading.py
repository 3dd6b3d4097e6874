"""Reading inputs: only regular files, and a tensor's bytes straight into its array (no ``bytes`` copy)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lstmconv.errors import InputFormatError

__all__ = ["read_into", "read_json", "regular_file"]

#: Largest JSON lstmconv reads (an architecture file): far above any real model's, far below memory.
MAX_JSON_BYTES = 256 << 20


def regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (links followed); else a clear refusal. A FIFO would block the reader
    forever and a device (``/dev/zero``) never ends: lstmconv reads only files whose size it knows."""
    path = Path(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InputFormatError(f"{what} not found", file=path) from None
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror or error}", file=path) from None
    if stat.S_ISDIR(status.st_mode):
        raise InputFormatError("is a directory, not a model file", file=path)
    if not stat.S_ISREG(status.st_mode):
        raise InputFormatError(
            "not a regular file (a FIFO, device or socket): lstmconv reads only files whose size it knows", file=path
        )
    return path


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


def read_json(path: Path, what: str) -> Any:
    """The JSON document at ``path`` (a model.json, a manifest...), refused clearly when it is not a regular file,
    larger than any model's, nested deeper than Python parses, or not JSON; ``what`` names it in messages."""
    regular_file(path, what)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InputFormatError(f"{what} is larger than any model's", file=path, actual=f"{size} bytes")
    try:
        return json.loads(path.read_bytes())
    except RecursionError:
        raise InputFormatError(f"{what} is nested too deeply to be a model's", file=path) from None
    except (OSError, ValueError) as error:
        raise InputFormatError(f"cannot read {what}: {error}", file=path) from None
