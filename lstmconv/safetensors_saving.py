"""Write a ``.safetensors`` file layer by layer, for the targets that are one: torch and canonical.

The target module turns each layer into :class:`PlannedLayer` (its tensors under their keys in the file, and
how to finish its check) in a background thread (:mod:`lstmconv.run_ahead`), while :func:`write_layers` writes
the layer before it (:class:`~lstmconv.formats.safetensors_stream.SafetensorsStream`), runs the target half of
its check and drops it. The header comes last, atomically renamed into place with the rest
(:func:`lstmconv.writing.write_atomically`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmconv.errors import VerificationError
from lstmconv.formats.safetensors_stream import SafetensorsStream
from lstmconv.reporting import LayerReport
from lstmconv.run_ahead import one_blas_thread_for, run_ahead
from lstmconv.writing import write_atomically

__all__ = ["PlannedLayer", "write_layers", "header_reserve"]


@dataclass
class PlannedLayer:
    """One converted layer: its tensors as keyed in the file, and ``finish``, which runs the target half of its
    check on those tensors (in the writing thread, after they are written) and returns the report row."""

    tensors: dict[str, np.ndarray]
    finish: Callable[[], LayerReport]


def header_reserve(names: list[str], tensors: int) -> int:
    """Generous room for the header: every tensor name, shape and offset, and each layer's description (the
    writer moves the data up once if it was not enough)."""
    return 8192 + 24 * 1024 * len(names) + 4 * sum(map(len, names)) + 600 * (tensors + 8 * len(names))


def write_layers(
    planned: Iterator[PlannedLayer],
    *,
    source: str | Path,
    destination: Path,
    reserve: int,
    before_header: Callable[[dict[str, object]], None],
    metadata: Callable[[], dict[str, str]],
) -> tuple[list[LayerReport], list[str]]:
    """Write every planned layer to ``destination``, then the header with ``metadata()``; returns the report rows
    and the tensor keys written. ``before_header`` sees the tensors written and may refuse the whole file (it
    runs once ``planned`` is exhausted, so what the planning thread collected is complete)."""
    reports: list[LayerReport] = []
    written: list[str] = []

    def write(path: Path) -> None:
        stream = SafetensorsStream(path, reserve)
        try:
            # closing(): the background thread is stopped and joined however this block ends
            with contextlib.closing(run_ahead(planned, one_blas_thread=one_blas_thread_for(source))) as items:
                for item in items:
                    for key in sorted(item.tensors):
                        stream.add(key, item.tensors[key])
                        stream.flush_behind()  # per tensor: the disk works while the next one is written
                    reports.append(item.finish())
                    del item
            before_header(stream.entries)
            stream.finish(metadata())
            written.extend(stream.entries)
        finally:
            stream.abort()

    def check(path: Path) -> None:
        """The finished file parses as safetensors and lists exactly the tensors written."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            if set(handle.keys()) != set(written):  # noqa: SIM118 - not a dict
                raise VerificationError("the written file does not list the tensors written", file=path)

    write_atomically(destination, write, check)
    return reports, written
