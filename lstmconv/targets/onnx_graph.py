"""The ONNX target: canonical layers -> a runnable model built from the fused LSTM/GRU/RNN operators.

Two shapes of output (``../shared/DESIGN.md``):

* **whole model**, when the source says how its layers connect (a Keras Sequential or functional model
  of supported layers): input ``input`` and output ``output`` (``input_<name>`` / the output layers' names
  when there are several), batch-first, dynamic batch and time;
* **per layer** otherwise, or with ``per_layer=True``: every recurrent layer on its own with input
  ``<layer>.x`` (batch, time, features) and outputs ``<layer>.y`` (batch-first, as torch with
  ``batch_first=True`` returns it, merged as the layer merges), ``<layer>.h_n`` and for LSTM ``<layer>.c_n``
  (``[levels*directions, batch, hidden]``, torch's layout); Dense and Embedding layers likewise.

Recurrent ops always get ``layout=0`` (onnxruntime rejects ``layout=1``) between ``Transpose`` ops, explicit
``activations`` with one ``activation_alpha``/``activation_beta`` entry per activation, and an explicit
``linear_before_reset`` for GRU. A Keras ``go_backwards`` layer is a ``direction="reverse"`` node whose
output is flipped into Keras' processing order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmconv.activations import Activation
from lstmconv.adapters.onnx import nodes_from_canonical
from lstmconv.errors import UnsupportedFeatureError, VerificationError
from lstmconv.io import onnx_proto
from lstmconv.io.onnx_proto import element_type, from_array, make_node, make_value_info
from lstmconv.layouts.onnx import STANDALONE_OPS, OnnxRecurrentNode, activation_attributes
from lstmconv.reference.common import ReferenceFn
from lstmconv.reference.onnx_function import onnx_dense_function, onnx_layer_function
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

__all__ = ["OPSET", "Emitted", "OnnxPlan"]

OPSET = 17
_INT_MIN = -(2**63)


class _Graph:
    """A small ONNX graph builder that keeps unique value names and the rank of every value."""

    def __init__(self) -> None:
        self.nodes: list[onnx_proto.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.rank: dict[str, int] = {}
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._used:
            name, k = f"{hint}_{k}", k + 1
        self._used.add(name)
        return name

    def rename(self, old: str, new: str) -> None:
        """Call the value ``old`` ``new`` everywhere in the graph (``old`` becomes free for an output)."""
        for node in self.nodes:
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]
        if old in self.initializers:
            self.initializers[new] = self.initializers.pop(old)
        self.rank[new] = self.rank.pop(old)

    def const(self, hint: str, array: np.ndarray) -> str:
        """An initializer; float16 is widened to float32 (exact), as the graph computes in float32."""
        name = self.fresh(hint)
        dtype = np.dtype(np.float32) if array.dtype == np.float16 else array.dtype.newbyteorder("=")
        self.initializers[name] = np.ascontiguousarray(array, dtype=dtype)
        return name

    def scalar(self, hint: str, value: float) -> str:
        return self.const(hint, np.asarray(value, dtype=np.float32))

    def ints(self, hint: str, values: list[int]) -> str:
        return self.const(hint, np.asarray(values, dtype=np.int64))

    def op(
        self, op: str, inputs: list[str], hint: str, rank: int, outputs: int = 1, node_name: str | None = None, **attrs: Any
    ) -> list[str]:
        names = [self.fresh(f"{hint}" if outputs == 1 else f"{hint}_{k}") for k in range(outputs)]
        name = self.fresh(node_name or f"{hint}_{op}")
        self.nodes.append(make_node(op, inputs, names, name=name, **attrs))
        for name in names:
            self.rank[name] = rank
        return names

    def one(self, op: str, inputs: list[str], hint: str, rank: int, **attrs: Any) -> str:
        return self.op(op, inputs, hint, rank, **attrs)[0]


@dataclass
class Emitted:
    """One layer as it went into the graph: its check function and its large arrays, to be written now."""

    layer: Layer
    function: ReferenceFn | None
    arrays: dict[str, np.ndarray]


class OnnxPlan:
    """Build the graph one layer at a time, handing out each layer's large arrays as soon as they are made.

    With ``wiring`` (a whole model) layers are emitted in the wiring's order; a layer that arrives before the
    layers it reads from waits for them. Without it every layer is its own subgraph. Arrays of at most
    ``inline_bytes`` (axes, shapes, scalars) stay in the graph; larger ones are returned by :meth:`add` for the
    caller to write and drop, so the plan never holds the weights.
    """

    def __init__(self, wiring: Wiring | None, producer_version: str, inline_bytes: int = 1024) -> None:
        self.graph = _Graph()
        self.inputs: list[onnx_proto.ValueInfoProto] = []
        self.outputs: list[onnx_proto.ValueInfoProto] = []
        self.wiring = wiring
        self.producer_version = producer_version
        self.inline_bytes = inline_bytes
        self.large: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}  # handed out: name -> (dtype, shape)
        self._values: dict[str, str | Pair] = {}  # wiring name -> graph value
        self._tensors: dict[str, list[tuple[str, str]]] = {}  # recurrent layer -> its output tensors, Keras order
        self._waiting: dict[str, Layer] = {}
        self._next = 0  # position in the wiring's order
        if wiring is not None:
            self._model_inputs(wiring)

    def add(self, layer: Layer) -> list[Emitted]:
        """Put ``layer`` into the graph (with any layer that was waiting for it); what went in, in order."""
        if self.wiring is None:
            return [self._emit_alone(layer)]
        if layer.name not in self.wiring.inbound:
            return [Emitted(layer, None, {})]  # not part of the model's function: nothing to write
        self._waiting[layer.name] = layer
        emitted = []
        order = list(self.wiring.inbound)
        while self._next < len(order) and order[self._next] in self._waiting:
            emitted.append(self._emit_wired(self._waiting.pop(order[self._next])))
            self._next += 1
        return emitted

    def finish(self) -> onnx_proto.ModelProto:
        """The model without the large arrays handed out (the caller wrote those)."""
        if self.wiring is not None:
            order = list(self.wiring.inbound)
            if self._next < len(order):
                raise UnsupportedFeatureError("layer in the model's wiring has no canonical form", layer=order[self._next])
            self._model_outputs(self.wiring)
        if not self.outputs:
            raise UnsupportedFeatureError("nothing to write: no recurrent, Dense or Embedding layer")
        return self._model(self.graph.initializers)

    def check(self, rest: onnx_proto.ModelProto) -> None:
        """The graph's structure, as the ONNX checker sees it: every value a node reads is a graph input, an
        initializer (``rest``'s or one handed out) or the output of an earlier node; none is computed twice;
        every graph output is computed. The operators and their attributes are this module's own, run by
        onnxruntime in the tests (``tests/conftest.py`` runs ``onnx.checker`` on every model the tests write)."""
        graph = rest.graph
        known = {*self.large, *(t.name for t in graph.initializer), *(i.name for i in graph.input)}
        for node in graph.node:
            missing = [name for name in node.input if name and name not in known]
            twice = [name for name in node.output if name in known]
            if missing or twice:
                raise VerificationError(
                    f"the planned graph is not valid: node {node.name!r} "
                    + (f"reads {missing}, which nothing defines" if missing else f"computes {twice} again"),
                    hint="this is a bug in lstmconv; please report it with the file",
                )
            known.update(node.output)
        if unknown := [output.name for output in graph.output if output.name not in known]:
            raise VerificationError(f"the planned graph is not valid: nothing computes its outputs {unknown}", hint="this is a bug in lstmconv")

    def _model(self, initializers: dict[str, np.ndarray]) -> onnx_proto.ModelProto:
        proto = onnx_proto.messages()
        tensors = [from_array(array, name) for name, array in initializers.items()]
        graph = proto.GraphProto(name="lstmconv", node=self.graph.nodes, input=self.inputs, output=self.outputs, initializer=tensors)
        return proto.ModelProto(
            ir_version=8,
            producer_name="lstmconv",
            producer_version=self.producer_version,
            graph=graph,
            opset_import=[proto.OperatorSetIdProto(domain="", version=OPSET)],
        )

    def _hand_out(self, layer: Layer, function: ReferenceFn | None) -> Emitted:
        arrays = {}
        for name in [n for n, a in self.graph.initializers.items() if a.nbytes > self.inline_bytes]:
            arrays[name] = array = self.graph.initializers.pop(name)
            self.large[name] = (array.dtype, array.shape)
        return Emitted(layer, function, arrays)

    def _emit_alone(self, layer: Layer) -> Emitted:
        functions: dict[str, ReferenceFn] = {}
        _per_layer(self.graph, layer, self.inputs, self.outputs, functions)
        return self._hand_out(layer, functions.get(layer.name))

    def _emit_wired(self, layer: Layer) -> Emitted:
        assert self.wiring is not None
        try:
            incoming = [_first(self._values[s]) for s in self.wiring.inbound[layer.name]]
        except KeyError as missing:
            raise UnsupportedFeatureError(f"input {missing} of this layer is not available", layer=layer.name) from None
        if isinstance(layer, EmbeddingLayer):  # ids (batch, time): the time axis is free
            for value_info in self.inputs:
                if value_info.name == incoming[0] and len(value_info.type.tensor_type.shape.dim) == 2:
                    time = "time" if value_info.name == "input" else f"{value_info.name}_time"  # as _model_inputs names it
                    value_info.type.tensor_type.shape.dim[1].dim_param = time
        functions: dict[str, ReferenceFn] = {}
        if not isinstance(layer, RecurrentLayer):
            self._values[layer.name] = _emit(self.graph, layer, incoming, functions, full_sequence=False)
            return self._hand_out(layer, functions.get(layer.name))
        refs = self.wiring.initial_state.get(layer.name, ())
        runtime = self._given_states(layer, refs) if refs else None
        finals: dict[str, str] = {}
        value = _emit(self.graph, layer, incoming, functions, full_sequence=False, runtime=runtime, finals=finals)
        self._values[layer.name] = value
        outputs = list(zip(value, ("_forward", "_backward"))) if isinstance(value, Pair) else [(value, "")]
        read = self.wiring.tensors_read(layer.name)
        if any(index >= len(outputs) for index in read):  # states another layer or the model reads (return_state)
            kinds = ("h", "c") if layer.cell == "lstm" else ("h",)
            sides = ("_forward", "_backward") if layer.bidirectional else ("",)
            states = zip(_final_states(self.graph, layer, finals), [f"_{kind}{side}" for side in sides for kind in kinds])
            outputs += list(states)
        self._tensors[layer.name] = outputs
        return self._hand_out(layer, functions.get(layer.name))

    def _tensor(self, layer: str, index: int) -> tuple[str, str]:
        """Output tensor ``index`` of ``layer`` as Keras numbers them (outputs, then a recurrent layer's states),
        with the suffix that names it among the model's outputs."""
        tensors = self._tensors.get(layer) or ([(_first(self._values[layer]), "")] if layer in self._values else [])
        if index >= len(tensors):
            raise UnsupportedFeatureError(f"output tensor {index} of layer {layer!r} is not available", layer=layer)
        return tensors[index]

    def _given_states(self, layer: RecurrentLayer, refs: tuple[tuple[str, int], ...]) -> RuntimeInputs:
        """The initial states a layer is given (Keras order: h, c per direction) as [directions, B, H] values."""
        per = 2 if layer.cell == "lstm" else 1
        directions = 2 if layer.bidirectional else 1
        if len(refs) != per * directions or layer.num_levels != 1:
            raise UnsupportedFeatureError(
                f"initial_state holds {len(refs)} tensors", layer=layer.name, expected=per * directions, actual=len(refs)
            )
        values = [self._tensor(source, index)[0] for source, index in refs]
        joined = []
        for kind, parts in (("h", values[0::per]), ("c", values[1::per] if per == 2 else [])):
            if not parts:
                joined.append(None)
                continue
            axis = self.graph.ints(f"{layer.name}_{kind}_axis", [0])
            stacked = [self.graph.one("Unsqueeze", [part, axis], f"{layer.name}_given_{kind}", 3) for part in parts]
            joined.append(stacked[0] if len(stacked) == 1 else self.graph.one("Concat", stacked, f"{layer.name}_given_{kind}s", 3, axis=0))
        return RuntimeInputs(joined[0], joined[1], None)

    def _model_inputs(self, wiring: Wiring) -> None:
        """The model's inputs, batch-first, batch and time dynamic. The time axis is the first after the batch
        of a sequence (batch, time, features); nothing lstmconv writes depends on its length (the fused ops,
        MatMul on the last axis, Concat), so a recorded length is not kept. A (batch, n) input is a sequence
        of ids when an Embedding reads it (:meth:`_emit_wired` frees its length then)."""
        for model_input in wiring.inputs:
            name = "input" if len(wiring.inputs) == 1 else f"input_{model_input.name}"
            dims: list[int | str] = ["batch"] + [d if d is not None else f"{name}_d{k + 1}" for k, d in enumerate(model_input.shape)]
            if len(dims) >= 3:
                dims[1] = "time" if len(wiring.inputs) == 1 else f"{name}_time"
            dtype = model_input.dtype if model_input.dtype in ("int32", "int64") else "float32"
            self.inputs.append(_value_info(name, dtype, dims))
            self.graph.rank[name] = len(dims)
            self.graph._used.add(name)
            self._values[model_input.name] = name

    def _model_outputs(self, wiring: Wiring) -> None:
        """One graph output per model output tensor: ``output`` when the model has one output layer (else the
        layer's name), ``_forward``/``_backward`` for a merge_mode=None layer's halves, ``_h``, ``_c``
        (``_h_forward``...) for the states a return_state layer outputs."""
        for layer, index in wiring.model_outputs():
            base = "output" if len(wiring.outputs) == 1 else layer
            value, suffix = self._tensor(layer, index)
            name = base + suffix
            if name in self.graph._used:  # an inner value has the output's name: give the inner one another
                inner = self.graph.fresh(f"{name}_inner")
                self.graph.rename(name, inner)
                value = inner if value == name else value
            self.graph.nodes.append(make_node("Identity", [value], [name], name=self.graph.fresh(f"{name}_Identity")))
            rank = self.graph.rank[value]
            self.outputs.append(_value_info(name, "float32", ["batch"] + [f"{name}_d{k}" for k in range(1, rank)]))


class Pair(tuple[str, str]):
    """The two outputs of a Bidirectional layer with ``merge_mode=None`` (forward, backward), where other layers
    have one. A layer reading it reads the forward one (Keras' tensor 0)."""

    def __new__(cls, forward: str, backward: str) -> Pair:
        return super().__new__(cls, (forward, backward))


def _first(value: str | Pair) -> str:
    return value[0] if isinstance(value, Pair) else value


def _value_info(name: str, dtype: str, dims: list[int | str]) -> onnx_proto.ValueInfoProto:
    return make_value_info(name, element_type(dtype), dims)


def _per_layer(
    graph: _Graph,
    layer: Layer,
    inputs: list[onnx_proto.ValueInfoProto],
    outputs: list[onnx_proto.ValueInfoProto],
    functions: dict[str, ReferenceFn],
) -> None:
    x = f"{layer.name}.x"
    # Each layer's batch and time are its own: onnxruntime ties equal dim_param names to equal sizes.
    batch, time = f"{layer.name}.batch", f"{layer.name}.time"
    if isinstance(layer, RecurrentLayer):
        inputs.append(_value_info(x, "float32", [batch, time, layer.input_size]))
    elif isinstance(layer, DenseLayer):
        dims: list[int | str] = [batch, time, layer.input_size] if layer.time_distributed else [batch, layer.input_size]
        inputs.append(_value_info(x, "float32", dims))
    elif isinstance(layer, EmbeddingLayer):
        inputs.append(_value_info(x, "int64", [batch, time]))
    else:
        return  # weightless layers mean nothing on their own
    graph._used.add(x)
    graph.rank[x] = len(inputs[-1].type.tensor_type.shape.dim)
    runtime = _runtime_inputs(graph, layer, x, inputs) if isinstance(layer, RecurrentLayer) and layer.runtime_inputs else None
    y = _emit(graph, layer, [x], functions, full_sequence=True, runtime=runtime)
    named = zip(y, (".y_forward", ".y_backward")) if isinstance(y, Pair) else [(y, ".y")]
    for value, suffix in named:
        output = f"{layer.name}{suffix}"
        graph.nodes.append(make_node("Identity", [value], [output], name=graph.fresh(f"{output}_Identity")))
        rank = graph.rank[value]
        outputs.append(_value_info(output, "float32", [batch] + [f"{output}_d{k}" for k in range(1, rank)]))
    if isinstance(layer, RecurrentLayer):
        for state in ("h_n", "c_n") if layer.cell == "lstm" else ("h_n",):
            dims = [f"{layer.name}.states", batch, layer.hidden_size]
            outputs.append(_value_info(f"{layer.name}.{state}", "float32", dims))


@dataclass(frozen=True)
class RuntimeInputs:
    """Graph values a recurrent layer starts from: initial states ``[levels*directions, B, H]`` (torch's layout)
    and the length of each sequence ``[B]`` (int32); ``None`` where the node takes none."""

    h0: str | None
    c0: str | None
    sequence_lens: str | None


def _runtime_inputs(graph: _Graph, layer: RecurrentLayer, x: str, inputs: list[onnx_proto.ValueInfoProto]) -> RuntimeInputs:
    """Optional inputs of a per-layer model, for what the source took at run time (``layer.runtime_inputs``):
    ``<layer>.h0`` and ``<layer>.c0`` (zeros when not given) and ``<layer>.sequence_lens`` (every sequence full
    length when not given, or given as 0). Each is a graph input with a small default initializer of the same
    name (ONNX: an input with an initializer may be left out), broadcast here to the batch it is run with."""
    name, hidden = layer.name, layer.hidden_size
    count = layer.num_levels * (2 if layer.bidirectional else 1)
    shape = graph.one("Shape", [x], f"{name}_x_shape", 1)
    one = graph.ints(f"{name}_one", [1])
    batch = graph.one("Slice", [shape, graph.ints(f"{name}_zero", [0]), one], f"{name}_batch", 1)
    steps = graph.one("Slice", [shape, one, graph.ints(f"{name}_two", [2])], f"{name}_steps", 1)
    state_shape = graph.one(
        "Concat", [graph.ints(f"{name}_states", [count]), batch, graph.ints(f"{name}_hidden", [hidden])], f"{name}_state_shape", 1, axis=0
    )
    states: dict[str, str] = {}
    for state, slot in (("h0", "initial_h"), ("c0", "initial_c")):
        if slot not in layer.runtime_inputs:
            continue
        given = graph.const(f"{name}.{state}", np.zeros((1, 1, 1), np.float32))
        # dims all symbolic: the default is (1, 1, 1), broadcast below; a given state is (states, batch, hidden)
        inputs.append(_value_info(given, "float32", [f"{name}.states", f"{name}.batch", f"{name}.hidden"]))
        graph.rank[given] = 3
        states[state] = graph.one("Expand", [given, state_shape], f"{name}_{state}_full", 3)
    if "sequence_lens" not in layer.runtime_inputs:
        return RuntimeInputs(states.get("h0"), states.get("c0"), None)
    lengths = graph.const(f"{name}.sequence_lens", np.zeros(1, np.int32))
    inputs.append(_value_info(lengths, "int32", [f"{name}.batch"]))
    graph.rank[lengths] = 1
    full = graph.one("Cast", [steps], f"{name}_full_length", 1, to=onnx_proto.TensorProto.INT32)
    stated = graph.one("Greater", [lengths, graph.const(f"{name}_no_length", np.zeros(1, np.int32))], f"{name}_stated", 1)
    chosen = graph.one("Where", [stated, lengths, full], f"{name}_lengths", 1)
    per_sequence = graph.one("Expand", [chosen, batch], f"{name}_sequence_lens", 1)
    return RuntimeInputs(states.get("h0"), states.get("c0"), per_sequence)


def _emit(
    graph: _Graph,
    layer: Layer,
    incoming: list[str],
    functions: dict[str, ReferenceFn],
    *,
    full_sequence: bool,
    runtime: RuntimeInputs | None = None,
    finals: dict[str, str] | None = None,
) -> str | Pair:
    if isinstance(layer, RecurrentLayer):
        return _emit_recurrent(graph, layer, incoming[0], functions, full_sequence=full_sequence, runtime=runtime, finals=finals)
    if isinstance(layer, DenseLayer):
        kernel = np.ascontiguousarray(layer.weight.T)  # (in, units): MatMul broadcasts over batch and time
        y = graph.one("MatMul", [incoming[0], graph.const(f"{layer.name}.kernel", kernel)], f"{layer.name}_matmul", graph.rank[incoming[0]])
        if layer.bias is not None:
            y = graph.one("Add", [y, graph.const(f"{layer.name}.bias", layer.bias)], f"{layer.name}_bias", graph.rank[y])
        functions[layer.name] = onnx_dense_function(layer.activation, kernel, layer.bias)
        return _emit_activation(graph, layer.activation, y, layer.name)
    if isinstance(layer, EmbeddingLayer):
        table = graph.const(f"{layer.name}.embeddings", layer.weight)
        # Keras casts ids to integers whatever the input dtype (Keras 3 Inputs default to float32).
        ids = graph.one("Cast", [incoming[0]], f"{layer.name}_ids", graph.rank[incoming[0]], to=onnx_proto.TensorProto.INT64)
        return graph.one("Gather", [table, ids], layer.name, graph.rank[incoming[0]] + 1, axis=0)
    if isinstance(layer, ActivationLayer):
        return _emit_activation(graph, layer.activation, incoming[0], layer.name)
    if isinstance(layer, DropoutLayer):
        return graph.one("Identity", [incoming[0]], layer.name, graph.rank[incoming[0]])
    if isinstance(layer, ConcatenateLayer):
        return graph.one("Concat", incoming, layer.name, graph.rank[incoming[0]], axis=layer.axis)
    raise UnsupportedFeatureError(f"no ONNX mapping for {type(layer).__name__}", layer=layer.name)


def _emit_recurrent(
    graph: _Graph,
    layer: RecurrentLayer,
    x: str,
    functions: dict[str, ReferenceFn],
    *,
    full_sequence: bool,
    runtime: RuntimeInputs | None = None,
    finals: dict[str, str] | None = None,
) -> str | Pair:
    """The layer's fused node(s); ``runtime``: the states and lengths it starts from; ``finals`` receives the
    last level's final states (``Y_h``, ``Y_c``: [directions, B, H])."""
    nodes = nodes_from_canonical(layer)
    functions[layer.name] = onnx_layer_function(layer.meta(), nodes)  # the description: no source arrays kept
    name = layer.name
    sequence = graph.one("Transpose", [x], f"{name}_time_major", 3, perm=[1, 0, 2])
    Y = Y_h = ""
    states: dict[str, list[str]] = {"h_n": [], "c_n": []}
    directions = 2 if layer.bidirectional else 1
    for k, node in enumerate(nodes):
        starts: list[str] = []
        if runtime is not None:  # this level's part of the [levels*directions, B, H] states
            bounds = [graph.ints(f"{node.name}_first_state", [k * directions]), graph.ints(f"{node.name}_end_state", [(k + 1) * directions])]
            starts = [runtime.sequence_lens or ""] + [
                graph.one("Slice", [full, *bounds], f"{node.name}_{state}", 3) if full is not None else ""
                for state, full in (("initial_h", runtime.h0), ("initial_c", runtime.c0))
            ]
        Y, Y_h, *rest = _emit_node(graph, node, sequence, starts)
        states["h_n"].append(Y_h)
        if rest:
            states["c_n"].append(rest[0])
        if k + 1 < len(nodes):  # [T, D, B, H] -> [T, B, D*H] feeds the next level
            moved = graph.one("Transpose", [Y], f"{node.name}_directions_last", 4, perm=[0, 2, 1, 3])
            sequence = graph.one("Reshape", [moved, graph.ints(f"{node.name}_shape", [0, 0, -1])], f"{node.name}_joined", 3)
    if finals is not None:
        finals["h"] = states["h_n"][-1]
        if states["c_n"]:
            finals["c"] = states["c_n"][-1]
    if full_sequence:  # per-layer outputs carry the final states too, in torch's [levels*directions, B, H]
        for state, parts in states.items():
            if parts:
                joined = parts[0] if len(parts) == 1 else graph.one("Concat", parts, f"{name}_{state}_all", 3, axis=0)
                graph.nodes.append(make_node("Identity", [joined], [f"{name}.{state}"], name=graph.fresh(f"{name}.{state}_Identity")))
    if full_sequence or layer.return_sequences:
        return _sequence_output(graph, layer, Y)
    return _last_step_output(graph, layer, Y_h)


def _final_states(graph: _Graph, layer: RecurrentLayer, finals: dict[str, str]) -> list[str]:
    """A layer's final states as Keras returns them with return_state: [B, H] each, h then c, per direction."""
    per_kind: dict[str, list[str]] = {}
    for kind, value in finals.items():
        if layer.bidirectional:
            per_kind[kind] = list(_directions(graph, layer, value, axis=0))
        else:
            per_kind[kind] = [graph.one("Squeeze", [value, graph.ints(f"{layer.name}_{kind}_axis0", [0])], f"{layer.name}_final_{kind}", 2)]
    directions = 2 if layer.bidirectional else 1
    return [per_kind[kind][d] for d in range(directions) for kind in ("h", "c") if kind in per_kind]


def _emit_node(graph: _Graph, node: OnnxRecurrentNode, sequence: str, starts: list[str]) -> list[str]:
    """The fused node; ``starts`` are its sequence_lens, initial_h and initial_c inputs (or none)."""
    sequence_lens, initial_h, initial_c = (*starts, "", "", "")[:3]
    names = [
        sequence,
        graph.const(f"{node.name}.W", node.W),
        graph.const(f"{node.name}.R", node.R),
        graph.const(f"{node.name}.B", node.B) if node.B is not None else "",
        sequence_lens,
        initial_h,
        initial_c,
        graph.const(f"{node.name}.P", node.P) if node.P is not None else "",
    ]
    while names[-1] == "":
        names.pop()
    attrs: dict[str, Any] = {
        "hidden_size": node.hidden_size,
        "direction": node.direction,
        **activation_attributes(node.activations),
    }
    if node.op == "GRU":
        attrs["linear_before_reset"] = int(node.linear_before_reset)
    if node.clip is not None:
        attrs["clip"] = float(node.clip)
    if node.op == "LSTM" and node.input_forget:
        attrs["input_forget"] = 1
    count = 3 if node.op == "LSTM" else 2
    # The node carries the layer's name, so reading the file back gives the same layer names.
    outputs = graph.op(node.op, names, f"{node.name}_out", 4, outputs=count, node_name=node.name, **attrs)
    for extra in outputs[1:]:
        graph.rank[extra] = 3
    return outputs


def _sequence_output(graph: _Graph, layer: RecurrentLayer, Y: str) -> str | Pair:
    name = layer.name
    if not layer.bidirectional:
        squeezed = graph.one("Squeeze", [Y, graph.ints(f"{name}_axis1", [1])], f"{name}_one_direction", 3)
        y = graph.one("Transpose", [squeezed], f"{name}_batch_first", 3, perm=[1, 0, 2])
        if layer.go_backwards and not layer.time_aligned_output:  # Keras: outputs in processing order
            y = graph.one(
                "Slice",
                [y, graph.ints(f"{name}_start", [-1]), graph.ints(f"{name}_end", [_INT_MIN]), graph.ints(f"{name}_axis", [1]), graph.ints(f"{name}_step", [-1])],
                f"{name}_processing_order",
                3,
            )
        return y
    if layer.merge_mode == "concat":
        moved = graph.one("Transpose", [Y], f"{name}_batch_time_first", 4, perm=[2, 0, 1, 3])
        return graph.one("Reshape", [moved, graph.ints(f"{name}_shape", [0, 0, -1])], f"{name}_concat", 3)
    if layer.merge_mode == "none":  # two outputs, each [B, T, H] (the backward one aligned with input time)
        halves = _directions(graph, layer, Y, axis=1)
        return Pair(*(graph.one("Transpose", [half], f"{half}_batch_first", 3, perm=[1, 0, 2]) for half in halves))
    merged = _merge(graph, layer, Y, axis=1)  # [T, B, H]
    return graph.one("Transpose", [merged], f"{name}_batch_first", 3, perm=[1, 0, 2])


def _last_step_output(graph: _Graph, layer: RecurrentLayer, Y_h: str) -> str | Pair:
    """Keras return_sequences=False: the last processed step of each direction, i.e. the final states."""
    name = layer.name
    if not layer.bidirectional:
        return graph.one("Squeeze", [Y_h, graph.ints(f"{name}_axis0", [0])], f"{name}_last", 2)
    if layer.merge_mode == "concat":
        moved = graph.one("Transpose", [Y_h], f"{name}_batch_first", 3, perm=[1, 0, 2])
        return graph.one("Reshape", [moved, graph.ints(f"{name}_shape", [0, -1])], f"{name}_concat", 2)
    if layer.merge_mode == "none":
        return Pair(*_directions(graph, layer, Y_h, axis=0))  # each [B, H]
    return _merge(graph, layer, Y_h, axis=0)  # [B, H]


def _directions(graph: _Graph, layer: RecurrentLayer, value: str, *, axis: int) -> tuple[str, str]:
    """The forward and backward halves held along ``axis`` of ``value``, that axis dropped."""
    name = layer.name
    rank = graph.rank[value]
    halves = graph.op("Split", [value, graph.ints(f"{name}_halves", [1, 1])], f"{name}_direction", rank, outputs=2, axis=axis)
    axes = graph.ints(f"{name}_direction_axis", [axis])
    forward, backward = (graph.one("Squeeze", [half, axes], f"{name}_{side}", rank - 1) for half, side in zip(halves, ("forward", "backward")))
    return forward, backward


def _merge(graph: _Graph, layer: RecurrentLayer, value: str, *, axis: int) -> str:
    """Merge the two directions held along ``axis`` of ``value`` (Keras merge_mode sum/mul/ave); drops that axis."""
    name = layer.name
    rank = graph.rank[value]
    forward, backward = graph.op("Split", [value, graph.ints(f"{name}_halves", [1, 1])], f"{name}_direction", rank, outputs=2, axis=axis)
    merged = _combine(graph, layer, forward, backward, rank)
    return graph.one("Squeeze", [merged, graph.ints(f"{name}_direction_axis", [axis])], f"{name}_merged", rank - 1)


def _combine(graph: _Graph, layer: RecurrentLayer, forward: str, backward: str, rank: int) -> str:
    name = layer.name
    if layer.merge_mode == "sum":
        return graph.one("Add", [forward, backward], f"{name}_sum", rank)
    if layer.merge_mode == "mul":
        return graph.one("Mul", [forward, backward], f"{name}_mul", rank)
    if layer.merge_mode == "ave":
        total = graph.one("Add", [forward, backward], f"{name}_total", rank)
        return graph.one("Mul", [total, graph.scalar(f"{name}_half", 0.5)], f"{name}_ave", rank)
    raise UnsupportedFeatureError(f"merge_mode={layer.merge_mode} cannot be one ONNX output", layer=name)


def _emit_activation(graph: _Graph, activation: Activation, x: str, hint: str) -> str:
    """Standalone activation (Dense, Activation layers) as ONNX ops, parameters explicit."""
    rank = graph.rank[x]
    name, alpha, beta = activation.name, activation.alpha, activation.beta
    if name == "linear":
        return x
    if name == "hard_sigmoid":
        return graph.one(STANDALONE_OPS[name], [x], f"{hint}_hard_sigmoid", rank, alpha=float(alpha), beta=float(beta))
    if name in ("elu", "leaky_relu", "thresholded_relu"):
        return graph.one(STANDALONE_OPS[name], [x], f"{hint}_{name}", rank, alpha=float(alpha))
    if name in ("softmax", "log_softmax"):
        return graph.one(STANDALONE_OPS[name], [x], f"{hint}_{name}", rank, axis=-1)
    if name in STANDALONE_OPS:
        return graph.one(STANDALONE_OPS[name], [x], f"{hint}_{name}", rank)
    if name == "selu":
        return graph.one("Selu", [x], f"{hint}_selu", rank, alpha=1.6732632423543772, gamma=1.0507009873554805)
    if name in ("relu6", "hard_tanh"):
        low, high = (0.0, 6.0) if name == "relu6" else (-1.0, 1.0)
        return graph.one("Clip", [x, graph.scalar(f"{hint}_min", low), graph.scalar(f"{hint}_max", high)], f"{hint}_{name}", rank)
    if name == "silu":
        return graph.one("Mul", [x, graph.one("Sigmoid", [x], f"{hint}_gate", rank)], f"{hint}_silu", rank)
    if name == "hard_silu":
        gate = graph.one("HardSigmoid", [x], f"{hint}_gate", rank, alpha=float(alpha), beta=float(beta))
        return graph.one("Mul", [x, gate], f"{hint}_hard_silu", rank)
    if name == "mish":
        soft = graph.one("Softplus", [x], f"{hint}_softplus", rank)
        return graph.one("Mul", [x, graph.one("Tanh", [soft], f"{hint}_tanh", rank)], f"{hint}_mish", rank)
    if name == "gelu":
        scaled = graph.one("Mul", [x, graph.scalar(f"{hint}_inv_sqrt2", 1 / math.sqrt(2.0))], f"{hint}_scaled", rank)
        erf = graph.one("Erf", [scaled], f"{hint}_erf", rank)
        one_plus = graph.one("Add", [erf, graph.scalar(f"{hint}_one", 1.0)], f"{hint}_one_plus", rank)
        half_x = graph.one("Mul", [x, graph.scalar(f"{hint}_half", 0.5)], f"{hint}_half_x", rank)
        return graph.one("Mul", [half_x, one_plus], f"{hint}_gelu", rank)
    if name == "affine":
        scaled = graph.one("Mul", [x, graph.scalar(f"{hint}_alpha", float(alpha))], f"{hint}_scaled", rank)
        return graph.one("Add", [scaled, graph.scalar(f"{hint}_beta", float(beta))], f"{hint}_affine", rank)
    if name == "scaled_tanh":
        inner = graph.one("Mul", [x, graph.scalar(f"{hint}_beta", float(beta))], f"{hint}_inner", rank)
        return graph.one("Mul", [graph.one("Tanh", [inner], f"{hint}_tanh", rank), graph.scalar(f"{hint}_alpha", float(alpha))], f"{hint}_scaled_tanh", rank)
    if name == "log_sigmoid":
        negated = graph.one("Neg", [x], f"{hint}_neg", rank)
        return graph.one("Neg", [graph.one("Softplus", [negated], f"{hint}_softplus", rank)], f"{hint}_log_sigmoid", rank)
    raise UnsupportedFeatureError(f"activation {activation} has no ONNX mapping in lstmconv", layer=hint)
