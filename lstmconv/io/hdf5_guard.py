"""Walk an untrusted HDF5 file's structure in a forked child first, with a time limit.

The HDF5 C library can loop forever or crash on a damaged file (seen in fuzzing: reading one corrupted
attribute never returned), and a signal cannot interrupt C code. So before lstmconv reads a file, a forked
child opens it and touches every group, attribute and dataset header the readers will touch (not the data);
if the child does not finish in time or dies, the file is refused. Where ``os.fork`` does not exist the walk
is skipped.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path

from lstmconv.errors import InputFormatError

__all__ = ["prescan_hdf5", "PRESCAN_SECONDS"]

PRESCAN_SECONDS = 10.0  # for a small file; a larger one gets more (PRESCAN_BYTES_PER_SECOND), a busy machine too
PRESCAN_BYTES_PER_SECOND = 2 << 20  # far slower than the walk reads, so that no valid file is ever refused


def _walk(path: Path, member: str | None) -> None:
    """Touch every attribute and object header, going on past errors so that nothing is left untouched."""
    import h5py

    seen: set[int] = set()

    def touch(node: object, depth: int) -> None:
        if depth > 64:
            return
        try:
            for key in list(node.attrs):  # type: ignore[attr-defined]
                try:
                    node.attrs[key]  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 - the reader reports it properly
                    pass
        except Exception:  # noqa: BLE001
            pass
        if isinstance(node, h5py.Dataset):
            try:
                _ = (node.shape, node.dtype, node.chunks, node.is_virtual, node.external)
            except Exception:  # noqa: BLE001
                pass
            return
        if isinstance(node, h5py.Group):
            try:
                names = list(node)
            except Exception:  # noqa: BLE001
                return
            for name in names:
                try:
                    link = node.get(name, getlink=True)
                    if isinstance(link, h5py.ExternalLink):
                        continue
                    child = node[name]
                    address = child.id.__hash__()
                except Exception:  # noqa: BLE001
                    continue
                if address in seen:
                    continue
                seen.add(address)
                touch(child, depth + 1)

    if member is None:
        with h5py.File(path, "r") as handle:
            touch(handle, 0)
        return
    from lstmconv.io.zip_member import open_member

    with open_member(path, member) as stream, h5py.File(stream, "r") as handle:
        touch(handle, 0)


def prescan_hdf5(
    path: Path, member: str | None = None, seconds: float = PRESCAN_SECONDS, meanwhile: Callable[[], object] | None = None
) -> None:
    """Refuse ``path`` (or its zip ``member``) if walking its HDF5 structure hangs or crashes.

    ``meanwhile`` runs in this process while the child walks: work that reads nothing of the file (importing a
    writer), done on this core while the walk takes the other instead of after it. The time limit starts when it
    returns, so a slow ``meanwhile`` cannot make a healthy file look hung.
    """
    if not hasattr(os, "fork"):
        if meanwhile is not None:
            meanwhile()
        return
    seconds += max(0, path.stat().st_size - (16 << 20)) / PRESCAN_BYTES_PER_SECOND  # the walk is linear in the size
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            _walk(path, member)
        except BaseException:  # a Python-level error is for the real reader to report properly
            code = 3
        os._exit(code)
    try:
        if meanwhile is not None:
            meanwhile()
        status = _wait(child, seconds)
    except BaseException:  # Ctrl-C or a failing ``meanwhile``: no child is left walking
        _kill(child)
        raise
    if status is None:
        raise InputFormatError(
            f"the HDF5 library did not finish reading this file's structure within {seconds:g} s "
            "(damaged files can make it loop); refused",
            file=path,
        )
    if os.WIFSIGNALED(status):
        raise InputFormatError(
            f"reading this file's HDF5 structure crashed the HDF5 library (signal {os.WTERMSIG(status)}); refused",
            file=path,
        )


def _wait(child: int, seconds: float) -> int | None:
    """``child``'s exit status, or None if it is still running after ``seconds`` (it is then killed)."""
    deadline = time.monotonic() + seconds
    try:  # a pidfd becomes readable when the child ends: no polling delay (Linux 5.3 and later)
        pidfd: int | None = os.pidfd_open(child)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            finished, status = os.waitpid(child, os.WNOHANG)
            if finished:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill(child)
                return None
            if pidfd is None:
                time.sleep(min(remaining, 0.002))
            else:
                select.select([pidfd], [], [], remaining)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill(child: int) -> None:
    """Kill and reap ``child`` (it may have ended already)."""
    try:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    except (ChildProcessError, ProcessLookupError):  # reaped already
        pass
