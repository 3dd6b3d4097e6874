"""The TFLite target: one ``.tflite`` flatbuffer of builtin ops only, the whole source model when its wiring is
known (else each layer on its own), each recurrent direction one fused op (:mod:`lstmconv.targets.tflite_graph`).

The model is built in memory as the layers are read (its constants are the converted float32 arrays; a TFLite
file holds its weights inline, at most 2 GiB) and written at the end; it is then read back through the schema
bindings and every tensor's buffer compared with what was planned. The numeric check runs the TFLite kernels'
own equations (:mod:`lstmconv.reference.tflite`) on the arrays written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstmconv.adapters.tflite import fusable, tflite_refusals
from lstmconv.errors import UnsupportedFeatureError, VerificationError
from lstmconv.protocols import LayerSource, Options, Planned, Refusal, TargetBase
from lstmconv.schema import EmbeddingLayer, Layer, RecurrentLayer

__all__ = ["TARGET"]

_RULES = "tflite"
_PER_LAYER = "pass --per-layer (per_layer=True) to convert layer by layer"


class TfliteTarget(TargetBase):
    def rule_sets(self) -> dict[str, str]:
        return {_RULES: "--to tflite (a .tflite file)"}

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        return tflite_refusals(layer)

    preload = ("lstmconv.targets.tflite_graph", "flatbuffers", "tflite.Model")

    def writer(self, destination: Path, layers: LayerSource, options: Options) -> TfliteWriter:
        import importlib.util

        if importlib.util.find_spec("flatbuffers") is None or importlib.util.find_spec("tflite") is None:
            raise UnsupportedFeatureError(
                "writing TFLite needs the TFLite schema bindings and flatbuffers, which are not installed", file=destination,
                hint="pip install 'lstmconv[tflite]' (the tflite and flatbuffers packages; no TensorFlow)",
            )
        return TfliteWriter(destination, layers, options)


TARGET = TfliteTarget()


class _Stream:
    """The destination, written once the model is complete."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, name: str, array: np.ndarray, /) -> None:
        pass  # the arrays are in the model already

    def flush_behind(self) -> None:
        pass

    def abort(self) -> None:
        pass


class TfliteWriter:
    what = "the TFLite kernels"

    def __init__(self, destination: Path, layers: LayerSource, options: Options) -> None:
        from lstmconv._version import __version__
        from lstmconv.targets.tflite_graph import TflitePlan

        wiring = layers.wiring
        self.whole = not options.per_layer and wiring is not None
        self.all_or_nothing = self.whole
        self.label = "tflite" + (" (whole model)" if self.whole else " (per layer)")
        self.refusing = (
            "the whole model cannot be computed by TFLite's builtin ops exactly"
            if self.whole
            else "{count} layer(s) cannot be computed by TFLite's builtin ops exactly"
        )
        self.destination = destination
        self.companions: tuple[Path, ...] = ()
        self.refused: list[Exception] = []
        if self.whole and wiring is not None:
            self.refused += [UnsupportedFeatureError(reason, hint=_PER_LAYER) for reason in wiring.unsupported]
            if wiring.initial_state:
                self.refused.append(UnsupportedFeatureError(
                    "layers given initial states by other layers (initial_state): lstmconv's TFLite models start every "
                    "recurrent op from zeros", hint=_PER_LAYER))
        self.plan_graph = TflitePlan(wiring if self.whole else None, f"lstmconv {__version__}")
        self.digest = 0

    def refuse(self, layer: Layer) -> Refusal | None:
        if reasons := tflite_refusals(layer):
            return Refusal(reasons, hint_suffix="; --per-layer --skip-unsupported to convert the other layers each on its own" if self.whole else "")
        if self.whole and isinstance(layer, EmbeddingLayer) and layer.mask_zero:
            return Refusal(["Embedding mask_zero=True: Keras skips the masked steps in the layers after it, which the fused ops cannot"], hint=_PER_LAYER)
        return None

    def plan(self, layer: Layer) -> Iterator[Planned]:
        for done in self.plan_graph.add(layer):
            function = self.plan_graph.functions.pop(done.name, None)  # not kept: it holds the layer's arrays
            if isinstance(done, RecurrentLayer):
                looped = done.cell == "gru" or (done.cell == "lstm" and not fusable(done))
                fused = f"{done.cell.upper()} loop (WHILE)" if looped else f"fused {done.cell.upper()}"
                became: str | None = fused + (" x2 (REVERSE_V2)" if done.bidirectional else "")
                notes: tuple[str, ...] = (*done.source.inferred, *done.source.notes)
                if done.runtime_inputs:
                    notes += (f"the source's optional {', '.join(done.runtime_inputs)} input(s) are not kept: the TFLite "
                              "model starts from zero states and reads every step",)
            elif function is not None:
                became, notes = "FULLY_CONNECTED", ()
            elif isinstance(done, EmbeddingLayer):
                became, notes = "GATHER", ()
            else:
                became, notes = None, ()
            yield Planned(done, {}, function, became, notes)

    def open(self, path: Path, *companions: Path) -> _Stream:
        return _Stream(path)

    def write(self, stream: _Stream, planned: Planned) -> None:
        pass

    def finish(self, stream: _Stream) -> None:
        import zlib

        data = self.plan_graph.finish()
        self.digest = zlib.crc32(data)
        with stream.path.open("wb") as handle:
            handle.write(data)
        del data

    def check(self, path: Path, *companions: Path) -> None:
        """The file holds the model built (its crc32), and read back through the schema bindings every
        constant tensor's buffer holds its planned number of bytes."""
        import mmap
        import zlib

        from lstmconv.io.tflite_flatbuffer import read_model_summary

        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if zlib.crc32(data) != self.digest:
                raise VerificationError("the written file does not hold the model built", file=self.destination)
            summary = read_model_summary(data, path)
        graph = self.plan_graph.graph
        written = summary["subgraphs"][0]["buffer_bytes"]
        for tensor in graph.tensors:
            expected = self.plan_graph.model.sizes[tensor.buffer]
            if written.get(tensor.name) != expected:
                raise VerificationError("a tensor's buffer does not hold its planned bytes", file=self.destination,
                                        tensor=tensor.name, expected=expected, actual=written.get(tensor.name))

    def report(self) -> dict[str, object]:
        graph = self.plan_graph.graph
        return {"written_tensors": sum(1 for t in graph.tensors if t.buffer)}
