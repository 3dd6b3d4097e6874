"""The ONNX target: one model, the whole source model when its wiring is known (else each layer its own
subgraph), its recurrent layers as fused LSTM/GRU/RNN operators.

The graph is planned one layer at a time (:class:`~lstmconv.targets.onnx_graph.OnnxPlan`); each layer's large
arrays are written to the file at once (:class:`~lstmconv.io.onnx_stream.OnnxStream`) and dropped, so the
writer holds about two layers' converted arrays. The graph itself (nodes, inputs, outputs, small constants) is
written last, once its structure is checked. With
``external_data`` the weights go to ``<destination>.data`` beside the model (needed above 2 GiB).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lstmconv.adapters.onnx import onnx_refusals, onnx_whole_model_refusals
from lstmconv.errors import UnsupportedFeatureError, VerificationError
from lstmconv.io.onnx_stream import OnnxStream, count_graph_fields, external_data_path
from lstmconv.protocols import LayerSource, Options, Planned, Refusal, TargetBase
from lstmconv.schema import Layer, RecurrentMeta

__all__ = ["TARGET"]

_RULES = "onnx"
_PER_LAYER = "pass --per-layer (per_layer=True) to convert layer by layer"


class OnnxTarget(TargetBase):
    def rule_sets(self) -> dict[str, str]:
        return {_RULES: "--to onnx (a .onnx file)"}

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        return onnx_refusals(layer)


    def companions(self, destination: Path, options: Options) -> dict[Path, tuple[tuple[str, ...], str]]:
        return {external_data_path(destination): ((), "the external data file")} if options.external_data else {}

    preload = ("lstmconv.targets.onnx_graph",)

    def writer(self, destination: Path, layers: LayerSource, options: Options) -> OnnxWriter:
        return OnnxWriter(destination, layers, options)


TARGET = OnnxTarget()


class OnnxWriter:
    what = "the ONNX operators"

    def __init__(self, destination: Path, layers: LayerSource, options: Options) -> None:
        from lstmconv._version import __version__
        from lstmconv.targets.onnx_graph import OnnxPlan

        self.destination = destination
        self.data_destination = external_data_path(destination) if options.external_data else None
        self.companions = (self.data_destination,) if self.data_destination is not None else ()
        wiring = layers.wiring
        self.whole = not options.per_layer and wiring is not None
        self.all_or_nothing = self.whole
        self.label = "onnx" + (" (whole model)" if self.whole else " (per layer)")
        self.refusing = (
            "the whole model cannot be expressed with ONNX operators exactly"
            if self.whole
            else "{count} layer(s) cannot be expressed with ONNX operators exactly"
        )
        self.plan_graph = OnnxPlan(wiring if self.whole else None, __version__)
        self.refused: list[Exception] = []
        if self.whole and wiring is not None:
            self.refused += [UnsupportedFeatureError(reason, hint=_PER_LAYER) for reason in wiring.unsupported]
        self.written: list[str] = []
        self.stream: OnnxStream | None = None

    def refuse(self, layer: Layer) -> Refusal | None:
        if reasons := onnx_refusals(layer):
            # a whole model needs every layer: leaving one out takes --per-layer too
            return Refusal(reasons, hint_suffix="; --per-layer --skip-unsupported to convert the other layers each on its own" if self.whole else "")
        if self.whole and (reasons := onnx_whole_model_refusals(layer)):
            return Refusal(reasons, hint=_PER_LAYER)
        return None

    def plan(self, layer: Layer) -> Iterator[Planned]:
        for emitted in self.plan_graph.add(layer):
            done = emitted.layer
            if isinstance(done, RecurrentMeta):
                became: str | None = "fused " + done.cell.upper()
                notes: tuple[str, ...] = (*done.source.inferred, *done.source.notes)
            elif emitted.function is not None:
                became, notes = "MatMul + Add", ()
            else:
                became, notes = None, ()  # computed by the graph with no weights of its own (Dropout): no row
            yield Planned(done, emitted.arrays, emitted.function, became, notes)
            del emitted, done

    def open(self, path: Path, *companions: Path) -> OnnxStream:
        location = self.data_destination.name if self.data_destination is not None else ""
        self.stream = OnnxStream(path, companions[0] if companions else None, location=location)
        return self.stream

    def write(self, stream: OnnxStream, planned: Planned) -> None:
        for name, array in planned.tensors.items():
            stream.add(name, array)
            stream.flush_behind()  # per tensor: the disk works while the next one is written

    def finish(self, stream: OnnxStream) -> None:
        rest = self.plan_graph.finish()
        self.plan_graph.check(rest)
        stream.finish(rest)
        self.written = [*stream.written, *(t.name for t in rest.graph.initializer)]

    def check(self, path: Path, data_path: Path | None = None) -> None:
        """Every piece was read back as written; here the pieces must make one model: the file splits exactly
        into ModelProto fields, one graph field per streamed tensor plus the graph itself, and the data file
        holds exactly the bytes written to it."""
        if count_graph_fields(path) != len(self.plan_graph.large) + 1:
            raise VerificationError("the written file does not hold the model meant", file=self.destination)
        assert self.stream is not None
        if data_path is not None and (size := data_path.stat().st_size) != self.stream.data_size:
            raise VerificationError(
                "the external data file does not hold the bytes written", file=self.data_destination,
                expected=self.stream.data_size, actual=size,
            )

    def report(self) -> dict[str, object]:
        external = str(self.data_destination) if self.data_destination is not None else None
        return {"written_tensors": len(self.written), "external_data": external}
