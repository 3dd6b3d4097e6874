"""TFLite models as a source: their fused recurrent ops, read through the TFLite schema's bindings.

Each ``UNIDIRECTIONAL_SEQUENCE_LSTM`` / ``UNIDIRECTIONAL_SEQUENCE_RNN`` of the main subgraph is one layer, named
by its output tensor (``tfl.unidirectional_sequence_lstm``, ``StatefulPartitionedCall:0``), its float32 arrays in
the slots :mod:`lstmconv.layouts.tflite` names. The ops are read as the kernels run them
(:mod:`lstmconv.reference.tflite`): a per-gate bias, sigmoid gates, the fused activation on the candidate and the
cell state; a ``cell_clip`` (the cell state clamped at every step) is the canonical ``state_clip``. Refused, with
the reason, what the canonical form cannot hold or what is not a layer: a ``proj_clip``, a coupled input gate
(CIFG), layer normalisation,
quantized weights, a recurrence lowered to a ``WHILE`` loop or unrolled into separate ops (TensorFlow's
converter does both: no weights are a layer's there), Flex and custom ops. Other ops (Dense, reshapes) are left
out and listed. Buffers stored after the flatbuffer (``offset``/``size``) are read where they point, bounded by
the file.
"""

from __future__ import annotations

import contextlib
import mmap
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.activations import Activation
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.gates import CELL_GATES
from lstmconv.io.reading import regular_file
from lstmconv.layouts.tflite import (
    FUSED_ACTIVATIONS,
    LSTM_BIASES,
    LSTM_CELL_STATE,
    LSTM_INPUT_WEIGHTS,
    LSTM_PEEPHOLES,
    LSTM_PROJECTION,
    LSTM_RECURRENT_WEIGHTS,
    TfliteRecurrentOp,
)
from lstmconv.protocols import LayerItem, LeftOut, Options
from lstmconv.schema import CellActivations, DirectionWeights, GateWeights, RecurrentLayer, SourceInfo, StackLevel, Wiring

__all__ = ["SOURCE"]

_FUSED = {44: "UNIDIRECTIONAL_SEQUENCE_LSTM", 35: "UNIDIRECTIONAL_SEQUENCE_RNN"}
_LOOPS = {119: "WHILE", 118: "IF", 120: "CALL_ONCE"}
_BIDIRECTIONAL = {52: "BIDIRECTIONAL_SEQUENCE_LSTM", 46: "BIDIRECTIONAL_SEQUENCE_RNN"}
_CUSTOM = 32
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}
_FLOAT32 = 0


class TfliteSource:
    def claims(self, path: Path) -> bool:
        try:
            with path.open("rb") as handle:
                return handle.read(8)[4:8] == b"TFL3"
        except OSError:
            return False

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        if regular_file(path, "TFLite model").stat().st_size < 8:
            raise InputFormatError("too short to be a TFLite model", file=path)
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            reader = _Reader(path, data)
            found = reader.codes
            recurrent = [(index, code) for index, code in enumerate(found) if code in _FUSED]
            if not recurrent:
                raise UnsupportedFeatureError(reader.why_no_layer(found), file=path)
            others = Counter(reader.code_name(code) for code in found if code not in _FUSED)
            loops = {reader.code_name(code) for code in _LOOPS} | {"CUSTOM"}
            left = [LeftOut(f"{count} {name} op{'s' if count > 1 else ''}",
                            "a loop or custom op: a recurrence written so (a GRU, a lowered LSTM) is not read back"
                            if name in loops else "not a recurrent layer; lstmconv reads the fused sequence ops")
                    for name, count in sorted(others.items())]
            groups = reader.arrangements([index for index, _ in recurrent])
            names = [group.name for group in groups]

            def items() -> Iterator[LayerItem | str]:
                yield from left
                for group in groups:
                    yield reader.arranged(group)

            yield items(), None, names


SOURCE = TfliteSource()


_REVERSE, _CONCATENATION, _ADD, _MUL = 105, 2, 0, 18


@dataclass(frozen=True)
class _Group:
    """One layer: a fused op, or a forward and a backward one reading the same sequence, and how the graph around
    them arranges their outputs (as lstmconv's and TensorFlow's converters write a Keras layer)."""

    name: str
    ops: tuple[int, ...]  # forward first
    reversed_input: bool = False  # a lone op reading the sequence through REVERSE_V2: Keras go_backwards
    aligned: bool = False  # ... whose outputs are put back in input time by another REVERSE_V2
    merge: str | None = None  # a pair's merge_mode


class _Reader:
    """The model's main subgraph, read with the schema's bindings; every length checked against the file."""

    def __init__(self, path: Path, data: mmap.mmap) -> None:
        from tflite.Model import Model

        self.path, self.data = path, data
        try:
            self.model = Model.GetRootAs(data, 0)
            if self.model.SubgraphsLength() < 1:
                raise InputFormatError("the model has no subgraph", file=path)
            self.graph = self.model.Subgraphs(0)
            self._bounded(self.graph.OperatorsLength(), "operators")
            self._bounded(self.graph.TensorsLength(), "tensors")
            self._bounded(self.model.OperatorCodesLength(), "operator codes")
            self._bounded(self.model.BuffersLength(), "buffers")
        except (IndexError, ValueError, TypeError, OverflowError) as error:  # struct.error is a ValueError
            raise InputFormatError(f"not a readable TFLite flatbuffer: {error}", file=path) from None
        self.codes, self.op_inputs, self.op_outputs = self._guarded(self._operators)

    def _bounded(self, count: int, what: str) -> None:
        if count * 4 > len(self.data):
            raise InputFormatError(f"the model lists more {what} than the file could hold", file=self.path, actual=count)

    def _guarded(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except (IndexError, ValueError, TypeError, OverflowError, AttributeError) as error:
            raise InputFormatError(f"not a readable TFLite flatbuffer: {error}", file=self.path) from None

    def _operators(self) -> tuple[list[int], list[list[int]], list[list[int]]]:
        """Every operator's builtin code, input and output tensors."""
        codes, inputs, outputs = [], [], []
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            index = op.OpcodeIndex()
            if not 0 <= index < self.model.OperatorCodesLength():
                raise InputFormatError("an operator names no operator code", file=self.path, actual=index)
            code = self.model.OperatorCodes(index)
            codes.append(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            inputs.append([int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else [])
            outputs.append([int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else [])
        return codes, inputs, outputs

    def code_name(self, code: int) -> str:
        from tflite.BuiltinOperator import BuiltinOperator

        return next((k for k, v in vars(BuiltinOperator).items() if v == code and not k.startswith("_")), str(code))

    def why_no_layer(self, codes: list[int]) -> str:
        counts = Counter(self.code_name(code) for code in codes)
        if any(code == _CUSTOM for code in codes):
            customs = sorted({self._guarded(lambda k=k: self.model.OperatorCodes(self.graph.Operators(k).OpcodeIndex()).CustomCode() or b"").decode("utf-8", "replace")
                              for k, code in enumerate(codes) if code == _CUSTOM})
            return (f"no fused recurrent op, and custom ops ({', '.join(customs)}): Flex/custom ops run TensorFlow "
                    "kernels that only TensorFlow's runtime has; lstmconv reads the fused sequence ops")
        if any(code in _LOOPS for code in codes):
            return ("the recurrence is a WHILE loop of builtin ops (how TensorFlow's converter, and lstmconv, write a GRU "
                    "or an LSTM the fused op cannot compute): its weights are constants of the loop body, not a layer "
                    "lstmconv reads back; convert the original model instead")
        if any(code in _BIDIRECTIONAL for code in codes):
            return "BIDIRECTIONAL_SEQUENCE_LSTM/RNN ops are not read yet; lstmconv reads the unidirectional fused ops"
        return (f"no fused recurrent op: {dict(counts.most_common(4))} ... the recurrence, if any, is unrolled into "
                "separate ops, which are no layer lstmconv can read back; convert the original model instead")

    def output_name(self, index: int) -> str:
        return self._guarded(lambda: self._tensor_name(self.op_outputs[index][0]))  # type: ignore[no-any-return]

    def _tensor_name(self, tensor: int) -> str:
        return (self.graph.Tensors(tensor).Name() or b"").decode("utf-8", "replace")

    def array(self, tensor: int, layer: str) -> np.ndarray:
        """A constant float32 tensor's values (a copy: the file is closed after reading)."""

        def read() -> np.ndarray:
            if not 0 <= tensor < self.graph.TensorsLength():
                raise InputFormatError("an operator reads a tensor the model does not have", file=self.path, layer=layer, actual=tensor)
            t = self.graph.Tensors(tensor)
            name = self._tensor_name(tensor)
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            if t.Type() != _FLOAT32 or t.Quantization() is not None and t.Quantization().ScaleLength():
                raise UnsupportedFeatureError(
                    "quantized weights (the kernels quantize or dequantize them at run time): lstmconv reads float32 models",
                    file=self.path, layer=layer, tensor=name,
                )
            buffer = self.model.Buffers(t.Buffer()) if 0 <= t.Buffer() < self.model.BuffersLength() else None
            expected = int(np.prod(shape, dtype=np.int64)) * 4
            if buffer is None:
                raise InputFormatError("a weight names no buffer", file=self.path, layer=layer, tensor=name)
            if buffer.Offset() > 1:
                start, size = int(buffer.Offset()), int(buffer.Size())
                raw = bytes(self.data[start : start + size]) if start + size <= len(self.data) else b""
            else:
                raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            if len(raw) != expected or any(d < 0 for d in shape):
                raise InputFormatError("a weight's buffer does not hold its shape's float32 values", file=self.path, layer=layer,
                                       tensor=name, expected=f"{expected} bytes for {list(shape)}", actual=f"{len(raw)} bytes")
            return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()

        return self._guarded(read)  # type: ignore[no-any-return]

    def _reverses_time(self, index: int) -> bool:
        """Whether operator ``index`` is a REVERSE_V2 over axis 1 (time, batch-first)."""
        inputs = self.op_inputs[index]
        return self.codes[index] == _REVERSE and len(inputs) == 2 and self._constant(inputs[1], "<i4") == [1]

    def _constant(self, tensor: int, dtype: str) -> list[float]:
        """A small constant tensor's values (empty for a computed tensor or another size of element)."""

        def read() -> list[float]:
            found = self.graph.Tensors(tensor)
            buffer = self.model.Buffers(found.Buffer()) if 0 <= found.Buffer() < self.model.BuffersLength() else None
            raw = buffer.DataAsNumpy().tobytes() if buffer is not None and buffer.DataLength() and buffer.DataLength() <= 64 else b""
            return np.frombuffer(raw, dtype).tolist() if len(raw) % 4 == 0 else []

        return self._guarded(read) if 0 <= tensor < self.graph.TensorsLength() else []  # type: ignore[no-any-return]

    def arrangements(self, fused: list[int]) -> list[_Group]:
        """The layers the fused ops make: a REVERSE_V2 before a lone op makes it a Keras ``go_backwards`` layer
        (another after it puts its outputs back in input time); a forward and a reversed op reading the same
        sequence whose outputs (the reversed one's put back in time) meet in one CONCATENATION, ADD or MUL
        (``ADD`` then ``MUL`` by 0.5: ave), or are both the model's outputs, make one bidirectional layer."""
        codes, inputs, outputs = self.codes, self.op_inputs, self.op_outputs
        producer = {t: k for k, outs in enumerate(outputs) for t in outs}
        consumers: dict[int, list[int]] = {}
        for k, ins in enumerate(inputs):
            for t in ins:
                consumers.setdefault(t, []).append(k)
        graph_outputs = set(self._guarded(lambda: [int(t) for t in self.graph.OutputsAsNumpy()]) if self.graph.OutputsLength() else [])
        read: dict[int, tuple[int, bool, int]] = {}  # op -> (sequence read, through REVERSE_V2, output in input time)
        for k in fused:
            source = inputs[k][0] if inputs[k] else -1
            reversed_input = source in producer and self._reverses_time(producer[source])
            if reversed_input:
                source = inputs[producer[source]][0]
            out = outputs[k][0] if outputs[k] else -1
            after = consumers.get(out, [])
            if reversed_input and len(after) == 1 and out not in graph_outputs and self._reverses_time(after[0]):
                out = outputs[after[0]][0]
            read[k] = (source, reversed_input, out)
        groups: list[_Group] = []
        used: set[int] = set()
        for k in fused:
            if k in used:
                continue
            source, reversed_input, out = read[k]
            partner = next((j for j in fused if j not in used and j != k and read[j][0] == source and read[j][1] != reversed_input
                            and read[j][2] != outputs[j][0] and codes[j] == codes[k]), None) if not reversed_input else None
            merge, name = (self._merge(out, read[partner][2], consumers, codes, outputs, graph_outputs) if partner is not None else (None, ""))
            if partner is not None and merge is not None:
                used.update((k, partner))
                groups.append(_Group(name or self.output_name(k), (k, partner), merge=merge))
                continue
            used.add(k)
            aligned = reversed_input and out != outputs[k][0]
            groups.append(_Group(self.output_name(k), (k,), reversed_input=reversed_input, aligned=aligned))
        return groups

    def _merge(self, forward: int, backward: int, consumers: dict[int, list[int]], codes: list[int],
               outputs: list[list[int]], graph_outputs: set[int]) -> tuple[str | None, str]:
        """How a pair's outputs meet: (merge_mode, the merged tensor's name), or (None, "") if they do not. A
        concatenation must put the forward direction first on the last axis, an average multiply by 0.5."""
        shared = set(consumers.get(forward, [])) & set(consumers.get(backward, []))
        if len(shared) == 1:
            merge = shared.pop()
            merged = outputs[merge][0]
            name = self._tensor_name(merged)
            ordered = self.op_inputs[merge] == [forward, backward]
            if codes[merge] == _CONCATENATION:
                options = self._guarded(lambda: self._options(self.graph.Operators(merge), "ConcatenationOptions"))
                axis = int(options.Axis()) if options is not None else 0
                return ("concat", name) if ordered and axis in (-1, 2) else (None, "")
            if codes[merge] == _MUL and sorted(self.op_inputs[merge]) == sorted([forward, backward]):
                return "mul", name
            if codes[merge] == _ADD and sorted(self.op_inputs[merge]) == sorted([forward, backward]):
                after = consumers.get(merged, [])
                if len(after) == 1 and codes[after[0]] == _MUL:
                    half = [t for t in self.op_inputs[after[0]] if t != merged]
                    if len(half) == 1 and self._constant(half[0], "<f4") == [0.5]:
                        return "ave", self._tensor_name(outputs[after[0]][0])
                    return None, ""
                return "sum", name
        if forward in graph_outputs and backward in graph_outputs:
            return "none", self._tensor_name(forward)
        return None, ""

    def arranged(self, group: _Group) -> LayerItem:
        """The layer a group makes and its function: the TFLite kernels on the file's own arrays, around their
        REVERSE_V2 and merge ops (:func:`lstmconv.reference.tflite.tflite_layer_function`)."""
        from lstmconv.reference.tflite import tflite_layer_function

        built = [self.layer(k) for k in group.ops]
        layer, op = built[0]
        if group.reversed_input:
            layer = layer.model_copy(update={"go_backwards": True, "time_aligned_output": group.aligned})
        ops = [op]
        if len(built) == 2:
            backward, backward_op = built[1]
            if backward.meta().model_copy(update={"name": "", "source": None}) != layer.meta().model_copy(update={"name": "", "source": None}):
                raise UnsupportedFeatureError("the two directions of a bidirectional pair differ in size or activation", file=self.path, layer=group.name)
            level = StackLevel(forward=layer.levels[0].forward, backward=backward.levels[0].forward)
            layer = layer.model_copy(update={"bidirectional": True, "merge_mode": group.merge, "levels": (level,)})
            ops.append(dataclasses.replace(backward_op, backward=True))
        layer = RecurrentLayer.model_validate({**dict(layer), "name": group.name, "levels": layer.levels})
        return layer, tflite_layer_function(layer.meta(), ops)

    def layer(self, index: int) -> tuple[RecurrentLayer, TfliteRecurrentOp]:
        """The canonical layer of fused op ``index`` and the op as TFLite runs it, both on the file's arrays."""
        op = self._guarded(lambda: self.graph.Operators(index))
        name = self.output_name(index)
        if self.codes[index] == 44:
            return self._lstm(op, self.op_inputs[index], name)
        return self._rnn(op, self.op_inputs[index], name)

    def _options(self, op: Any, table: str) -> Any:
        import importlib

        cls = getattr(importlib.import_module(f"tflite.{table}"), table)
        found = op.BuiltinOptions()
        if found is None:
            return None
        options = cls()
        options.Init(found.Bytes, found.Pos)
        return options

    def _activation(self, number: int, layer: str) -> tuple[str, Activation]:
        fused = _ACTIVATIONS.get(number)
        canonical = {v: k for k, v in FUSED_ACTIVATIONS.items()}.get(fused or "")
        if canonical is None:
            raise UnsupportedFeatureError(f"fused activation {number} is not one TFLite's sequence kernels apply", file=self.path, layer=layer)
        return fused, Activation(name=canonical)  # type: ignore[arg-type,return-value]

    def _source(self) -> SourceInfo:
        description = self._guarded(lambda: (self.model.Description() or b"").decode("utf-8", "replace"))
        return SourceInfo(framework="tflite", layout="tflite", version=description or None)

    def _lstm(self, op: Any, inputs: list[int], name: str) -> tuple[RecurrentLayer, TfliteRecurrentOp]:
        options = self._guarded(lambda: self._options(op, "UnidirectionalSequenceLSTMOptions"))
        cell_clip = float(options.CellClip()) if options is not None else 0.0
        proj_clip = float(options.ProjClip()) if options is not None else 0.0
        number = int(options.FusedActivationFunction()) if options is not None else 4
        fused, activation = self._activation(number, name)
        slot = dict(enumerate(inputs))
        if proj_clip > 0:
            raise UnsupportedFeatureError(
                f"proj_clip={proj_clip:g}: this LSTM clamps its projected output at every step, which lstmconv's canonical "
                "layers do not hold", file=self.path, layer=name,
            )
        if slot.get(LSTM_INPUT_WEIGHTS["input"], -1) < 0:
            raise UnsupportedFeatureError("a coupled input and forget gate (CIFG: no input gate weights)", file=self.path, layer=name)
        if any(slot.get(k, -1) >= 0 for k in (17, 20, 21, 22, 23)):
            raise UnsupportedFeatureError("a projection bias or layer normalisation, which the canonical LSTM has not", file=self.path, layer=name)
        arrays = {k: self.array(t, name) for k, t in slot.items() if 0 < k < LSTM_CELL_STATE - 1 and t >= 0}
        gates = {}
        for gate in CELL_GATES["lstm"]:
            gates[gate] = GateWeights(
                w_input=arrays[LSTM_INPUT_WEIGHTS[gate]], w_recurrent=arrays[LSTM_RECURRENT_WEIGHTS[gate]],
                b_input=arrays.get(LSTM_BIASES[gate]), peephole=arrays.get(LSTM_PEEPHOLES.get(gate, -1)),
            )
        projection = arrays.get(LSTM_PROJECTION)
        units, inputs_size = gates["input"].w_input.shape
        layer = RecurrentLayer(
            name=name, cell="lstm", input_size=int(inputs_size), hidden_size=int(units),
            projection_size=None if projection is None else int(projection.shape[0]),
            use_bias=all(g.b_input is not None for g in gates.values()), state_clip=cell_clip if cell_clip > 0 else None,
            activations=CellActivations(gate=Activation(name="sigmoid"), candidate=activation, cell_output=activation),
            source=self._source(), levels=(StackLevel(forward=DirectionWeights(gates=gates, w_projection=projection)),),  # type: ignore[arg-type]
        )
        slots = dict(arrays)
        for bias_slot in LSTM_BIASES.values():
            slots.setdefault(bias_slot, np.zeros(units, np.float32))
        kernel = TfliteRecurrentOp(cell="lstm", level=0, backward=False, units=int(units), outputs=layer.output_size,
                                   slots=slots, activation=fused, cell_clip=cell_clip)
        return layer, kernel

    def _rnn(self, op: Any, inputs: list[int], name: str) -> tuple[RecurrentLayer, TfliteRecurrentOp]:
        options = self._guarded(lambda: self._options(op, "SequenceRNNOptions"))
        fused, activation = self._activation(int(options.FusedActivationFunction()) if options is not None else 4, name)
        if len(inputs) < 4 or min(inputs[:3]) < 0:
            raise InputFormatError("the RNN op lacks its weights", file=self.path, layer=name, actual=inputs)
        weights, recurrent = self.array(inputs[1], name), self.array(inputs[2], name)
        bias = self.array(inputs[3], name) if inputs[3] >= 0 else None
        gates = {"hidden": GateWeights(w_input=weights, w_recurrent=recurrent, b_input=bias)}
        layer = RecurrentLayer(
            name=name, cell="rnn", input_size=int(weights.shape[1]), hidden_size=int(weights.shape[0]), use_bias=bias is not None,
            activations=CellActivations(gate=None, candidate=activation, cell_output=None),
            source=self._source(), levels=(StackLevel(forward=DirectionWeights(gates=gates)),),  # type: ignore[arg-type]
        )
        named = {"weights": weights, "recurrent": recurrent, "bias": np.zeros(weights.shape[0], np.float32) if bias is None else bias}
        units = int(weights.shape[0])
        return layer, TfliteRecurrentOp(cell="rnn", level=0, backward=False, units=units, outputs=units, named=named, activation=fused)
