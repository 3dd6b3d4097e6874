"""Writing through a temporary file renamed into place.

The destination is written to a temporary file beside it and renamed into place only after the write and
the read-back comparison succeed, so a failure never leaves a partial or changed destination.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from lstmconv.errors import LstmconvError, OutputExistsError, OutputWriteError

__all__ = ["write_atomically"]


def write_atomically(
    destination: Path,
    write: Callable[..., None],
    check: Callable[..., None],
    *,
    companions: Sequence[Path] = (),
    replace: bool = False,
) -> None:
    """Write through ``write`` into a temporary file beside ``destination``, ``check`` it, then put it in place.

    ``companions`` are more files the same write produces (ONNX external data, an emitted module): each gets
    its own temporary file, passed to ``write`` and ``check`` after the destination's (a companion ``write``
    removes is one it had nothing for, and is not placed), and is put in place just before the destination,
    so that a complete destination never refers to a missing or unfinished companion.
    The files are one set: either all of them are placed, or none is and every file that was there before is
    as it was (a file replaced is kept under a hard link until the whole set is in place). Without ``replace``
    an existing file is never replaced, even one that appeared since the destination was checked: each file is
    linked into place, which fails if the name exists. On any failure every temporary file is removed; an error
    that names a temporary file is raised naming its final path instead.
    """
    finals = (destination, *companions)
    temporaries: list[Path] = []
    created: list[Path] = []  # names that did not exist before
    kept: list[tuple[Path, Path]] = []  # (name, the old file under a temporary name)
    try:
        for final in finals:
            try:
                temporaries.append(_temporary_beside(final))
            except OSError as error:
                raise _write_error(error, final) from error
        write(*temporaries)
        # a companion the write removed is one it had nothing for: it is not placed
        made = [(temporary, final) for temporary, final in zip(temporaries, finals) if os.path.lexists(temporary) or final == destination]
        for temporary, _ in made:  # a writer that made its file anew (safetensors does) made it 0600
            _normal_mode(temporary)
        check(*temporaries)
        for temporary, final in reversed(made):  # the destination last
            existed = replace and os.path.lexists(final)
            if existed:
                kept.append((final, _keep_aside(final)))
            _place(temporary, final, replace=replace)
            if not existed:
                created.append(final)  # only once placed: a name another process took is never removed
        for _, old in kept:  # the set is in place: the old files go
            old.unlink(missing_ok=True)
    except BaseException as error:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        for final in created:
            final.unlink(missing_ok=True)
        for final, old in kept:  # as it was
            if os.path.lexists(final) and os.path.samestat(os.lstat(final), os.lstat(old)):
                old.unlink()  # never replaced (rename() between two links of one file does nothing)
            else:
                os.replace(old, final)
        renames = {str(temporary): str(final) for temporary, final in zip(temporaries, finals)}
        failed_write = _output_error(error, renames, destination)
        if failed_write is not None:
            raise failed_write from error
        if isinstance(error, LstmconvError):
            # the same error, naming the file the user asked for (the temporary file is gone)
            raise error.with_files_renamed(renames).with_traceback(error.__traceback__) from error.__cause__
        if isinstance(error, OSError):  # e.g. the disk filled up while writing the temporary file
            if str(error.filename) in renames:  # (setting filename2 at all, even to None, changes the message)
                error.filename = renames[str(error.filename)]
            if str(error.filename2) in renames:
                error.filename2 = renames[str(error.filename2)]
        raise


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _output_error(error: BaseException, renames: dict[str, str], destination: Path) -> OutputWriteError | None:
    """What a failure of the system while writing an output becomes (None for any other error): an error naming
    the output, never the temporary file and never the source."""
    if isinstance(error, RuntimeError) and "PytorchStreamWriter" in str(error):  # torch.save's own write errors
        return OutputWriteError(f"cannot write it: {str(error).splitlines()[-1].strip()}", file=destination)
    if not isinstance(error, OSError) or isinstance(error, LstmconvError):
        return None
    code = error.errno
    if code is None and (found := re.search(r"errno = (\d+)", str(error))):  # h5py puts it inside its message
        code = int(found.group(1))
    if str(error.filename) in {*renames, *renames.values()}:
        return _write_error(error, Path(renames.get(str(error.filename), str(error.filename))), code)
    if code in _FULL:
        return _write_error(error, destination, code)
    return None


def _write_error(error: OSError, final: Path, code: int | None = None) -> OutputWriteError:
    """The error an output's write failure becomes: it names the output and what stopped it."""
    code = error.errno if code is None else code
    reason = os.strerror(code) if code is not None else str(error)
    if code in _FULL:  # "No space left on device writing it"
        made = OutputWriteError(f"{reason} writing it", file=final, hint="free some space or write it elsewhere")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        made = OutputWriteError(f"cannot write it: {reason}", file=final, hint="write it to a folder you can write to")
    else:
        made = OutputWriteError(f"cannot write it: {reason}", file=final)
    made.errno = code
    return made


def _keep_aside(final: Path) -> Path:
    """A second name for the existing file ``final``, kept until the new set is in place (a hard link; where
    there are none, the file is moved aside)."""
    old = _temporary_name(final, "old")
    try:
        os.link(final, old, follow_symlinks=False)
    except OSError:
        os.replace(final, old)
    return old


def _place(temporary: Path, final: Path, *, replace: bool) -> None:
    """Give the finished ``temporary`` its final name. Without ``replace`` the name must be free at this very
    moment: a hard link fails if it is taken (another conversion placed a file since the check)."""
    if replace:
        os.replace(temporary, final)
        return
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise OutputExistsError("destination exists", file=final, hint="pass --force (force=True) to overwrite it") from None
    except OSError:  # no hard links here: the check before writing is all there is
        if os.path.lexists(final):
            raise OutputExistsError("destination exists", file=final, hint="pass --force (force=True) to overwrite it") from None
        os.replace(temporary, final)
        return
    temporary.unlink()


def _temporary_name(final: Path, role: str) -> Path:
    """A name beside ``final`` that no file has (for a file moved aside)."""
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".{role}.tmp", dir=final.parent)
    os.close(handle)
    os.unlink(name)
    return Path(name)


def _temporary_beside(final: Path) -> Path:
    """A new empty file beside ``final``, with a normal file's mode (``mkstemp`` creates 0600)."""
    handle, temporary_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        _normal_mode(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _normal_mode(path: Path) -> None:
    """Give ``path`` the mode a new file gets from the umask (0666 less the umask), as ``open`` would."""
    umask = os.umask(0)
    os.umask(umask)
    if path.exists():
        os.chmod(path, 0o666 & ~umask)
