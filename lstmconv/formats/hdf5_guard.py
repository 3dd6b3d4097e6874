"""Walk an untrusted HDF5 file's structure in a forked child first, with a time limit.

The HDF5 C library can loop forever or crash on a damaged file (seen in fuzzing: reading one corrupted
attribute never returned), and a signal cannot interrupt C code. So before lstmconv reads a file, a forked
child opens it and touches every group, attribute and dataset header the readers will touch (not the data);
if the child does not finish in time or dies, the file is refused. Where ``os.fork`` does not exist the walk
is skipped.
"""

from __future__ import annotations

import os
import signal
import time
import zipfile
from pathlib import Path

from lstmconv.errors import InputFormatError

__all__ = ["prescan_hdf5", "PRESCAN_SECONDS"]

PRESCAN_SECONDS = 10.0


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
    with zipfile.ZipFile(path) as archive, archive.open(member) as stream, h5py.File(stream, "r") as handle:
        touch(handle, 0)


def prescan_hdf5(path: Path, member: str | None = None, seconds: float = PRESCAN_SECONDS) -> None:
    """Refuse ``path`` (or its zip ``member``) if walking its HDF5 structure hangs or crashes."""
    if not hasattr(os, "fork"):
        return
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            _walk(path, member)
        except BaseException:  # a Python-level error is for the real reader to report properly
            code = 3
        os._exit(code)
    deadline = time.monotonic() + seconds
    while True:
        finished, status = os.waitpid(child, os.WNOHANG)
        if finished:
            break
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            raise InputFormatError(
                f"the HDF5 library did not finish reading this file's structure within {seconds:g} s "
                "(damaged files can make it loop); refused",
                file=path,
            )
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        raise InputFormatError(
            f"reading this file's HDF5 structure crashed the HDF5 library (signal {os.WTERMSIG(status)}); refused",
            file=path,
        )
