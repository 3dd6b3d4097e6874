"""Compute the next item of an iterator in a background thread while the caller handles the current one.

Used by the layer-by-layer writers: reading, converting and checking layer k+1 (NumPy, h5py and BLAS release
the GIL) overlaps with writing layer k, on one BLAS thread each. At most two items exist at once, the one the
caller holds and the one being computed, so memory stays bounded by a few layers rather than the model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

__all__ = ["run_ahead", "one_blas_thread_for"]

T = TypeVar("T")

_DONE = object()

# Limiting BLAS has a fixed cost (threadpoolctl resolves every loaded shared library to find it), a large share
# of a small model's conversion, while what it saves grows with the model; the two break even at a few MiB.
_ONE_BLAS_THREAD_FROM_BYTES = 4 * 2**20


def one_blas_thread_for(source: str | Path) -> bool:
    """Whether converting ``source`` is worth limiting BLAS to one thread (see :func:`run_ahead`)."""
    try:
        return Path(source).stat().st_size >= _ONE_BLAS_THREAD_FROM_BYTES
    except (OSError, ValueError):  # not a file (an in-memory source): limit, to be safe
        return True


def run_ahead(items: Iterator[T], *, one_blas_thread: bool = True) -> Iterator[T]:
    """Yield ``items`` in order, each computed while the caller still handles the one before.

    An exception raised by ``items`` is raised here, at the item where it happened. When the caller stops
    early (an exception, ``break``, Ctrl-C), the background thread is told to stop and joined: it finishes the
    item it is computing, never starts another, and nothing runs on after this generator is closed; then
    ``items`` is closed.
    """
    handed: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=1)
    may_compute = threading.Semaphore(1)  # the caller holds one item; one more may be computed
    stop = threading.Event()

    def produce() -> None:
        try:
            while True:
                may_compute.acquire()
                if stop.is_set():
                    return
                item = next(items, _DONE)
                handed.put((item, None))
                if item is _DONE:
                    return
                del item  # the caller holds it now; keeping it here would keep it alive one item longer
        except BaseException as error:  # handed to the caller's thread, which raises it
            handed.put((_DONE, error))

    # Both threads run NumPy products that are memory-bound (the check's batch is 4); two BLAS threads each
    # would fight over two cores and the memory bus (the check runs much slower). Process-wide while
    # this generator runs, restored when it is closed.
    if one_blas_thread:
        from threadpoolctl import threadpool_limits  # here: small conversions never need it

        blas = threadpool_limits(1, user_api="blas")
    else:
        blas = None
    worker = threading.Thread(target=produce, name="lstmconv-run-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handed.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            may_compute.release()  # the next item is computed while the caller handles this one
            yield item  # type: ignore[misc]
            del item  # the caller is done with it: do not hold it while the next one is computed
    finally:
        try:
            stop.set()
            may_compute.release()  # wake the worker if it waits for room, so that it sees ``stop``
            while worker.is_alive():
                try:  # make room if it is handing over an item nobody will take
                    handed.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()
        finally:
            if blas is not None:
                blas.restore_original_limits()
        close = getattr(items, "close", None)
        if close is not None:  # run the iterator's own clean-up, in this thread, now that the worker is gone
            close()
