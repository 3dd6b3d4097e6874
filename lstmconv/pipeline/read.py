"""Read: open a source through the registry and yield its layers one at a time, each checked as every source's
layers are (a damaged file is the input's error, two layers of one name and non-finite weights are refused).

Every path that reads a file goes through :func:`open_layers`: ``convert`` streams it to a target, ``load`` and
``verify`` collect it (:mod:`lstmconv.pipeline.load`), ``inspect`` describes it. Memory is bounded by the
largest layer: a layer's weights are read when it is reached and dropped by the caller once it is written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lstmconv._fast.finite import all_finite
from lstmconv.errors import InputFormatError, LstmconvError
from lstmconv.io.canonical_file import canonical_tensors
from lstmconv.io.reading import regular_file
from lstmconv.protocols import LayerItem, LayerSource, Options
from lstmconv.registry import detect_format, resolve_source, source_named
from lstmconv.schema import CanonicalModel, Layer, RecurrentMeta

__all__ = [
    "open_layers",
    "describe_file",
    "reading_errors",
    "refuse_nonfinite_layer",
    "refuse_nothing_read",
    "refuse_without_recurrent",
    "nonfinite_tensor",
]


@contextlib.contextmanager
def open_layers(
    source: str | Path, options: Options = Options(), *, meanwhile: Callable[[], object] | None = None
) -> Iterator[LayerSource]:
    """Open ``source`` (its format from ``options.source_format`` or detected, :func:`lstmconv.registry.detect_format`)
    for reading layer by layer. ``meanwhile`` may run while the source vets the file (a Keras file's HDF5
    structure is vetted in a forked child)."""
    path = resolve_source(Path(source))
    regular_file(path)
    if options.config is not None:
        regular_file(options.config, "architecture JSON")
    spec = source_named(options.source_format, path) if options.source_format else detect_format(path)
    skipped: list[str] = []
    with contextlib.ExitStack() as stack:
        with reading_errors(path):
            items, wiring, names = stack.enter_context(spec.load().open(path, options, meanwhile))
        layers = _checked_layers(path, items, skipped, options.allow_nonfinite)
        yield LayerSource(str(path), spec.name, layers, skipped, wiring, names, known_finite=not options.allow_nonfinite)


def _checked_layers(
    source: Path,
    items: Iterator[LayerItem | str],
    skipped: list[str],
    allow_nonfinite: bool,
) -> Iterator[LayerItem]:
    """``items`` (layers with their source references, or the text of a left-out layer, which goes to
    ``skipped``), with parser errors reported as the input's, and names and weights checked."""
    names: set[str] = set()
    while True:
        with reading_errors(source):  # parser errors are about the input; write errors stay OSErrors
            item = next(items, None)
        if item is None:
            return
        if isinstance(item, str):
            skipped.append(item)
            continue
        layer, reference = item
        if layer.name in names:
            raise InputFormatError(f"two layers are named {layer.name!r}", file=source)
        names.add(layer.name)
        if not allow_nonfinite:
            refuse_nonfinite_layer(layer, str(source))
        yield layer, reference
        del layer, reference, item


def refuse_without_recurrent(layers: Sequence[object], skipped: Sequence[str], path: str | Path) -> None:
    """lstmconv moves recurrent layers: a file without one is refused rather than half-converted."""
    if not any(isinstance(layer, RecurrentMeta) for layer in layers):
        found = ", ".join(getattr(layer, "name", "?") for layer in layers)
        raise InputFormatError(
            "no LSTM, GRU or SimpleRNN layer in this file",
            file=path,
            hint=f"found only: {found}" + (f"; left out: {'; '.join(skipped)}" if skipped else ""),
        )


@contextlib.contextmanager
def reading_errors(path: Path) -> Iterator[None]:
    """Turn whatever a parser raises on a damaged file into an InputFormatError naming the file."""
    try:
        yield
    except (LstmconvError, KeyboardInterrupt):
        raise
    except Exception as error:  # untrusted input: h5py, onnx, protobuf, zipfile, numpy errors
        if os.environ.get("LSTMCONV_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise InputFormatError(
            f"cannot read this file ({type(error).__name__}{': ' + message if message else ''})",
            file=path,
            hint="the file may be truncated or damaged",
        ) from None


def nonfinite_tensor(layer: Layer) -> tuple[str, np.ndarray] | None:
    """The first of ``layer``'s tensors (canonical key, array) holding NaN or Inf, or None."""
    tensors = canonical_tensors(CanonicalModel(layers=(layer,)))
    # The tensors are mostly per-gate views into the arrays read from the file: scanning those arrays whole reads
    # the same memory in order, where a strided view is copied through NumPy's buffers first (5% of a large
    # conversion). Only if one of them is not finite is each tensor scanned, to name it.
    if all(all_finite(whole) for whole in _whole_arrays(tensors.values())):
        return None
    for key, array in tensors.items():
        if not all_finite(array):
            return key, array
    return None


def _whole_arrays(arrays: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The contiguous arrays ``arrays`` look into (each once), as ``arrays``' dtypes; an array itself when its
    memory's owner cannot be read as its dtype."""
    wholes: dict[tuple[int, int, np.dtype], np.ndarray] = {}
    for array in arrays:
        owner = array.base if isinstance(array.base, np.ndarray) else array
        whole = owner.reshape(-1).view(array.dtype) if _elements_line_up(array, owner) else array
        wholes.setdefault((whole.__array_interface__["data"][0], whole.nbytes, whole.dtype), whole)
    return list(wholes.values())


def _elements_line_up(array: np.ndarray, owner: np.ndarray) -> bool:
    """Whether every element of ``array`` is one element of ``owner``'s memory read as ``array``'s dtype (so that
    scanning the owner scans the array): same dtype, or raw bytes (lstmconv._fast.buffers), and every element at a
    multiple of the item size from the owner's start. Not for an owner much larger than the array (a gate is a
    quarter of its matrix, an eighth of a bidirectional ONNX one): an owner holding a whole model, as arrays
    given by a caller may have, would be scanned again for every layer."""
    item = array.itemsize
    offset = array.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    return (
        owner.nbytes <= 16 * array.nbytes
        and owner.flags.c_contiguous
        and (owner.dtype == array.dtype or owner.dtype == np.uint8)
        and owner.nbytes % item == 0
        and offset % item == 0
        and all(stride % item == 0 for stride in array.strides)
    )


def refuse_nonfinite_layer(layer: Layer, source: str) -> None:
    """Raise when ``layer``'s weights hold NaN or Inf."""
    found = nonfinite_tensor(layer)
    if found is None:
        return
    key, array = found
    nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    layer_name, _, tensor = key.partition("/")
    raise InputFormatError(
        f"weights hold {nan} NaN and {inf} infinite values",
        file=source,
        layer=layer_name,
        tensor=tensor,
        hint="pass --allow-nonfinite (allow_nonfinite=True) to convert them anyway (the numeric check is then skipped for this layer)",
    )


def refuse_nothing_read(layers: Sequence[object], skipped: Sequence[str], path: str | Path) -> None:
    """Refuse a file in which no layer could be read (what was left out is the hint)."""
    if not layers:
        raise InputFormatError("no layer lstmconv can convert was found", file=path, hint="; ".join(skipped) or None)


def describe_file(
    source: str | Path, options: Options = Options(), *, each: Callable[[Layer], object] | None = None
) -> tuple[list[Layer], list[str]]:
    """The descriptions of a file's layers and what is left out (for ``lstmconv inspect``), one layer in memory
    at a time. Refuses what ``load`` refuses. ``each`` is called with every whole layer (weights too)."""
    described: list[Layer] = []
    with open_layers(source, options) as opened:
        for layer, _reference in opened.layers:
            described.append(layer.meta())
            if each is not None:
                each(layer)
            del layer, _reference
    refuse_nothing_read(described, opened.skipped, source)
    refuse_without_recurrent(described, opened.skipped, source)
    return described, opened.skipped
