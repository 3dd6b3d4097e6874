"""The TFLite target's graph: canonical layers -> builtin ops of one subgraph (plus a GRU's loop subgraphs).

Two shapes of output, as for ONNX (:mod:`lstmconv.targets.onnx_graph`):

* **whole model**, when the source says how its layers connect: input ``input`` and output ``output``
  (``input_<name>`` / the output layers' names when there are several), batch-first;
* **per layer** otherwise: each layer on its own, input ``<layer>.x`` (batch, time, features), output
  ``<layer>.y`` (the whole sequence, merged as the layer merges; ``.y_forward``/``.y_backward`` for
  ``merge_mode=None``).

Every recurrent op starts from zeros on every ``invoke()``: its state tensors (which TFLite keeps between calls)
are filled with zeros by ``FILL`` ops computed before it, sized from the input's batch (``SHAPE`` ->
``STRIDED_SLICE``), so a model resized to another batch stays stateless. Inputs are written for batch 1 and the
source's time length (1 when unknown) with ``-1`` in their shape signature: ``resize_tensor_input`` then
``allocate_tensors`` runs any other. A backward direction (and a Keras ``go_backwards`` layer) reads the
sequence through ``REVERSE_V2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmconv.activations import Activation
from lstmconv.adapters.tflite import ops_from_canonical, tflite_refusals
from lstmconv.errors import UnsupportedFeatureError
from lstmconv.io.tflite_flatbuffer import TfliteModel, TfliteSubgraph
from lstmconv.layouts.tflite import ACTIVATION_OPS, LSTM_CELL_STATE, LSTM_INPUTS, LSTM_OUTPUT_STATE, TfliteRecurrentOp
from lstmconv.reference.common import ReferenceFn
from lstmconv.reference.tflite import tflite_dense_function, tflite_layer_function
from lstmconv.schema import (
    ActivationLayer,
    ConcatenateLayer,
    DenseLayer,
    DropoutLayer,
    EmbeddingLayer,
    Layer,
    RecurrentLayer,
    Wiring,
)

__all__ = ["TflitePlan"]

_ACTIVATION_ENUM = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4}


#: the options table of each elementwise binary op lstmconv writes (MINIMUM, MAXIMUM have none)
_BINARY_OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions"}


def _binary(g: TfliteSubgraph, code: str, left: int, right: int, name: str) -> int:
    """``code(left, right)``, elementwise (an operand may be a scalar: broadcast)."""
    out = g.tensor(name, max(g.shape_of(left), g.shape_of(right), key=len))
    options = _BINARY_OPTIONS.get(code)
    g.op(code, [left, right], [out], (options, {}) if options else None)
    return out


class Pair(tuple[int, int]):
    """A merge_mode=None layer's two outputs (forward, backward); a layer reading it reads the forward one."""

    def __new__(cls, forward: int, backward: int) -> Pair:
        return super().__new__(cls, (forward, backward))


def _first(value: int | Pair) -> int:
    return value[0] if isinstance(value, Pair) else value


@dataclass
class TflitePlan:
    """A model built one layer at a time; its check functions by layer name."""

    wiring: Wiring | None
    description: str
    model: TfliteModel = field(init=False)
    graph: TfliteSubgraph = field(init=False)
    functions: dict[str, ReferenceFn] = field(default_factory=dict)
    _values: dict[str, int | Pair] = field(default_factory=dict)
    _dims: dict[tuple[int, int, bool], int] = field(default_factory=dict)  # (sequence, axis, scalar) -> its size
    _waiting: dict[str, Layer] = field(default_factory=dict)
    _next: int = 0
    _time: int = 1

    def __post_init__(self) -> None:
        self.model = TfliteModel(self.description)
        self.graph = self.model.subgraph("main")
        if self.wiring is not None:
            self._model_inputs(self.wiring)

    # -- layers in ----------------------------------------------------------------------------------------

    def add(self, layer: Layer) -> list[Layer]:
        """Put ``layer`` in (with any layer that was waiting for it); the layers that went in, in order."""
        if self.wiring is None:
            self._alone(layer)
            return [layer]
        if layer.name not in self.wiring.inbound:
            return []
        self._waiting[layer.name] = layer
        done = []
        order = list(self.wiring.inbound)
        while self._next < len(order) and order[self._next] in self._waiting:
            wired = self._waiting.pop(order[self._next])
            incoming = [_first(self._values[name]) for name in self.wiring.inbound[wired.name]]
            self._values[wired.name] = self._emit(wired, incoming, full_sequence=False)
            done.append(wired)
            self._next += 1
        return done

    def finish(self) -> memoryview:
        if self.wiring is not None:
            order = list(self.wiring.inbound)
            if self._next < len(order):
                raise UnsupportedFeatureError("layer in the model's wiring has no canonical form", layer=order[self._next])
            for layer, index in self.wiring.model_outputs():
                if index != 0:
                    raise UnsupportedFeatureError("a model output that is a layer's state (return_state)", layer=layer,
                                                  hint="lstmconv's TFLite models output sequences and last steps")
                name = "output" if len(self.wiring.outputs) == 1 else layer
                value = self._values[layer]
                outputs = list(zip(value, ("_forward", "_backward"))) if isinstance(value, Pair) else [(value, "")]
                for tensor, suffix in outputs:
                    self._output(tensor, name + suffix)
        if not self.graph.outputs:
            raise UnsupportedFeatureError("nothing to write: no recurrent, Dense or Embedding layer")
        return self.model.to_bytes()

    def _output(self, tensor: int, name: str) -> None:
        """Make ``tensor`` a model output called ``name`` (an input passed through gets a copy)."""
        if tensor in self.graph.inputs or tensor in self.graph.outputs:
            shape = self.graph.shape_of(tensor)
            copy = self.graph.tensor(name, shape)
            self.graph.op("RESHAPE", [tensor, self.graph.constant(f"{name}/shape", np.asarray(shape, np.int32))], [copy])
            tensor = copy
        for other in self.graph.tensors:  # an inner tensor with the output's name gives it up
            if other.name == name:
                other.name = f"{name}_inner"
        self.graph.tensors[tensor].name = name
        self.graph.outputs.append(tensor)

    def _alone(self, layer: Layer) -> None:
        g = self.graph
        if isinstance(layer, RecurrentLayer):
            shape, signature, dtype = (1, 1, layer.input_size), (-1, -1, layer.input_size), "float32"
        elif isinstance(layer, DenseLayer):
            shape = (1, 1, layer.input_size) if layer.time_distributed else (1, layer.input_size)
            signature, dtype = tuple(-1 for _ in shape[:-1]) + (layer.input_size,), "float32"
        elif isinstance(layer, EmbeddingLayer):
            shape, signature, dtype = (1, 1), (-1, -1), "int32"
        else:
            return  # weightless layers mean nothing on their own
        x = g.tensor(f"{layer.name}.x", shape, dtype, signature=signature)
        g.inputs.append(x)
        y = self._emit(layer, [x], full_sequence=True)
        outputs = list(zip(y, (".y_forward", ".y_backward"))) if isinstance(y, Pair) else [(y, ".y")]
        for tensor, suffix in outputs:
            self._output(tensor, f"{layer.name}{suffix}")

    def _model_inputs(self, wiring: Wiring) -> None:
        for model_input in wiring.inputs:
            name = "input" if len(wiring.inputs) == 1 else f"input_{model_input.name}"
            dims = list(model_input.shape)
            shape = [1] + [d if d is not None else 1 for d in dims]
            signature = [-1] + [d if d is not None else -1 for d in dims]
            if len(shape) >= 3:
                self._time = shape[1]
            dtype = "int32" if model_input.dtype in ("int32", "int64") else "float32"
            x = self.graph.tensor(name, shape, dtype, signature=tuple(signature))
            self.graph.inputs.append(x)
            self._values[model_input.name] = x

    # -- one layer ------------------------------------------------------------------------------------------

    def _emit(self, layer: Layer, incoming: list[int], *, full_sequence: bool) -> int | Pair:
        g = self.graph
        if reasons := tflite_refusals(layer):
            raise UnsupportedFeatureError("; ".join(reasons), layer=layer.name)
        if isinstance(layer, RecurrentLayer):
            return self._recurrent(layer, incoming[0], full_sequence=full_sequence)
        if isinstance(layer, DenseLayer):
            x = incoming[0]
            weight = g.constant(f"{layer.name}/kernel", layer.weight)
            bias = g.constant(f"{layer.name}/bias", layer.bias) if layer.bias is not None else -1
            shape = g.shape_of(x)[:-1] + (layer.units,)
            y = g.tensor(f"{layer.name}/matmul", shape)
            g.op("FULLY_CONNECTED", [x, weight, bias], [y], ("FullyConnectedOptions", {"KeepNumDims": True}))
            self.functions[layer.name] = tflite_dense_function(layer.activation, np.asarray(layer.weight, np.float32),
                                                               None if layer.bias is None else np.asarray(layer.bias, np.float32))
            return self._activation(layer.activation, y, layer.name)
        if isinstance(layer, EmbeddingLayer):
            x = incoming[0]
            ids = x
            if g.tensors[x].dtype != "int32":  # Keras casts ids to integers whatever the input's type
                ids = g.tensor(f"{layer.name}/ids", g.shape_of(x), "int32")
                g.op("CAST", [x], [ids])
            table = g.constant(f"{layer.name}/embeddings", layer.weight)
            y = g.tensor(layer.name, g.shape_of(x) + (layer.embedding_size,))
            g.op("GATHER", [table, ids], [y], ("GatherOptions", {"Axis": 0}))
            return y
        if isinstance(layer, ActivationLayer):
            return self._activation(layer.activation, incoming[0], layer.name)
        if isinstance(layer, DropoutLayer):
            return incoming[0]
        if isinstance(layer, ConcatenateLayer):
            rank = len(g.shape_of(incoming[0]))
            axis = layer.axis % rank
            shape = list(g.shape_of(incoming[0]))
            shape[axis] = sum(g.shape_of(t)[axis] for t in incoming)
            y = g.tensor(layer.name, tuple(shape))
            g.op("CONCATENATION", incoming, [y], ("ConcatenationOptions", {"Axis": axis}))
            return y
        raise UnsupportedFeatureError(f"no TFLite mapping for {type(layer).__name__}", layer=layer.name)

    def _activation(self, activation: Activation, x: int, hint: str, g: TfliteSubgraph | None = None) -> int:
        g = g or self.graph
        name = activation.name
        shape = g.shape_of(x)

        def unary(code: str, source: int, options: tuple[str, dict[str, object]] | None = None, tag: str = name) -> int:
            y = g.tensor(f"{hint}/{tag}", shape)
            g.op(code, [source], [y], options)
            return y

        def binary(code: str, a: int, b: int, tag: str) -> int:
            return _binary(g, code, a, b, f"{hint}/{tag}")

        if name == "linear":
            return x
        if name == "softmax":
            return unary("SOFTMAX", x, ("SoftmaxOptions", {"Beta": 1.0}))
        if name in ACTIVATION_OPS:
            return unary(ACTIVATION_OPS[name], x)
        if name in ("gelu", "gelu_tanh"):
            return unary("GELU", x, ("GeluOptions", {"Approximate": name == "gelu_tanh"}))
        if name == "silu":
            return binary("MUL", x, unary("LOGISTIC", x, tag="gate"), "silu")
        if name == "hard_sigmoid":  # clip(alpha * x + beta, 0, 1)
            scaled = binary("MUL", x, g.constant(f"{hint}/alpha", np.float32(activation.alpha)), "scaled")
            shifted = binary("ADD", scaled, g.constant(f"{hint}/beta", np.float32(activation.beta)), "shifted")
            low = binary("MAXIMUM", shifted, g.constant(f"{hint}/zero", np.float32(0.0)), "low")
            return binary("MINIMUM", low, g.constant(f"{hint}/one", np.float32(1.0)), "hard_sigmoid")
        if name == "softsign":  # x / (1 + |x|)
            plus = binary("ADD", unary("ABS", x, tag="abs"), g.constant(f"{hint}/one", np.float32(1.0)), "denominator")
            return binary("DIV", x, plus, "softsign")
        raise UnsupportedFeatureError(f"activation {activation} has no TFLite mapping in lstmconv", layer=hint)

    # -- recurrent layers -----------------------------------------------------------------------------------

    def _dim(self, x: int, axis: int, *, scalar: bool = False) -> int:
        """The run-time size of ``x``'s ``axis`` as an int32 [1] tensor (a scalar with ``scalar``): ``SHAPE`` then
        ``STRIDED_SLICE``, each computed once per tensor."""
        g = self.graph
        if (x, -1, False) not in self._dims:
            shape = g.tensor(f"{g.tensors[x].name}/shape", (len(g.shape_of(x)),), "int32")
            g.op("SHAPE", [x], [shape], ("ShapeOptions", {"OutType": 2}))
            self._dims[(x, -1, False)] = shape
        if (x, axis, scalar) not in self._dims:
            size = g.tensor(f"{g.tensors[x].name}/size{axis}", () if scalar else (1,), "int32")
            bounds = [g.constant(f"{g.tensors[x].name}/{tag}{axis}", np.array([value], np.int32)) for tag, value in (("begin", axis), ("end", axis + 1), ("stride", 1))]
            g.op("STRIDED_SLICE", [self._dims[(x, -1, False)], *bounds], [size], ("StridedSliceOptions", {"ShrinkAxisMask": int(scalar)}))
            self._dims[(x, axis, scalar)] = size
        return self._dims[(x, axis, scalar)]

    def _zeros(self, name: str, sizes: list[int], width: int, shape: tuple[int, ...], *, variable: bool = False) -> int:
        """A tensor of ``shape`` filled with zeros on every call, sized at run time by the int32 [1] ``sizes``
        and ``width`` (``variable``: a fused op's state tensor, which TFLite would otherwise keep between calls)."""
        g = self.graph
        out = g.tensor(name, shape, variable=variable)
        dims = g.tensor(f"{name}/dims", (len(sizes) + 1,), "int32")
        g.op("CONCATENATION", [*sizes, g.constant(f"{name}/width", np.array([width], np.int32))], [dims], ("ConcatenationOptions", {"Axis": 0}))
        g.op("FILL", [dims, g.constant(f"{name}/zero", np.float32(0.0))], [out])
        return out

    def _reverse(self, x: int, name: str) -> int:
        g = self.graph
        y = g.tensor(name, g.shape_of(x))
        g.op("REVERSE_V2", [x, g.constant(f"{name}/axis", np.array([1], np.int32))], [y])
        return y

    def _fused(self, op: TfliteRecurrentOp, x: int, name: str) -> int:
        """One fused op over ``x``: its output sequence (in the order it read ``x``)."""
        g = self.graph
        batch = self._dim(x, 0)
        shape = g.shape_of(x)[:2] + (op.outputs,)
        y = g.tensor(f"{name}/y", shape)
        if op.cell == "lstm" and not op.looped:
            inputs = [-1] * LSTM_INPUTS
            inputs[0] = x
            for slot, array in sorted(op.slots.items()):
                inputs[slot] = g.constant(f"{name}/input_{slot}", array)
            inputs[LSTM_OUTPUT_STATE] = self._zeros(f"{name}/output_state", [batch], op.outputs, (1, op.outputs), variable=True)
            inputs[LSTM_CELL_STATE] = self._zeros(f"{name}/cell_state", [batch], op.units, (1, op.units), variable=True)
            options = {"FusedActivationFunction": _ACTIVATION_ENUM[op.activation], "CellClip": op.cell_clip, "ProjClip": 0.0, "TimeMajor": False}
            g.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y], ("UnidirectionalSequenceLSTMOptions", options))
            return y
        if op.cell == "rnn":
            inputs = [x, *(g.constant(f"{name}/{key}", op.named[key]) for key in ("weights", "recurrent", "bias"))]
            inputs.append(self._zeros(f"{name}/hidden_state", [batch], op.units, (1, op.units), variable=True))
            options = {"TimeMajor": False, "FusedActivationFunction": _ACTIVATION_ENUM[op.activation]}
            g.op("UNIDIRECTIONAL_SEQUENCE_RNN", inputs, [y], ("SequenceRNNOptions", options))
            return y
        return self._loop(op, x, batch, name)

    def _loop(self, op: TfliteRecurrentOp, x: int, batch: int, name: str) -> int:
        """A GRU, or an LSTM the fused op cannot compute, as TensorFlow's converter writes a recurrence it does
        not fuse: a ``WHILE`` loop of builtin ops. The input products of every step are computed before the loop
        (``FULLY_CONNECTED`` over the sequence); each turn gathers step ``t``'s, runs the recurrent products and
        the gates on the state, and writes ``h'`` into the output sequence (``DYNAMIC_UPDATE_SLICE``). Loop
        variables: t, steps, h (and c), y, the gates' input products."""
        g, a = self.graph, op.named
        units, lstm = op.units, op.cell == "lstm"
        keys = ("i", "f", "c", "o") if lstm else ("z", "r", "h")
        batch_size, steps_count = g.shape_of(x)[:2]
        sequence_shape, state_shape = (batch_size, steps_count, units), (batch_size, units)
        states = [self._zeros(f"{name}/h0", [batch], units, state_shape)]
        if lstm:
            states.append(self._zeros(f"{name}/c0", [batch], units, state_shape))
        steps = self._dim(x, 1, scalar=True)
        y0 = self._zeros(f"{name}/y0", [batch, self._dim(x, 1)], units, sequence_shape)
        projections = []
        for key in keys:
            out = g.tensor(f"{name}/x_{key}", sequence_shape)
            g.op("FULLY_CONNECTED", [x, g.constant(f"{name}/w_{key}", a[f"w_{key}"]), g.constant(f"{name}/b_{key}", a[f"b_{key}"])],
                 [out], ("FullyConnectedOptions", {"KeepNumDims": True}))
            projections.append(out)
        initial = [g.constant(f"{name}/t0", np.int32(0)), steps, *states, y0, *projections]
        labels = ["t", "steps", "h", *(["c"] if lstm else []), "y", *(f"x_{key}" for key in keys)]
        shapes = [(), (), *([state_shape] * len(states)), sequence_shape, *([sequence_shape] * len(keys))]
        types = ["int32", "int32", *(["float32"] * (len(labels) - 2))]
        cond, body = self.model.subgraph(f"{name}/cond"), self.model.subgraph(f"{name}/body")
        indices = (self.model.subgraphs.index(cond), self.model.subgraphs.index(body))
        cond.inputs = [cond.tensor(f"{name}/{label}", shp, dtype) for label, shp, dtype in zip(labels, shapes, types)]
        going = cond.tensor(f"{name}/going", (), "bool")
        cond.op("LESS", cond.inputs[:2], [going])
        cond.outputs = [going]
        body.inputs = [body.tensor(f"{name}/{label}", shp, dtype) for label, shp, dtype in zip(labels, shapes, types)]
        t, h = body.inputs[0], body.inputs[2]
        c = body.inputs[3] if lstm else -1
        y = body.inputs[3 + lstm]
        inputs = body.inputs[4 + lstm :]
        step = {}
        for key, projected in zip(keys, inputs):
            step[key] = body.tensor(f"{name}/x_{key}_t", state_shape)
            body.op("GATHER", [projected, t], [step[key]], ("GatherOptions", {"Axis": 1}))

        def recurrent(key: str, state: int) -> int:
            out = body.tensor(f"{name}/h_{key}", state_shape)
            bias = body.constant(f"{name}/rb_{key}", a[f"rb_{key}"]) if f"rb_{key}" in a else -1
            body.op("FULLY_CONNECTED", [state, body.constant(f"{name}/r_{key}", a[f"r_{key}"]), bias], [out], ("FullyConnectedOptions", {}))
            return out

        def binary(code: str, left: int, right: int, tag: str) -> int:
            return _binary(body, code, left, right, f"{name}/{tag}")

        def activation(which: Activation | None, value: int, tag: str) -> int:
            assert which is not None
            return self._activation(which, value, f"{name}/{tag}", body)

        if lstm:
            pre = {key: binary("ADD", step[key], recurrent(key, h), f"pre_{key}") for key in keys}
            for key in ("i", "f"):
                if f"p_{key}" in a:
                    pre[key] = binary("ADD", pre[key], binary("MUL", body.constant(f"{name}/p_{key}", a[f"p_{key}"]), c, f"peep_{key}"), f"pre_{key}_peep")
            i, f = activation(op.gate, pre["i"], "i"), activation(op.gate, pre["f"], "f")
            c_new = binary("ADD", binary("MUL", f, c, "kept"), binary("MUL", i, activation(op.candidate, pre["c"], "candidate"), "new"), "c_new")
            if op.cell_clip > 0:
                bound = body.constant(f"{name}/clip", np.float32(op.cell_clip))
                minus = body.constant(f"{name}/minus_clip", np.float32(-op.cell_clip))
                c_new = binary("MAXIMUM", binary("MINIMUM", c_new, bound, "c_low"), minus, "c_clipped")
            if "p_o" in a:
                pre["o"] = binary("ADD", pre["o"], binary("MUL", body.constant(f"{name}/p_o", a["p_o"]), c_new, "peep_o"), "pre_o_peep")
            h_new = binary("MUL", activation(op.gate, pre["o"], "o"), activation(op.cell_output, c_new, "cell_output"), "h_new")
            carried_states = [h_new, c_new]
        else:
            gates = {key: activation(op.gate, binary("ADD", step[key], recurrent(key, h), f"pre_{key}"), key) for key in ("z", "r")}
            if op.reset_after:
                pre_h = binary("ADD", step["h"], binary("MUL", gates["r"], recurrent("h", h), "reset_h"), "pre_h")
            else:
                pre_h = binary("ADD", step["h"], recurrent("h", binary("MUL", gates["r"], h, "reset_h")), "pre_h")
            candidate = activation(op.candidate, pre_h, "candidate")
            kept = binary("MUL", gates["z"], h, "kept")
            rest = binary("SUB", body.constant(f"{name}/one", np.float32(1.0)), gates["z"], "one_minus_z")
            h_new = binary("ADD", kept, binary("MUL", rest, candidate, "new"), "h_new")
            carried_states = [h_new]
        row = body.tensor(f"{name}/row", (batch_size, 1, units))
        body.op("EXPAND_DIMS", [h_new, body.constant(f"{name}/time_axis", np.int32(1))], [row])
        start = body.tensor(f"{name}/start", (3,), "int32")
        origin = body.constant(f"{name}/origin", np.int32(0))
        body.op("PACK", [origin, t, origin], [start], ("PackOptions", {"ValuesCount": 3, "Axis": 0}))
        y_new = body.tensor(f"{name}/y_new", sequence_shape)
        body.op("DYNAMIC_UPDATE_SLICE", [y, row, start], [y_new])
        t_new = body.tensor(f"{name}/t_next", (), "int32")
        body.op("ADD", [t, body.constant(f"{name}/step", np.int32(1))], [t_new], ("AddOptions", {}))
        body.outputs = [t_new, body.inputs[1], *carried_states, y_new, *inputs]
        finals = [g.tensor(f"{name}/final_{label}", shp, dtype) for label, shp, dtype in zip(labels, shapes, types)]
        g.op("WHILE", initial, finals, ("WhileOptions", {"CondSubgraphIndex": indices[0], "BodySubgraphIndex": indices[1]}))
        return finals[3 + lstm]

    def _recurrent(self, layer: RecurrentLayer, x: int, *, full_sequence: bool) -> int | Pair:
        ops = ops_from_canonical(layer)
        self.functions[layer.name] = tflite_layer_function(layer.meta(), ops)
        sequence = x
        per_direction: list[tuple[int, int]] = []  # (aligned with input time, in processing order)
        for level in range(layer.num_levels):
            last_level = level + 1 == layer.num_levels
            per_direction = []
            for op in [op for op in ops if op.level == level]:
                side = "backward" if op.backward else "forward"
                name = layer.name if layer.num_levels == 1 and not layer.bidirectional else f"{layer.name}/l{level}_{side}"
                reads_backwards = op.backward or layer.go_backwards
                fed = self._reverse(sequence, f"{name}/reversed_x") if reads_backwards else sequence
                processed = self._fused(op, fed, name)
                # put back in input time only where something reads it so (no op computes what nothing reads)
                wanted = layer.bidirectional or not last_level or layer.time_aligned_output
                aligned = self._reverse(processed, f"{name}/y_aligned") if reads_backwards and (wanted and (full_sequence or layer.return_sequences or not last_level)) else processed
                per_direction.append((aligned, processed))
            if len(per_direction) == 2 and not last_level:
                sequence = self._concat([per_direction[0][0], per_direction[1][0]], f"{layer.name}/l{level}_joined", axis=2)
            else:
                sequence = per_direction[0][0]
        if full_sequence or layer.return_sequences:
            if layer.bidirectional:
                return self._merge(layer, per_direction[0][0], per_direction[1][0])
            aligned, processed = per_direction[0]
            return processed if layer.go_backwards and not layer.time_aligned_output else aligned
        # return_sequences=False: each direction's last processed step
        lasts = [self._last(processed, f"{layer.name}/last_{k}") for k, (_, processed) in enumerate(per_direction)]
        return self._merge(layer, *lasts) if layer.bidirectional else lasts[0]

    def _last(self, sequence: int, name: str) -> int:
        g = self.graph
        batch, _, width = g.shape_of(sequence)
        y = g.tensor(name, (batch, width))
        g.op("STRIDED_SLICE", [sequence, g.constant(f"{name}/begin", np.array([0, -1, 0], np.int32)),
                               g.constant(f"{name}/end", np.array([0, 0, 0], np.int32)), g.constant(f"{name}/strides", np.array([1, 1, 1], np.int32))],
             [y], ("StridedSliceOptions", {"BeginMask": 5, "EndMask": 7, "ShrinkAxisMask": 2}))
        return y

    def _concat(self, parts: list[int], name: str, axis: int) -> int:
        g = self.graph
        shape = list(g.shape_of(parts[0]))
        shape[axis] = sum(g.shape_of(p)[axis] for p in parts)
        y = g.tensor(name, tuple(shape))
        g.op("CONCATENATION", parts, [y], ("ConcatenationOptions", {"Axis": axis}))
        return y

    def _merge(self, layer: RecurrentLayer, forward: int, backward: int) -> int | Pair:
        g = self.graph
        mode, name = layer.merge_mode, layer.name
        if mode == "none":
            return Pair(forward, backward)
        if mode == "concat":
            return self._concat([forward, backward], f"{name}/concat", axis=len(g.shape_of(forward)) - 1)
        if mode == "sum":
            return _binary(g, "ADD", forward, backward, f"{name}/sum")
        if mode == "mul":
            return _binary(g, "MUL", forward, backward, f"{name}/mul")
        if mode == "ave":
            total = _binary(g, "ADD", forward, backward, f"{name}/total")
            return _binary(g, "MUL", total, g.constant(f"{name}/half", np.float32(0.5)), f"{name}/ave")
        raise UnsupportedFeatureError(f"merge_mode={mode} has no TFLite mapping", layer=name)
