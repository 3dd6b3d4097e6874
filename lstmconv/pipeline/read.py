"""Read a Keras, ONNX, torch or canonical file one layer at a time, and convert it that way.

:func:`open_layers` yields the file's layers one by one, each built (its weights read) when it is reached and
dropped by the caller when it has been written: Keras datasets by h5py; ONNX files parsed without their large
tensors (:mod:`lstmconv.io.onnx_skeleton`), a node reading its weights when its layer is built;
``.safetensors`` files (torch or canonical) one module's or layer's tensors at a time; torch ``.pt`` files
one module's tensors at a time, read from their zip records (:func:`lstmconv.io.torch_files.open_pt_state`).
:func:`stream_to` feeds them to the layer-by-layer writers (:mod:`lstmconv.targets.torch`, :mod:`lstmconv.targets.onnx`,
:mod:`lstmconv.targets.canonical`), so memory is bounded by the largest layer rather than the model
(``benchmarks/bench.py large`` and ``sources`` measure it).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lstmconv._fast import buffers
from lstmconv.errors import InputFormatError
from lstmconv.sources.keras_files import open_keras
from lstmconv.io.torch_files import open_torch_state
from lstmconv.pipeline.load import (
    LayerSource,
    load_file,
    canonical_reference,
    detect_format,
    iter_keras_layers,
    iter_onnx_layers,
    iter_torch_layers,
    reading_errors,
    refuse_nonfinite_layer,
    refuse_nothing_read,
    refuse_without_recurrent,
)
from lstmconv.targets.onnx import write_onnx
from lstmconv.reference.common import ReferenceFn
from lstmconv.pipeline.report import ConversionReport
from lstmconv.schema import Layer
from lstmconv.pipeline.write import header_reserve
from lstmconv.targets.torch import write_torch
from lstmconv.registry import SOURCE_NAMES
from lstmconv.io.atomic import check_suffix, external_data_path, refuse_overwriting_source

__all__ = ["stream_to", "write_to", "describe_file", "open_layers", "streams"]


def streams(source: str | Path, source_format: str | None) -> bool:
    """Whether ``source`` is read one layer at a time: Keras, ONNX, torch and canonical files all are (a legacy
    torch pickle is then loaded whole, see :func:`lstmconv.io.torch_files.open_pt_state`)."""
    fmt = source_format or detect_format(Path(source))
    return fmt in SOURCE_NAMES


@contextlib.contextmanager
def open_layers(
    source: Path,
    *,
    config: str | Path | None,
    source_format: str | None,
    skip_unsupported: bool,
    allow_nonfinite: bool,
    meanwhile: Callable[[], object] | None = None,
) -> Iterator[LayerSource]:
    """Open a file :func:`streams` accepts for reading layer by layer. What ``load_file`` refuses is refused
    here too: a damaged file (InputFormatError), two layers of one name, non-finite weights unless allowed.
    ``meanwhile`` runs while a Keras file's HDF5 structure is vetted in a forked child (:func:`open_keras`)."""
    fmt = source_format or detect_format(source)
    skipped: list[str] = []
    if fmt == "keras":
        with contextlib.ExitStack() as stack:
            with reading_errors(source):
                info, entries, wiring = stack.enter_context(open_keras(source, config, meanwhile=meanwhile))
            items = iter_keras_layers(info, entries, skip_unsupported=skip_unsupported)
            reserve = header_reserve([entry.name for entry in entries], sum(len(entry.array_names) for entry in entries))
            yield LayerSource(str(source), fmt, _checked_layers(source, items, skipped, allow_nonfinite), skipped, wiring, reserve)
        return
    if fmt == "onnx":
        from lstmconv.sources.onnx_graph import read_onnx

        with reading_errors(source):
            onnx_file = read_onnx(source)
        names = [entry.name for entry in onnx_file.entries]
        items = iter_onnx_layers(onnx_file)
        # torch writes 4 tensors per direction and level: the node's levels are not known before its weights are read
        reserve = header_reserve(names, 8 * len(names))
        yield LayerSource(str(source), fmt, _checked_layers(source, items, skipped, allow_nonfinite), skipped, None, reserve)
        return
    if fmt == "torch":
        with open_torch_state(source) as (stand_ins, metadata, notes, load):
            modules = sorted({key.rpartition(".")[0] for key in stand_ins})
            torch_items = iter_torch_layers(stand_ins, metadata, notes, source, load=load)
            checked = _checked_layers(source, torch_items, skipped, allow_nonfinite)
            yield LayerSource(str(source), fmt, checked, skipped, None, header_reserve(modules, len(stand_ins)))
        return
    if fmt == "canonical":
        from lstmconv.io.canonical_file import open_canonical

        with contextlib.ExitStack() as stack:
            with reading_errors(source):
                metadata, canonical = stack.enter_context(open_canonical(source))
            items = ((layer, canonical_reference(layer)) for layer in canonical)
            names = [meta.name for meta in metadata.layers]
            checked = _checked_layers(source, items, skipped, allow_nonfinite)
            yield LayerSource(str(source), fmt, checked, skipped, metadata.wiring, header_reserve(names, 8 * len(names)))
        return
    raise ValueError(f"{fmt} files are not read layer by layer")  # callers ask streams() first


def _checked_layers(
    source: Path,
    items: Iterator[tuple[Layer, ReferenceFn | None] | str],
    skipped: list[str],
    allow_nonfinite: bool,
) -> Iterator[tuple[Layer, ReferenceFn | None]]:
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


def describe_file(
    source: str | Path,
    *,
    config: str | Path | None = None,
    source_format: str | None = None,
    each: Callable[[Layer], object] | None = None,
) -> tuple[list[Layer], list[str]]:
    """The descriptions of a file's layers and what is left out (for ``lstmconv inspect``), reading one layer at
    a time where the format allows (:func:`streams`: memory stays at one layer whatever the file size), else
    loading it. Refuses what ``load_file`` refuses. ``each`` is called with every whole layer (weights too)."""
    source = Path(source)
    if not streams(source, source_format):
        loaded = load_file(source, config=config, source_format=source_format)
        for layer in loaded.model.layers:
            if each is not None:
                each(layer)
        return [layer.meta() for layer in loaded.model.layers], list(loaded.model.skipped)
    described: list[Layer] = []
    with open_layers(source, config=config, source_format=source_format, skip_unsupported=False, allow_nonfinite=False) as opened:
        for layer, _reference in opened.layers:
            described.append(layer.meta())
            if each is not None:
                each(layer)
            del layer, _reference
    refuse_nothing_read(described, opened.skipped, source)
    refuse_without_recurrent(described, opened.skipped, source)
    return described, opened.skipped


def stream_to(
    to: str,
    source: str | Path,
    destination: str | Path,
    *,
    config: str | Path | None = None,
    source_format: str | None = None,
    per_layer: bool = False,
    external_data: bool = False,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    allow_nonfinite: bool = False,
) -> ConversionReport:
    """Convert a file read layer by layer (see :func:`streams`) to target ``to`` (:func:`write_to`)."""
    source, destination = Path(source), Path(destination)
    check_suffix(destination, to, force)  # before anything is read
    # buffers.recycling(): each layer's arrays reuse the memory of a layer already written (see lstmconv._fast.buffers)
    with buffers.recycling(), open_layers(
        source,
        config=config,
        source_format=source_format,
        skip_unsupported=skip_unsupported,
        allow_nonfinite=allow_nonfinite,
        meanwhile=lambda: prepare_writer(to, verify=verify),
    ) as opened:
        return write_to(
            to, opened, destination, per_layer=per_layer, external_data=external_data, verify=verify,
            force=force, skip_unsupported=skip_unsupported, known_finite=not allow_nonfinite,
        )


def write_to(
    to: str,
    layers: LayerSource,
    destination: str | Path,
    *,
    per_layer: bool = False,
    external_data: bool = False,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    known_finite: bool = False,
) -> ConversionReport:
    """Write ``layers`` layer by layer as torch ``.safetensors`` (``to="torch"``,
    :func:`lstmconv.targets.torch.write_torch`), ONNX (:func:`lstmconv.targets.onnx.write_onnx`; ``per_layer`` and
    ``external_data`` as there), lstmconv's canonical file
    (:func:`lstmconv.targets.canonical.write_canonical_layers`) or Keras weights
    (:func:`lstmconv.targets.keras.write_keras`). ``known_finite``: non-finite weights were refused already."""
    destination = Path(destination)
    data_file = external_data_path(destination) if external_data else None
    refuse_overwriting_source((layers.source,), (destination, data_file))
    if to == "canonical":  # every layer has a canonical form: none is refused, so there is no skip_unsupported
        from lstmconv.targets.canonical import write_canonical_layers

        return write_canonical_layers(layers, destination, verify=verify, force=force, known_finite=known_finite)
    options = {"verify": verify, "force": force, "skip_unsupported": skip_unsupported, "known_finite": known_finite}
    if to == "onnx":
        return write_onnx(layers, destination, per_layer=per_layer, external_data=external_data, **options)
    if to == "keras":
        from lstmconv.targets.keras import write_keras

        return write_keras(layers, destination, **options)
    return write_torch(layers, destination, **options)


# What each target's writer imports on first use, besides the modules above (which every conversion imports).
_WRITER_IMPORTS = {
    "torch": ("safetensors",),
    "onnx": ("onnx", "onnx.checker", "onnx.defs", "lstmconv.adapters.onnx_graph", "lstmconv.io.onnx_stream"),
    "keras": ("lstmconv.targets.keras",),
    "canonical": ("lstmconv.targets.canonical",),
}


def prepare_writer(to: str, *, verify: bool) -> None:
    """Import what writing to ``to`` (and, with ``verify``, checking) will need, and build ONNX's operator
    registry. Run while a forked child vets an HDF5 source (:func:`lstmconv.io.hdf5_guard.prescan_hdf5`):
    the child takes the second core for some 10 ms, and these 10-60 ms of start-up would otherwise come after it
    (``bench.py small``). Nothing here reads the source."""
    for module in (*_WRITER_IMPORTS[to], *(("numpy.random",) if verify else ())):  # numpy.random: the check's inputs
        importlib.import_module(module)
    if to == "onnx":
        import onnx.defs

        onnx.defs.has("LSTM")  # the first query builds the registry of every operator (15 ms); the checker needs it

