"""Keras file -> torch ``.safetensors`` or ONNX, one layer at a time.

A layer's arrays are read, converted, checked and written, then dropped, so memory is bounded by the
largest layer rather than the model (``benchmarks/bench.py large`` measures it). Reading, converting and
checking the next layer runs in a background thread while the current one is written (about three layers
in memory). For torch, behaviour and file bytes are those of :func:`lstmconv.conversion.save_torch`; this is
only the order of the work. ONNX is always written layer by layer (:mod:`lstmconv.onnx_saving`); here the
layers are also read one at a time.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmconv.adapters.torch import layer_from_canonical, torch_refusals
from lstmconv.checking import SourceSide, check_source_side
from lstmconv.conversion import (
    check_torch_destination,
    torch_layer_report,
    torch_metadata,
    torch_refusal,
    torch_refusals_error,
)
from lstmconv.errors import InputFormatError, LstmconvError, RefusedConversionError, VerificationError
from lstmconv.formats.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.formats.keras_files import open_keras
from lstmconv.formats.safetensors_stream import SafetensorsStream
from lstmconv.formats.torch_files import METADATA_KEY
from lstmconv.loading import (
    iter_keras_layers,
    reading_errors,
    refuse_nonfinite_layer,
    refuse_nothing_read,
    refuse_without_recurrent,
)
from lstmconv.onnx_saving import write_onnx
from lstmconv.reference.common import ReferenceFn
from lstmconv.run_ahead import one_blas_thread_for, run_ahead
from lstmconv.reporting import ConversionReport, LayerReport
from lstmconv.schema import DenseMeta, Layer, RecurrentLayer, RecurrentMeta, Wiring
from lstmconv.targets.torch import torch_layer_function
from lstmconv.writing import check_suffix, write_atomically

__all__ = ["stream_keras_to_torch", "stream_keras_to_onnx", "describe_keras_file"]


@dataclass
class _Prepared:
    """One layer's torch parameters, converted, with the source half of its check done."""

    meta: Layer  # the description, without arrays
    params: dict[str, np.ndarray]
    checking: SourceSide


def _reserve(entries: list[KerasLayerEntry]) -> int:
    """Generous room for the header: every tensor name, shape and offset, and each layer's description."""
    names = sum(len(entry.name) for entry in entries)
    tensors = sum(len(entry.array_names) for entry in entries)
    return 8192 + 24 * 1024 * len(entries) + 4 * names + 600 * (tensors + 8 * len(entries))


@contextlib.contextmanager
def _open_keras(source: Path, config: str | Path | None) -> Iterator[tuple[KerasFileInfo, list[KerasLayerEntry], Wiring | None]]:
    """``open_keras``, with a parser's error on a damaged file reported as the input's (an InputFormatError)."""
    with contextlib.ExitStack() as stack:
        with reading_errors(source):
            opened = stack.enter_context(open_keras(source, config))
        yield opened


def _keras_layers(
    source: Path,
    info: KerasFileInfo,
    entries: list[KerasLayerEntry],
    skipped: list[str],
    skip_unsupported: bool,
    allow_nonfinite: bool,
) -> Iterator[tuple[Layer, ReferenceFn | None]]:
    """Each layer of a Keras file with its source reference, read one at a time; what is left out goes to
    ``skipped``. Non-finite weights are refused here unless allowed."""
    layers = iter_keras_layers(info, entries, skip_unsupported=skip_unsupported)
    names: set[str] = set()
    while True:
        with reading_errors(source):  # parser errors are about the input; write errors stay OSErrors
            item = next(layers, None)
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


def describe_keras_file(source: str | Path, *, config: str | Path | None = None) -> tuple[list[Layer], list[str]]:
    """The descriptions of a Keras file's layers and what is left out, reading one layer at a time (for
    ``lstmconv inspect``: memory stays at one layer whatever the file size). Refuses what ``load_file`` refuses."""
    source = Path(source)
    skipped: list[str] = []
    described: list[Layer] = []
    with _open_keras(source, config) as (info, entries, _wiring):
        for layer, _reference in _keras_layers(source, info, entries, skipped, False, False):
            described.append(layer.meta())
            del layer, _reference
    refuse_nothing_read(described, skipped, source)
    refuse_without_recurrent(described, skipped, source)
    return described, skipped


def stream_keras_to_onnx(
    source: str | Path,
    destination: str | Path,
    *,
    config: str | Path | None = None,
    per_layer: bool = False,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    allow_nonfinite: bool = False,
) -> ConversionReport:
    """Convert a Keras file to ONNX layer by layer (:func:`lstmconv.onnx_saving.write_onnx`)."""
    source = Path(source)
    check_suffix(Path(destination), (".onnx",), force)  # before anything is read
    skipped: list[str] = []
    with _open_keras(source, config) as (info, entries, wiring):
        return write_onnx(
            _keras_layers(source, info, entries, skipped, skip_unsupported, allow_nonfinite),
            wiring,
            source=str(source),
            destination=destination,
            skipped=skipped,
            per_layer=per_layer,
            verify=verify,
            force=force,
            skip_unsupported=skip_unsupported,
            known_finite=not allow_nonfinite,
        )


def stream_keras_to_torch(
    source: str | Path,
    destination: str | Path,
    *,
    config: str | Path | None = None,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    allow_nonfinite: bool = False,
) -> ConversionReport:
    """Convert a Keras file to a torch ``.safetensors`` layer by layer (see the module docstring)."""
    source, destination = Path(source), Path(destination)
    check_torch_destination(destination, force)
    # filled by the background thread of ``prepared``; read here only once it has finished
    reports: list[LayerReport] = []
    skipped: list[str] = []
    refusals: list[LstmconvError] = []
    converted: list[Layer] = []  # descriptions of the layers written (no arrays)
    written: list[str] = []

    def prepared(info: KerasFileInfo, entries: list[KerasLayerEntry]) -> Iterator[_Prepared]:
        """Convert each layer and run the source half of its check (ahead of the writing, in a background thread)."""
        for layer, reference in _keras_layers(source, info, entries, skipped, skip_unsupported, allow_nonfinite):
            if isinstance(layer, RecurrentLayer) and (reasons := torch_refusals(layer)):
                refusals.append(torch_refusal(layer.name, reasons))
                continue
            if refusals and not skip_unsupported:
                continue  # going on only to name every refused layer
            params = layer_from_canonical(layer)
            # the source half of the check runs here, while the source arrays are in memory; the target half
            # runs in the writing thread, from the converted arrays alone
            checking = check_source_side(str(source), layer, reference, verify, known_finite=not allow_nonfinite)
            meta = layer.meta()
            converted.append(meta)  # the description only: the arrays go with the parameters
            yield _Prepared(meta, params, checking)
            del params, layer, reference

    def write(path: Path, info: KerasFileInfo, entries: list[KerasLayerEntry]) -> None:
        stream = SafetensorsStream(path, _reserve(entries))
        try:
            # closing(): the background thread is stopped and joined however this block ends
            with contextlib.closing(run_ahead(prepared(info, entries), one_blas_thread=one_blas_thread_for(source))) as layers:
                for layer in layers:
                    for key in sorted(layer.params):
                        stream.add(f"{layer.meta.name}.{key}", layer.params[key])
                        stream.flush_behind()  # per tensor: the disk works while the next one is written
                    computes = isinstance(layer.meta, (RecurrentMeta, DenseMeta))
                    target = torch_layer_function(layer.meta, layer.params) if computes else None
                    error, tol, check_notes = layer.checking.finish(target, "the torch parameters")
                    reports.append(torch_layer_report(layer.meta, layer.params, error, tol, check_notes))
                    del layer, target
            # the background thread is finished: the lists it filled are complete
            if refusals and not skip_unsupported:
                raise torch_refusals_error(refusals, source)
            if not refusals:  # a refused layer is a recurrent one: the file has some
                refuse_without_recurrent(converted, skipped, source)
            if not stream.entries:
                hint = "; ".join(skipped) or None
                raise RefusedConversionError(
                    "no layer could be converted; nothing was written", refusals=[], file=str(source), hint=hint
                )
            metadata = torch_metadata(converted, source, "keras", {})
            stream.finish({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
            written.extend(stream.entries)
        finally:
            stream.abort()

    def check(path: Path) -> None:
        """The finished file parses as safetensors and lists exactly the tensors written."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            if set(handle.keys()) != set(written):  # noqa: SIM118 - not a dict
                raise VerificationError("the written file does not list the tensors written", file=path)

    with _open_keras(source, config) as (info, entries, _wiring):
        write_atomically(destination, lambda path: write(path, info, entries), check)
    return ConversionReport(
        source=str(source),
        destination=str(destination),
        target="torch",
        layers=tuple(reports),
        skipped=(*skipped, *(f"{r.layer}: {r.message}" for r in refusals)),
        verified=verify,
        written_tensors=len(written),
    )
