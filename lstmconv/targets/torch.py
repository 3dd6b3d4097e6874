"""Write torch ``.safetensors`` layer by layer: convert a layer, check it, write its tensors, drop them.

Whatever the source, layers go through here one at a time (:mod:`lstmconv.pipeline.read` for files read layer
by layer, :func:`lstmconv.pipeline.convert.save_torch` for a loaded model): the next layer is converted and the
source half of its check runs in a background thread (:mod:`lstmconv._fast.run_ahead`) while the current one is
written (:class:`~lstmconv.io.safetensors_stream.SafetensorsStream`) and the target half runs. Keys are
``<layer>.<torch parameter>``; the header's metadata describes every layer (:func:`torch_metadata`), so the
modules can be rebuilt from the file alone. A ``.pt`` file, or a layer torch.nn cannot compute written for
lstmconv's emitted module (``--emit-module``), goes through ``save_torch``'s in-memory writer instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lstmconv.adapters.torch import layer_from_canonical, torch_module_spec, torch_refusals
from lstmconv.pipeline.check import SourceSide, check_source_side
from lstmconv.errors import LstmconvError, RefusedConversionError, UnsupportedFeatureError
from lstmconv.io.torch_files import METADATA_KEY
from lstmconv.pipeline.load import LayerSource, refuse_without_recurrent
from lstmconv.pipeline.report import ConversionReport, LayerReport, describe
from lstmconv.pipeline.write import PlannedLayer, write_safetensors
from lstmconv.schema import SCHEMA_VERSION, DenseMeta, Layer, RecurrentLayer, RecurrentMeta
from lstmconv.reference.torch_function import torch_layer_function, usage_notes
from lstmconv.io.atomic import check_suffix

__all__ = [
    "write_torch",
    "check_torch_destination",
    "torch_refusal",
    "torch_refusals_error",
    "torch_layer_report",
    "torch_metadata",
]


def torch_refusal(layer: Layer, reasons: list[str]) -> UnsupportedFeatureError:
    """The error for a layer torch.nn cannot compute, with what to do instead."""
    from lstmconv.pipeline.refusals import ways_out

    return UnsupportedFeatureError("; ".join(reasons), layer=layer.name, hint=ways_out(layer, "torch"))


def torch_refusals_error(refusals: list[LstmconvError], source: str | Path) -> RefusedConversionError:
    """The error listing every layer torch.nn cannot compute."""
    return RefusedConversionError(
        f"torch.nn cannot compute {len(refusals)} layer(s) exactly; nothing was written",
        refusals=refusals,
        file=str(source),
    )


def torch_layer_report(
    layer: Layer,
    params: dict[str, np.ndarray],
    error: float | None,
    tol: float | None,
    check_notes: tuple[str, ...],
    emitted_class: str | None = None,
) -> LayerReport:
    """The report row of a layer written for torch."""
    became = emitted_class + " (emitted module)" if emitted_class else torch_module_spec(layer) or "identity (no parameters)"
    if params:
        became += f" as {layer.name}.*"
    notes = (
        (*layer.source.inferred, *layer.source.notes, *usage_notes(layer), *check_notes) if isinstance(layer, (RecurrentMeta, DenseMeta)) else ()
    )
    return LayerReport(layer.name, describe(layer), became, error, tol, tuple(notes))


def torch_metadata(
    layers: list[Layer], source: str | Path, source_format: str, custom_modules: dict[str, str]
) -> dict[str, object]:
    """What a torch file's header carries: each layer's description, the source, the emitted-module layers."""
    return {
        "lstmconv_schema": SCHEMA_VERSION,
        "layers": [layer.meta().model_dump(mode="json") for layer in layers],
        "source": {"file": Path(str(source)).name, "format": source_format},
        "custom_modules": custom_modules,
    }


def check_torch_destination(destination: Path, force: bool) -> None:
    check_suffix(destination, "torch", force)


def write_torch(
    layers: LayerSource,
    destination: str | Path,
    *,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    known_finite: bool = False,
) -> ConversionReport:
    """Write ``layers`` as a torch ``.safetensors``; see the module docstring.

    ``known_finite``: the caller refused non-finite weights already.
    """
    source, skipped = layers.source, layers.skipped  # skipped may still grow while the layers are read
    destination = Path(destination)
    check_torch_destination(destination, force)
    # filled by the background thread of ``planned``; read only once it has finished
    refusals: list[LstmconvError] = []
    converted: list[Layer] = []  # descriptions of the layers written (no arrays)

    def planned() -> Iterator[PlannedLayer]:
        """Convert each layer and run the source half of its check (ahead of the writing, in a background thread)."""
        for layer, reference in layers.layers:
            if isinstance(layer, RecurrentLayer) and (reasons := torch_refusals(layer)):
                refusals.append(torch_refusal(layer, reasons))
                continue
            if refusals and not skip_unsupported:
                continue  # going on only to name every refused layer
            params = layer_from_canonical(layer)
            # the source half of the check runs here, while the source arrays are in memory; the target half
            # runs in the writing thread, from the converted arrays alone
            checking = check_source_side(str(source), layer, reference, verify, known_finite=known_finite)
            meta = layer.meta()
            converted.append(meta)  # the description only: the arrays go with the parameters
            yield PlannedLayer({f"{meta.name}.{key}": value for key, value in params.items()}, _finish(meta, params, checking))
            del params, layer, reference

    def before_header(entries: dict[str, object]) -> None:
        if refusals and not skip_unsupported:
            raise torch_refusals_error(refusals, source)
        if not refusals:  # a refused layer is a recurrent one: the file has some
            refuse_without_recurrent(converted, skipped, source)
        if not entries:
            hint = "; ".join(skipped) or None
            raise RefusedConversionError(
                "no layer could be converted; nothing was written", refusals=[], file=str(source), hint=hint
            )

    def metadata() -> dict[str, str]:
        return {METADATA_KEY: json.dumps(torch_metadata(converted, source, layers.source_format, {}), sort_keys=True)}

    reports, written = write_safetensors(
        planned(), source=source, destination=destination, reserve=layers.reserve, before_header=before_header,
        metadata=metadata, replace=force,
    )
    return ConversionReport(
        source=str(source),
        destination=str(destination),
        target="torch",
        layers=tuple(reports),
        skipped=(*skipped, *(f"{r.layer}: {r.message}" for r in refusals)),
        verified=verify,
        written_tensors=len(written),
    )


def _finish(meta: Layer, params: dict[str, np.ndarray], checking: SourceSide) -> Callable[[], LayerReport]:
    """The target half of a layer's check, on the torch parameters as written, and its report row."""

    def finish() -> LayerReport:
        computes = isinstance(meta, (RecurrentMeta, DenseMeta))
        target = torch_layer_function(meta, params) if computes else None
        error, tol, check_notes = checking.finish(target, "the torch parameters")
        return torch_layer_report(meta, params, error, tol, check_notes)

    return finish
