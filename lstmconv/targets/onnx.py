"""Write an ONNX model layer by layer: plan the layer's nodes, check it, write its weights, drop them.

Whatever the source, layers go through :class:`~lstmconv.adapters.onnx_graph.OnnxPlan` one at a time; the arrays
each layer produces are written to the file at once (:class:`~lstmconv.io.onnx_stream.OnnxStream`) and
released, so the writer holds about two layers' converted arrays beside what the source holds (for a Keras
file read layer by layer, about three layers in all). Planning the next layer runs in a background thread
while the current one is written (:func:`lstmconv.pipeline.write.write_layers`). The graph itself (nodes, inputs, outputs,
small constants) is written last, after ``onnx.checker`` has checked it with the weights declared by type
and shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from lstmconv.pipeline.check import SourceSide, check_source_side
from lstmconv.errors import LstmconvError, RefusedConversionError, UnsupportedFeatureError, VerificationError
from lstmconv.pipeline.load import LayerSource, refuse_without_recurrent
from lstmconv.reference.common import ReferenceFn
from lstmconv.pipeline.refusals import ways_out
from lstmconv.pipeline.report import ConversionReport, LayerReport, describe
from lstmconv.pipeline.write import PlannedLayer, write_layers
from lstmconv.schema import Layer, RecurrentMeta
from lstmconv.io.atomic import check_destination, check_suffix, external_data_path

__all__ = ["write_onnx"]


def write_onnx(
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
    """Write ``layers`` as one ONNX model; see the module docstring. ``external_data``: the weights go to
    ``<destination>.data`` beside the model (:mod:`lstmconv.io.onnx_stream`; needed above 2 GiB).
    ``known_finite``: the caller refused non-finite weights already."""
    import onnx

    from lstmconv import __version__
    from lstmconv.adapters.onnx import onnx_refusals, onnx_whole_model_refusals
    from lstmconv.io.onnx_stream import OnnxStream
    from lstmconv.adapters.onnx_graph import OnnxPlan

    source, skipped, wiring = layers.source, layers.skipped, layers.wiring  # skipped grows while the layers are read
    destination = Path(destination)
    check_suffix(destination, "onnx", force)
    data_destination = external_data_path(destination) if external_data else None
    if data_destination is not None:
        check_destination(data_destination, force)
    whole = not per_layer and wiring is not None
    plan = OnnxPlan(wiring if whole else None, __version__)
    # filled by the background thread of ``planned``; read here only once it has finished
    refusals: list[LstmconvError] = []
    if whole and wiring is not None:
        hint = "pass --per-layer (per_layer=True) to convert layer by layer"
        refusals += [UnsupportedFeatureError(reason, hint=hint) for reason in wiring.unsupported]
    seen: list[Layer] = []  # descriptions of every layer read
    written: list[str] = []

    def planned() -> Iterator[PlannedLayer]:
        references: dict[str, ReferenceFn | None] = {}
        for layer, reference in layers.layers:
            seen.append(layer.meta())
            if reasons := onnx_refusals(layer):
                hint = ways_out(layer, "onnx") + (" (with --per-layer: a whole model needs every layer)" if whole else "")
                refusals.append(UnsupportedFeatureError("; ".join(reasons), layer=layer.name, hint=hint))
                continue
            if whole and (reasons := onnx_whole_model_refusals(layer)):
                hint = "pass --per-layer (per_layer=True) to convert layer by layer"
                refusals.append(UnsupportedFeatureError("; ".join(reasons), layer=layer.name, hint=hint))
                continue
            if refusals and (whole or not skip_unsupported):
                continue  # going on only to name every refused layer
            references[layer.name] = reference
            for emitted in plan.add(layer):
                done = emitted.layer
                checking = check_source_side(source, done, references.pop(done.name, None), verify, known_finite=known_finite)
                # the report needs the description only: the source arrays are not held while the layer is written
                yield PlannedLayer(emitted.arrays, _finish(done.meta(), emitted.function, checking))
                del emitted, done
            del layer, reference

    def finish_file(stream: OnnxStream) -> None:
        refuse_without_recurrent(seen, skipped, source)  # as load_file does, whatever the target refuses
        if refusals and (whole or not skip_unsupported):
            what = "the whole model" if whole else f"{len(refusals)} layer(s)"
            raise RefusedConversionError(
                f"{what} cannot be expressed with ONNX operators exactly; nothing was written",
                refusals=refusals,
                file=source,
            )
        rest = plan.finish()
        onnx.checker.check_model(plan.checkable(rest), full_check=True)
        stream.finish(rest)
        written.extend([*stream.written, *(t.name for t in rest.graph.initializer)])

    opened: list[OnnxStream] = []  # the stream write_layers opens, for check

    def open_stream(path: Path, data_path: Path | None = None) -> OnnxStream:
        location = data_destination.name if data_destination is not None else ""
        opened.append(OnnxStream(path, data_path, location=location))
        return opened[-1]

    def check(path: Path, data_path: Path | None = None) -> None:
        """Every piece was read back as written; here the pieces must make one model: the file splits
        exactly into ModelProto fields, one graph field per streamed tensor plus the graph itself, and the
        data file holds exactly the bytes written to it."""
        from lstmconv.io.onnx_stream import count_graph_fields

        if count_graph_fields(path) != len(plan.large) + 1:
            raise VerificationError("the written file does not hold the model meant", file=destination)
        if data_path is not None and (size := data_path.stat().st_size) != opened[-1].data_size:
            raise VerificationError(
                "the external data file does not hold the bytes written", file=data_destination,
                expected=opened[-1].data_size, actual=size,
            )

    reports = write_layers(
        planned(), source=source, destination=destination, open_stream=open_stream, finish_file=finish_file,
        check=check, companions=(data_destination,) if data_destination is not None else (), replace=force,
    )
    return ConversionReport(
        source=source,
        destination=str(destination),
        target="onnx" + (" (whole model)" if whole else " (per layer)"),
        layers=tuple(reports),
        skipped=(*skipped, *(f"{r.layer}: {r.message}" for r in refusals)),
        verified=verify,
        written_tensors=len(written),
        external_data=str(data_destination) if data_destination is not None else None,
    )


def _finish(layer: Layer, function: ReferenceFn | None, checking: SourceSide) -> Callable[[], LayerReport | None]:
    """The target half of ``layer``'s check (its description), on the ONNX operators planned for it, and its
    report row (layers the graph computes with no weights of their own, such as Dropout, have none)."""

    def finish() -> LayerReport | None:
        error, tol, check_notes = checking.finish(function, "the ONNX operators")
        if isinstance(layer, RecurrentMeta):
            became, notes = "fused " + layer.cell.upper(), (*layer.source.inferred, *layer.source.notes)
        elif function is not None:
            became, notes = "MatMul + Add", ()
        else:
            return None
        return LayerReport(layer.name, describe(layer), became, error, tol, (*notes, *check_notes))

    return finish
