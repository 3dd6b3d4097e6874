"""Where outputs go: destination checks, and writing through a temporary file renamed into place.

The destination is written to a temporary file beside it and renamed into place only after the write and
the read-back comparison succeed, so a failure never leaves a partial or changed destination.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lstmconv.errors import InputFormatError, OutputExistsError

__all__ = ["KERAS_SUFFIXES", "check_suffix", "check_destination", "write_atomically"]

KERAS_SUFFIXES = (".weights.h5", ".h5", ".keras")


def check_suffix(destination: Path, suffixes: tuple[str, ...], force: bool) -> None:
    if not destination.name.endswith(suffixes):
        raise InputFormatError(
            f"this target writes {', '.join(suffixes)} files, not '{destination.suffix or 'no suffix'}'",
            file=destination,
            hint=f"name the output e.g. {destination.with_suffix(suffixes[0]).name}",
        )
    check_destination(destination, force)


def check_destination(destination: Path, force: bool) -> None:
    if destination.exists() and not force:
        raise OutputExistsError("destination exists", file=destination, hint="pass --force to overwrite it")
    if destination.is_dir():
        raise OutputExistsError("destination is a directory", file=destination)
    if not destination.parent.exists():
        raise InputFormatError("destination folder does not exist", file=destination.parent)


def write_atomically(destination: Path, write: Callable[[Path], None], check: Callable[[Path], None]) -> None:
    """Write through ``write`` into a temporary file beside ``destination``, ``check`` it, then rename it."""
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f".tmp{destination.suffix}", dir=destination.parent
    )
    os.close(handle)
    temporary = Path(temporary_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; give the file a normal file's mode
    try:
        write(temporary)
        check(temporary)
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
