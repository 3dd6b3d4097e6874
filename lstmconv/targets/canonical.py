"""Write lstmconv's canonical file layer by layer: every layer as it is in the canonical form (exact, nothing
refused), its gate-named tensors written as the layer is read (:func:`lstmconv.pipeline.write.write_layers`),
the canonical metadata last (format: :mod:`lstmconv.io.canonical_file`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

from lstmconv.pipeline.check import SourceSide, check_source_side
from lstmconv.io.canonical_file import CANONICAL_KEY, canonical_tensors
from lstmconv.reference.canonical import canonical_forward
from lstmconv.pipeline.load import LayerSource
from lstmconv.pipeline.report import ConversionReport, LayerReport, describe
from lstmconv.pipeline.write import PlannedLayer, write_safetensors
from lstmconv.schema import CanonicalMetadata, CanonicalModel, Layer, RecurrentLayer
from lstmconv.io.atomic import check_suffix

__all__ = ["write_canonical_layers"]


def write_canonical_layers(
    layers: LayerSource,
    destination: str | Path,
    *,
    verify: bool = True,
    force: bool = False,
    known_finite: bool = False,
) -> ConversionReport:
    """Write ``layers`` as a canonical ``.safetensors``. ``known_finite``: non-finite weights were refused already."""
    source = layers.source
    destination = Path(destination)
    check_suffix(destination, "canonical", force)
    described: list[Layer] = []  # filled by the planning thread; read once it has finished

    def planned() -> Iterator[PlannedLayer]:
        for layer, reference in layers.layers:
            checking = check_source_side(str(source), layer, reference, verify, known_finite=known_finite)
            described.append(layer.meta())
            yield PlannedLayer(canonical_tensors(CanonicalModel(layers=(layer,))), _finish(layer, checking))
            del layer, reference

    def metadata() -> dict[str, str]:
        described_model = CanonicalMetadata(layers=tuple(described), wiring=layers.wiring)
        return {CANONICAL_KEY: described_model.model_dump_json(), "format": "lstmconv-canonical"}

    reports, written = write_safetensors(
        planned(), source=source, destination=destination, reserve=layers.reserve, before_header=lambda _: None,
        metadata=metadata, replace=force,
    )
    return ConversionReport(
        source=str(source),
        destination=str(destination),
        target="canonical",
        layers=tuple(reports),
        skipped=tuple(layers.skipped),
        verified=verify,
        written_tensors=len(written),
    )


def _finish(layer: Layer, checking: SourceSide) -> Callable[[], LayerReport]:
    """The target half of a layer's check, computed from its gate-named weights, and its report row."""

    def finish() -> LayerReport:
        target = functools.partial(canonical_forward, layer) if isinstance(layer, RecurrentLayer) else None
        error, tol, check_notes = checking.finish(target, "the canonical weights")
        notes = (*layer.source.inferred, *layer.source.notes, *check_notes)
        return LayerReport(layer.name, describe(layer), "canonical", error, tol, notes)

    return finish
