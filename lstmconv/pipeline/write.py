"""Write a file layer by layer: the pipeline every streaming target shares.

A target module turns each layer into a :class:`PlannedLayer` (its tensors under their names in the file, and
how to finish its check) in a background thread (:mod:`lstmconv._fast.run_ahead`), while :func:`write_layers` writes
the layer before it to the target's stream (``.safetensors``:
:class:`~lstmconv.io.safetensors_stream.SafetensorsStream`; ONNX:
:class:`~lstmconv.io.onnx_stream.OnnxStream`), runs the target half of its check and drops it. What
describes the whole file comes last, and the file is renamed into place only once it is complete and checked
(:func:`lstmconv.io.atomic.write_atomically`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from lstmconv.errors import VerificationError
from lstmconv.io.safetensors_stream import SafetensorsStream
from lstmconv.pipeline.report import LayerReport
from lstmconv._fast.run_ahead import one_blas_thread_for, run_ahead
from lstmconv.io.atomic import write_atomically

__all__ = ["PlannedLayer", "write_layers", "write_safetensors", "header_reserve"]


class _TensorStream(Protocol):
    def add(self, name: str, array: np.ndarray, /) -> None: ...
    def flush_behind(self) -> None: ...
    def abort(self) -> None: ...


Stream = TypeVar("Stream", bound=_TensorStream)


@dataclass
class PlannedLayer:
    """One converted layer: its tensors in the order they are written, and ``finish``, which runs the target
    half of its check (in the writing thread, after they are written) and returns its report row, if any."""

    tensors: dict[str, np.ndarray]
    finish: Callable[[], LayerReport | None]


def write_layers(
    planned: Iterator[PlannedLayer],
    *,
    source: str | Path,
    destination: Path,
    open_stream: Callable[..., Stream],
    finish_file: Callable[[Stream], None],
    check: Callable[..., None],
    companions: Sequence[Path] = (),
    replace: bool = False,
) -> list[LayerReport]:
    """Write every planned layer to ``open_stream(temporary file)``, then ``finish_file(stream)`` (which may
    refuse the whole file: it runs once ``planned`` is exhausted, so what the planning thread collected is
    complete), ``check`` the file and rename it to ``destination``. Returns the report rows. ``companions``:
    files the stream writes besides the destination (:func:`lstmconv.io.atomic.write_atomically`); their
    temporary files are passed to ``open_stream`` and ``check`` after the destination's."""
    reports: list[LayerReport] = []

    def write(path: Path, *companion_paths: Path) -> None:
        stream = open_stream(path, *companion_paths)
        try:
            # closing(): the background thread is stopped and joined however this block ends
            with contextlib.closing(run_ahead(planned, one_blas_thread=one_blas_thread_for(source))) as items:
                for item in items:
                    for name, array in item.tensors.items():
                        stream.add(name, array)
                        stream.flush_behind()  # per tensor: the disk works while the next one is written
                    report = item.finish()
                    if report is not None:
                        reports.append(report)
                    del item
            finish_file(stream)
        finally:
            stream.abort()

    write_atomically(destination, write, check, companions=companions, replace=replace)
    return reports


def header_reserve(names: list[str], tensors: int) -> int:
    """Generous room for a ``.safetensors`` header: every tensor name, shape and offset, and each layer's
    description (the writer moves the data up once if it was not enough)."""
    return 8192 + 24 * 1024 * len(names) + 4 * sum(map(len, names)) + 600 * (tensors + 8 * len(names))


def write_safetensors(
    planned: Iterator[PlannedLayer],
    *,
    source: str | Path,
    destination: Path,
    reserve: int,
    before_header: Callable[[dict[str, object]], None],
    metadata: Callable[[], dict[str, str]],
    replace: bool = False,
) -> tuple[list[LayerReport], list[str]]:
    """:func:`write_layers` for a ``.safetensors`` target (each layer's tensors in name order), then the header
    with ``metadata()``; returns the report rows and the tensor names written. ``before_header`` sees the
    tensors written and may refuse the whole file."""
    written: list[str] = []

    def finish_file(stream: SafetensorsStream) -> None:
        before_header(stream.entries)
        stream.finish(metadata())
        written.extend(stream.entries)

    def check(path: Path) -> None:
        """The finished file parses as safetensors and lists exactly the tensors written."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            if set(handle.keys()) != set(written):  # noqa: SIM118 - not a dict
                raise VerificationError("the written file does not list the tensors written", file=path)

    in_name_order = (PlannedLayer(dict(sorted(item.tensors.items())), item.finish) for item in planned)
    reports = write_layers(
        in_name_order,
        source=source,
        destination=destination,
        open_stream=lambda path: SafetensorsStream(path, reserve),
        finish_file=finish_file,
        check=check,
        replace=replace,
    )
    return reports, written
