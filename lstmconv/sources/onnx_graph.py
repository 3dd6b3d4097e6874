"""Read the recurrent nodes of an ONNX model: weights folded to constants, attributes parsed.

Weights may be initializers, ``Constant`` nodes, or small constant subgraphs (``Slice``/``Concat``/
``Unsqueeze``/``Transpose``/``Reshape``/``Split``/``Gather``/``Cast``..., as PyTorch's exporters write them),
and nodes may sit inside ``If``/``Loop``/``Scan`` bodies, which see the enclosing graphs' constants. A weight
that truly depends on a runtime input is refused with its name. External-data tensors are read only from
inside the model's folder.

The file is parsed without its large tensors (:mod:`lstmconv.io.onnx_skeleton`) and a node's weights
are read from the file when its layer is built (:attr:`OnnxNodeEntry.node`), so a model is never held whole:
converting one layer at a time holds one layer's weights.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv._fast import buffers
from lstmconv.errors import ConfigError, InputFormatError, LstmconvError, UnsupportedFeatureError
from lstmconv.gates import gate_count
from lstmconv.io import onnx_proto
from lstmconv.io.onnx_proto import ELEMENT_TYPES, attribute_value, numpy_dtype, to_array, uses_external_data
from lstmconv.io.onnx_skeleton import read_skeleton
from lstmconv.io.reading import read_into
from lstmconv.layouts.onnx import (
    ACTIVATION_COUNT,
    DEFAULT_ACTIVATIONS,
    ONNX_ACTIVATIONS,
    ONNX_OPS,
    STANDALONE_OPS,
    OnnxRecurrentNode,
    is_known_activation,
    parse_activations,
)

__all__ = ["OnnxNodeEntry", "OnnxDenseEntry", "OnnxEmbeddingEntry", "OnnxFile", "read_onnx", "key_safe"]

RECURRENT_OPS = tuple(ONNX_OPS.values())


@dataclass(frozen=True)
class OnnxNodeEntry:
    """A recurrent node ready for conversion, with what the report should say about it."""

    name: str  # key-safe layer name
    load: Callable[[], OnnxRecurrentNode] = field(repr=False)
    notes: tuple[str, ...] = ()
    runtime_inputs: tuple[str, ...] = ()  # initial_h, initial_c, sequence_lens given by the model's inputs
    processing_order: bool = False  # a reverse node whose output the graph reverses again: Keras go_backwards
    merge_mode: str | None = None  # a bidirectional node whose directions the graph merges (sum, mul, ave)

    @property
    def node(self) -> OnnxRecurrentNode:
        """The node with its weights, read from the file now (not kept: the caller holds them while it needs them)."""
        return self.load()


@dataclass(frozen=True)
class OnnxDenseEntry:
    """A Dense layer as a graph holds it: ``MatMul`` of the input by a constant ``(in, units)`` kernel (or
    ``Gemm`` with ``transB``), optionally ``Add`` of a constant ``(units,)`` bias, optionally one activation op
    (:data:`lstmconv.layouts.onnx.STANDALONE_OPS`) that alone reads the result. An activation made of several
    ops is not recognised: the layer is then its affine part, named as such (linear)."""

    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray | None]] = field(repr=False)  # kernel (in, units), bias
    activation: tuple[str, float | None, float | None]  # canonical name, alpha, beta
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OnnxEmbeddingEntry:
    """An Embedding as a graph holds it: ``Gather`` (axis 0) of a constant ``(vocabulary, size)`` float table by
    runtime ids."""

    name: str
    load: Callable[[], np.ndarray] = field(repr=False)  # the table
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OnnxFile:
    """The recurrent nodes and Dense patterns of a model, in graph order (subgraphs after their parent node)."""

    path: str
    opset: int
    producer: str
    entries: tuple[OnnxNodeEntry | OnnxDenseEntry | OnnxEmbeddingEntry, ...] = field(default_factory=tuple)

    @property
    def nodes(self) -> tuple[OnnxNodeEntry, ...]:
        """The recurrent nodes alone."""
        return tuple(entry for entry in self.entries if isinstance(entry, OnnxNodeEntry))


def key_safe(name: str) -> str:
    """'/model/decoder/rnn/LSTM' -> 'model_decoder_rnn_LSTM' (usable as a torch module name)."""
    safe = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_")
    return safe if safe and not safe[0].isdigit() else f"n_{safe}"


def read_onnx(path: str | Path) -> OnnxFile:
    """Parse ``path`` and return its recurrent nodes with constant weights."""
    path = Path(path)
    model = read_skeleton(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset == 0:
        raise InputFormatError("the model imports no ai.onnx opset", file=path)
    reader = _Reader(path, opset, _FOLD_MARGIN + 4 * _declared_bytes(model.graph))
    reader.walk(model.graph, {})
    if not any(not isinstance(found, (_DensePattern, _TablePattern)) for _, found in reader.found):
        if reader.loop_reasons:
            raise UnsupportedFeatureError(
                "no LSTM, GRU or RNN node, and no Loop lstmconv reads as one: " + "; ".join(reader.loop_reasons[:3]), file=path,
                hint="lstmconv reads the Loops tf2onnx writes for a Keras SimpleRNN or GRU; export with the fused ONNX ops instead",
            )
        raise InputFormatError("no LSTM, GRU or RNN node in this model", file=path)
    names: dict[str, int] = {}
    entries: list[OnnxNodeEntry | OnnxDenseEntry | OnnxEmbeddingEntry] = []
    for node, found in reader.found:
        if isinstance(found, (_DensePattern, _TablePattern)):
            # lstmconv names them '<layer>_matmul' and '<layer>_Gather', torch.onnx '/<module>/MatMul', '/Gemm', '/Gather'
            kind = "dense" if isinstance(found, _DensePattern) else "embedding"
            base = re.sub(r"(_matmul)?_(MatMul|Gemm|Gather)$|_matmul$", "", key_safe(node.name)) if node.name else kind
            base = base or kind
        else:
            base = key_safe(node.name) if node.name else node.op_type.lower()
        count = names.get(base, 0)
        names[base] = count + 1
        name = base if count == 0 else f"{base}_{count}"
        if isinstance(found, _DensePattern):
            entries.append(OnnxDenseEntry(name=name, load=found.load, activation=found.activation))
            continue
        if isinstance(found, _TablePattern):
            entries.append(OnnxEmbeddingEntry(name=name, load=found.load))
            continue
        if isinstance(found, _LoopPattern):
            entries.append(OnnxNodeEntry(name=name, load=functools.partial(_renamed, found.load, name), notes=(found.note,)))
            continue
        load_weights, notes, runtime, order, merge = found
        load = functools.partial(_load_node, path, node, load_weights, name, opset)
        entries.append(OnnxNodeEntry(name=name, load=load, notes=tuple(notes), runtime_inputs=tuple(runtime),
                                     processing_order=order, merge_mode=merge))
    return OnnxFile(str(path), opset, f"{model.producer_name} {model.producer_version}".strip(), tuple(entries))


_FOLD_MARGIN = 16 << 20


@dataclass(frozen=True)
class _LoopPattern:
    """A Loop read as a recurrent node (built again, and checked again, when its layer is)."""

    load: Callable[[], OnnxRecurrentNode]
    note: str


def _renamed(load: Callable[[], OnnxRecurrentNode], name: str) -> OnnxRecurrentNode:
    return dataclasses.replace(load(), name=name)


def _declared_bytes(graph: onnx_proto.GraphProto) -> int:
    """The bytes of every initializer and Constant tensor of ``graph`` and its subgraphs, from their shapes."""
    total = 0

    def tensor_bytes(tensor: onnx_proto.TensorProto) -> int:
        itemsize = _PLAIN_TYPES[tensor.data_type].itemsize if tensor.data_type in _PLAIN_TYPES else 8
        return math.prod(int(d) for d in tensor.dims) * itemsize

    for initializer in graph.initializer:
        total += tensor_bytes(initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx_proto.AttributeProto.TENSOR:
                total += tensor_bytes(attribute.t)
            elif attribute.type == onnx_proto.AttributeProto.GRAPH:
                total += _declared_bytes(attribute.g)
            elif attribute.type == onnx_proto.AttributeProto.GRAPHS:
                total += sum(_declared_bytes(sub) for sub in attribute.graphs)
    return total


@dataclass(frozen=True)
class _TablePattern:
    load: Callable[[], np.ndarray]


@dataclass(frozen=True)
class _DensePattern:
    load: Callable[[], tuple[np.ndarray, np.ndarray | None]]
    activation: tuple[str, float | None, float | None]


class _Reader:
    def __init__(self, path: Path, opset: int, budget: int) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.opset = opset
        # bytes folding may make to read one layer's weights: tied to what the file declares it holds
        self.budget = self.left = budget
        # each recurrent node with a function reading its W/R/B/P from the file and notes for the report, and
        # each Dense pattern's MatMul/Gemm node, in graph order
        self.found: list[
            tuple[
                onnx_proto.NodeProto,
                tuple[Callable[[], dict[str, np.ndarray | None]], list[str], list[str], bool, str | None]
                | _DensePattern | _TablePattern | _LoopPattern,
            ]
        ] = []
        self.loop_reasons: list[str] = []  # why the Loops found are not read as recurrent nodes

    def tensor(self, proto: onnx_proto.TensorProto) -> np.ndarray:
        if uses_external_data(proto):
            inline = [field.name for field, _ in proto.ListFields() if field.name.endswith("_data") and field.name != "external_data"]
            if inline:
                raise InputFormatError(
                    f"the tensor holds {', '.join(inline)} inline and also says its data is external: which one a "
                    "runtime uses is not certain, so lstmconv does not guess",
                    file=self.path,
                    tensor=proto.name,
                )
            return self.external_tensor(proto)
        try:
            return to_array(proto)
        except Exception as error:
            raise InputFormatError(f"cannot decode tensor: {error}", file=self.path, tensor=proto.name) from None

    def external_tensor(self, proto: onnx_proto.TensorProto) -> np.ndarray:
        """A tensor whose bytes are elsewhere in a file (the model's own large tensors, see read_skeleton, or
        ONNX external data beside the model), read straight into the array."""
        info = {entry.key: entry.value for entry in proto.external_data}
        location = info.get("location", "")
        target = (self.base / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(self.base):
            raise InputFormatError(
                "external data path leaves the model's folder; refused", file=self.path, tensor=proto.name, actual=location
            )
        if not target.is_file():
            raise InputFormatError("external data file not found", file=self.path, tensor=proto.name, actual=location)
        size = target.stat().st_size
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else size - offset
        except ValueError:
            raise InputFormatError("external data offset or length is not a number", file=self.path, tensor=proto.name) from None
        if offset < 0 or length < 0 or offset + length > size:
            raise InputFormatError(
                "external data lies beyond the end of its file", file=self.path, tensor=proto.name,
                expected=f"bytes {offset}..{offset + length}", actual=f"{size} bytes",
            )
        plain = _PLAIN_TYPES.get(proto.data_type)
        if plain is None:  # bfloat16, float8, 4-bit, strings: onnx decodes them from a copy with the bytes inline
            inline = onnx_proto.TensorProto()
            inline.CopyFrom(proto)
            del inline.external_data[:]
            inline.data_location = onnx_proto.TensorProto.DEFAULT
            inline.raw_data = bytes(self._read(target, proto.name, np.empty(length, np.uint8), offset))
            return self.tensor(inline)
        shape = tuple(proto.dims)
        if math.prod(shape) * plain.itemsize != length:
            raise InputFormatError(
                "external data length does not match the tensor's shape", file=self.path, tensor=proto.name,
                expected=math.prod(shape) * plain.itemsize, actual=length,
            )
        array = self._read(target, proto.name, buffers.empty(shape, plain), offset)
        return array if plain.isnative else array.astype(plain.newbyteorder("="))

    def _read(self, target: Path, tensor: str, array: np.ndarray, offset: int) -> np.ndarray:
        """Fill ``array`` with the bytes of ``target`` from ``offset`` on (no intermediate copy)."""
        try:
            with target.open("rb") as handle:
                complete = read_into(handle, array, offset)
        except OSError as error:
            raise InputFormatError(f"cannot read tensor data: {error.strerror or error}", file=self.path, tensor=tensor) from None
        if not complete:
            raise InputFormatError("external data ends early", file=self.path, tensor=tensor)
        return array

    def walk(self, graph: onnx_proto.GraphProto, outer: dict[str, np.ndarray]) -> None:
        scope = dict(outer)  # a subgraph sees the enclosing graphs' constants
        for initializer in graph.initializer:
            scope[initializer.name] = _Lazy(self, initializer)
        consumers: dict[str, list[onnx_proto.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        for output in graph.output:  # a graph output is read by the caller too
            consumers.setdefault(output.name, []).append(onnx_proto.NodeProto(op_type="<graph output>"))
        for node in graph.node:
            if node.op_type == "Loop" and self.loop(node, scope):
                continue  # a recurrence tf2onnx wrote as a Loop, read whole: its body is not walked
            if node.op_type in RECURRENT_OPS:
                self.record(node, scope, consumers)
            elif node.op_type in ("MatMul", "Gemm"):
                self.dense(node, scope, consumers)
            elif not (node.op_type == "Gather" and self.table(node, scope)):
                self.fold(node, scope)
            for attribute in node.attribute:
                if attribute.type == onnx_proto.AttributeProto.GRAPH:
                    self.walk(attribute.g, scope)
                elif attribute.type == onnx_proto.AttributeProto.GRAPHS:
                    for sub in attribute.graphs:
                        self.walk(sub, scope)

    def loop(self, node: onnx_proto.NodeProto, scope: dict[str, Any]) -> bool:
        """Whether ``node`` is a Loop computing a SimpleRNN or GRU (:mod:`lstmconv.sources.onnx_loops`); recorded if
        so, else why not (for the message if the model has no recurrent node at all)."""
        from lstmconv.sources.onnx_loops import read_loop

        label = node.name or "Loop"

        def reading() -> OnnxRecurrentNode | str:
            return self.budgeted(lambda: read_loop(node, lambda name: self.value(scope, name), key_safe(label), self.tensor))

        found = reading()
        if isinstance(found, str):
            self.loop_reasons.append(f"Loop '{label}': {found}")
            return False
        kind = {"RNN": "SimpleRNN", "GRU": "GRU"}[found.op]
        note = (f"tf2onnx wrote this recurrence as a Loop: read as a Keras {kind} "
                f"({', '.join(str(a) for a in found.activations)}), a reading confirmed by running the Loop body on random inputs")

        def load() -> OnnxRecurrentNode:
            again = reading()
            if isinstance(again, str):
                raise InputFormatError(f"the Loop changed while it was read: {again}", file=self.path, layer=label)
            return again

        self.found.append((node, _LoopPattern(load, note)))
        return True

    def value(self, scope: dict[str, Any], name: str) -> np.ndarray | None:
        """The constant ``name`` (None if it is computed at run time). An initializer is read from the file and a
        folded value computed each time it is asked for, and not kept, so reading the model holds no weights."""
        found = scope.get(name)
        return found.load() if isinstance(found, (_Lazy, _Fold)) else found

    def fold(self, node: onnx_proto.NodeProto, scope: dict[str, Any]) -> None:
        """Mark the outputs of a node computed from constants only as constants, folded when asked for: a
        constant no recurrent or Dense layer reads is never computed."""
        if node.op_type not in _FOLDERS or any(n and scope.get(n) is None for n in node.input):
            return
        for index, name in enumerate(node.output):
            scope[name] = _Fold(self, node, index, scope)  # names are assigned once: the scope can be shared

    def folded(self, node: onnx_proto.NodeProto, scope: dict[str, Any]) -> list[np.ndarray]:
        """The outputs of a constant node, within the budget of the weight being read (:meth:`budgeted`)."""
        inputs = [self.value(scope, n) if n else None for n in node.input]
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        if node.op_type == "Split" and int(attrs.get("num_outputs", len(node.output))) != len(node.output):
            raise InputFormatError(
                "Split's num_outputs differs from its outputs", file=self.path, layer=node.name or None,
                expected=len(node.output), actual=attrs.get("num_outputs"),
            )
        self.spend(sum(v.nbytes for v in inputs if v is not None) // 2, node)  # broadcasting may make far more
        try:
            outputs = [np.asarray(v) for v in _FOLDERS[node.op_type](self, inputs, attrs, self.opset)]
        except (ValueError, IndexError, TypeError, KeyError, MemoryError) as error:
            raise UnsupportedFeatureError(
                f"a weight is computed by a {node.op_type} node lstmconv cannot fold ({type(error).__name__}: {error})",
                file=self.path, layer=node.name or None,
            ) from None
        self.spend(sum(v.nbytes for v in outputs), node)
        return outputs

    def spend(self, size: int, node: onnx_proto.NodeProto) -> None:
        """Count ``size`` bytes of folding against the budget of the weight being read."""
        self.left -= size + 64
        if self.left < 0:
            raise InputFormatError(
                "folding the constants that make a weight would take more memory than the file's own weights: "
                "a real exporter's Slice/Concat/Transpose graph does not",
                file=self.path,
                layer=node.name or None,
                expected=f"at most {self.budget} bytes",
            )

    def budgeted(self, read: Callable[[], Any]) -> Any:
        """``read()`` (a layer's weights) with a fresh folding budget."""
        self.left = self.budget
        return read()

    def record(self, node: onnx_proto.NodeProto, scope: dict[str, Any], consumers: dict[str, list[onnx_proto.NodeProto]] | None = None) -> None:
        names = list(node.input) + [""] * (8 - len(node.input))
        label = node.name or node.op_type
        slots = dict(zip(("W", "R", "B", "P"), (names[1], names[2], names[3], names[7])))
        for slot, name in slots.items():
            if name and scope.get(name) is None:
                raise UnsupportedFeatureError(
                    f"input {slot} ('{name}') is computed at run time, not a constant; lstmconv converts "
                    "weights that are fixed in the file",
                    file=self.path,
                    layer=label,
                )
        if not slots["W"] or not slots["R"]:
            raise InputFormatError("node has no W or R input", file=self.path, layer=label)
        notes, runtime = [], []
        if names[4] and self.value(scope, names[4]) is not None:
            raise UnsupportedFeatureError(
                "sequence_lens is a constant: fixed sequence lengths are part of this node's function, and the "
                "target layers have no place for them",
                file=self.path,
                layer=label,
            )
        if names[4]:
            runtime.append("sequence_lens")
            notes.append(
                "sequence_lens is a runtime input of the model: a per-layer ONNX model keeps it (optional); torch "
                "and Keras layers run full-length sequences"
            )
        for slot, name in (("initial_h", names[5]), ("initial_c", names[6])):
            if not name:
                continue
            value = self.value(scope, name)
            if value is None:
                runtime.append(slot)
                notes.append(f"{slot} is a runtime input of the model; the converted layer starts from the state you pass")
            elif np.any(value):
                raise UnsupportedFeatureError(
                    f"{slot} is a non-zero constant: the initial state is part of this node's function and "
                    "the target layer has no place for it",
                    file=self.path,
                    layer=label,
                )
        load = functools.partial(
            self.budgeted, functools.partial(lambda names: {slot: self.value(scope, n) if n else None for slot, n in names.items()}, slots)
        )
        order = bool(consumers) and self.budgeted(lambda: self.processing_order(node, consumers or {}, scope))
        if order:
            notes.append("the graph reverses this reverse node's output into processing order: read as a Keras go_backwards layer")
        merge = self.budgeted(lambda: self.merged(node, consumers or {}, scope)) if consumers else None
        if merge:
            notes.append(f"the graph merges this bidirectional node's directions ({merge}): read as a Bidirectional layer merge_mode={merge}")
        self.found.append((node, (load, notes, runtime, order, merge)))

    def merged(self, node: onnx_proto.NodeProto, consumers: dict[str, list[onnx_proto.NodeProto]], scope: dict[str, Any]) -> str | None:
        """How the graph merges a bidirectional node's two directions, if it alone reads them and does: ``Y``
        (or, when ``Y`` is unread, ``Y_h``) split in two along the directions axis and the halves added (sum),
        added then multiplied by 0.5 (ave) or multiplied (mul), as lstmconv writes a Keras Bidirectional."""
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        direction = attrs.get("direction", b"forward")
        if (direction.decode() if isinstance(direction, bytes) else str(direction)) != "bidirectional":
            return None
        outputs = list(node.output) + ["", ""]
        value, axis = (outputs[0], 1) if outputs[0] and consumers.get(outputs[0]) else (outputs[1], 0)
        users = consumers.get(value, []) if value else []
        if len(users) != 1 or users[0].op_type != "Split" or len(users[0].output) != 2:
            return None
        split = users[0]
        split_axis = int(next((attribute_value(a) for a in split.attribute if a.name == "axis"), 0))
        halves = [consumers.get(name, []) for name in split.output]
        if split_axis != axis or any(len(h) != 1 for h in halves) or halves[0][0] is not halves[1][0]:
            return None
        combine = halves[0][0]
        if combine.op_type == "Mul":
            return "mul"
        if combine.op_type != "Add":
            return None
        after = consumers.get(combine.output[0], [])
        if len(after) == 1 and after[0].op_type == "Mul":
            other = next((n for n in after[0].input if n != combine.output[0]), "")
            half = self.value(scope, other) if other else None
            if half is not None and np.asarray(half).size == 1 and float(np.asarray(half).reshape(-1)[0]) == 0.5:
                return "ave"
        return "sum"

    def processing_order(self, node: onnx_proto.NodeProto, consumers: dict[str, list[onnx_proto.NodeProto]], scope: dict[str, Any]) -> bool:
        """Whether ``node`` is a one-direction ``reverse`` node whose output ``Y`` the graph alone reads, squeezed
        (and made batch-first), then reversed over time by a ``Slice`` (step -1, from the last step to before the
        first): Keras ``go_backwards``, whose outputs come in processing order, as lstmconv and converters write it.
        A ``Y`` nothing reads (a ``return_sequences=False`` layer: only ``Y_h`` is used) is read the same way."""
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        direction = attrs.get("direction", b"forward")
        if (direction.decode() if isinstance(direction, bytes) else str(direction)) != "reverse" or not node.output:
            return False
        value, time_axis = node.output[0], 0
        if not value or not consumers.get(value):
            return True  # Y unread (only the final state is): its order is unobservable, Keras's is taken
        for _ in range(4):
            users = consumers.get(value, [])
            if len(users) != 1:
                return False
            user = users[0]
            if user.op_type == "Squeeze":
                axes = attribute_value(next(a for a in user.attribute if a.name == "axes")) if any(a.name == "axes" for a in user.attribute) else (
                    self.value(scope, user.input[1]) if len(user.input) > 1 and user.input[1] else None)
                if axes is None or [int(a) for a in np.asarray(axes).reshape(-1)] != [1]:
                    return False
            elif user.op_type == "Transpose":
                perm = attribute_value(next((a for a in user.attribute if a.name == "perm"), onnx_proto.AttributeProto()))
                if [int(p) for p in perm or []] != [1, 0, 2]:
                    return False
                time_axis = 1 - time_axis
            elif user.op_type == "Slice" and len(user.input) >= 5:
                starts, ends, axes, steps = (self.value(scope, name) for name in user.input[1:5])
                if any(v is None for v in (starts, ends, axes, steps)):
                    return False
                return ([int(v) for v in np.asarray(steps).reshape(-1)] == [-1] and [int(v) for v in np.asarray(starts).reshape(-1)] == [-1]
                        and [int(v) for v in np.asarray(axes).reshape(-1)] in ([time_axis], [time_axis - 3])
                        and int(np.asarray(ends).reshape(-1)[0]) <= -(2**31))
            elif user.op_type != "Identity":
                return False
            value = user.output[0]
        return False

    def dense(self, node: onnx_proto.NodeProto, scope: dict[str, Any], consumers: dict[str, list[onnx_proto.NodeProto]]) -> None:
        """Record ``node`` (MatMul or Gemm) as a Dense layer when its weight is a constant matrix (see
        :class:`OnnxDenseEntry`)."""
        if len(node.input) < 2 or scope.get(node.input[1]) is None or scope.get(node.input[0]) is not None:
            return
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        gemm = node.op_type == "Gemm"
        if gemm and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            return
        transposed = gemm and bool(attrs.get("transB", 0))
        weight_name = node.input[1]
        bias_name = node.input[2] if gemm and len(node.input) > 2 and node.input[2] else None
        if bias_name is not None and scope.get(bias_name) is None:
            return
        output = node.output[0]
        following = consumers.get(output, [])
        if bias_name is None and len(following) == 1 and following[0].op_type == "Add":
            add = following[0]
            other = [name for name in add.input if name != output]
            if len(other) == 1 and scope.get(other[0]) is not None:
                bias_name, output = other[0], add.output[0]
                following = consumers.get(output, [])
        activation: tuple[str, float | None, float | None] = ("linear", None, None)
        if len(following) == 1:
            activation = _standalone_activation(following[0], self.opset) or activation

        def read() -> tuple[np.ndarray, np.ndarray | None]:
            weight = self.value(scope, weight_name)
            bias = self.value(scope, bias_name) if bias_name is not None else None
            assert weight is not None
            kernel = weight.T if transposed else weight
            return kernel, bias

        load = functools.partial(self.budgeted, read)

        shapes = self.shape(scope, weight_name), self.shape(scope, bias_name) if bias_name else None
        units = shapes[0][0 if transposed else 1] if shapes[0] is not None and len(shapes[0]) == 2 else None
        if units is None or (bias_name is not None and shapes[1] != (units,)):
            return  # not a matrix, or a bias that does not add one number per unit: not a Dense layer
        self.found.append((node, _DensePattern(load, activation)))

    def table(self, node: onnx_proto.NodeProto, scope: dict[str, Any]) -> bool:
        """Record ``node`` (Gather) as an Embedding when it looks up runtime ids in a constant float matrix."""
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        if len(node.input) != 2 or attrs.get("axis", 0) != 0 or scope.get(node.input[1]) is not None:
            return False
        found = scope.get(node.input[0])
        shape = self.shape(scope, node.input[0])
        floating = found.proto.data_type in _FLOAT_TYPES if isinstance(found, _Lazy) else getattr(found, "dtype", np.dtype(int)).kind == "f"
        if found is None or shape is None or len(shape) != 2 or not floating:
            return False
        table_name = node.input[0]

        def read() -> np.ndarray:
            table = self.value(scope, table_name)
            assert table is not None
            return table

        self.found.append((node, _TablePattern(functools.partial(self.budgeted, read))))
        return True

    def shape(self, scope: dict[str, Any], name: str | None) -> tuple[int, ...] | None:
        """The shape of constant ``name`` without reading an initializer's data."""
        found = scope.get(name) if name else None
        if isinstance(found, _Lazy):
            return tuple(int(d) for d in found.proto.dims)
        if found is None or isinstance(found, _Fold):  # a folded value's shape is known only once folded
            return None
        return tuple(np.shape(found))


class _Fold:
    """Output ``index`` of a node computed from constants only, folded each time it is used."""

    def __init__(self, reader: _Reader, node: onnx_proto.NodeProto, index: int, scope: dict[str, Any]) -> None:
        self.reader, self.node, self.index, self.scope = reader, node, index, scope

    def load(self) -> np.ndarray:
        return self.reader.folded(self.node, self.scope)[self.index]


class _Lazy:
    """An initializer, decoded when used (large unused initializers are never read)."""

    def __init__(self, reader: _Reader, proto: onnx_proto.TensorProto) -> None:
        self.reader, self.proto = reader, proto

    def load(self) -> np.ndarray:
        return self.reader.tensor(self.proto)


_FLOAT_TYPES = (onnx_proto.TensorProto.FLOAT, onnx_proto.TensorProto.DOUBLE, onnx_proto.TensorProto.FLOAT16, onnx_proto.TensorProto.BFLOAT16)

_PLAIN_TYPES = ELEMENT_TYPES  # element types stored as plain little-endian numbers


def _load_node(
    path: Path, node: onnx_proto.NodeProto, load_weights: Callable[[], dict[str, np.ndarray | None]], name: str, opset: int
) -> OnnxRecurrentNode:
    return _node(path, node, load_weights(), name, opset)


def _node(path: Path, node: onnx_proto.NodeProto, weights: dict[str, np.ndarray | None], name: str, opset: int) -> OnnxRecurrentNode:
    op = node.op_type
    attrs = {a.name: attribute_value(a) for a in node.attribute}

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    direction = text(attrs.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise InputFormatError(f"unknown direction {direction!r}", file=path, layer=name)
    directions = 2 if direction == "bidirectional" else 1
    per_direction = ACTIVATION_COUNT[op.lower()]
    activations = [text(a) for a in attrs.get("activations", list(DEFAULT_ACTIVATIONS[op.lower()]) * directions)]
    if len(activations) != per_direction * directions:
        raise ConfigError(
            "wrong number of activations", file=path, layer=name, expected=per_direction * directions, actual=len(activations)
        )
    unknown = [a for a in activations if not is_known_activation(a)]
    if unknown:
        raise UnsupportedFeatureError(f"unknown activation(s) {unknown}", file=path, layer=name, hint=f"known: {sorted(ONNX_ACTIVATIONS)}")
    alpha = [float(v) for v in attrs.get("activation_alpha", [])]
    beta = [float(v) for v in attrs.get("activation_beta", [])]
    try:
        acts = parse_activations(activations, alpha, beta)
    except ValueError as error:
        raise UnsupportedFeatureError(f"{error}; the node's function is ambiguous", file=path, layer=name) from None
    except LstmconvError as error:  # a parameter no activation can take (NaN, infinite)
        raise error.with_context(file=path, layer=name) from None
    parameterised = any(ONNX_ACTIVATIONS[_canonical_case(a)][1] is not None for a in activations)
    if op == "RNN" and parameterised and not alpha:
        raise UnsupportedFeatureError(
            "RNN node with parameterised activations but no explicit activation_alpha/beta: the ONNX spec's "
            "defaults and onnxruntime's (0.0) differ, so its function is ambiguous",
            file=path,
            layer=name,
        )
    W, R = np.asarray(weights["W"]), np.asarray(weights["R"])
    hidden = int(attrs.get("hidden_size", R.shape[-1] if R.ndim == 3 else 0))
    gates = gate_count(op.lower())
    expected = {"W": (directions, gates * hidden, W.shape[-1] if W.ndim == 3 else -1), "R": (directions, gates * hidden, hidden)}
    for slot, array in (("W", W), ("R", R)):
        if array.shape != expected[slot]:
            raise InputFormatError("shape mismatch", file=path, layer=name, tensor=slot, expected=expected[slot], actual=array.shape)
    B, P = weights["B"], weights["P"]
    if B is not None and B.shape != (directions, 2 * gates * hidden):
        raise InputFormatError("shape mismatch", file=path, layer=name, tensor="B", expected=(directions, 2 * gates * hidden), actual=B.shape)
    if P is not None and P.shape != (directions, 3 * hidden):
        raise InputFormatError("shape mismatch", file=path, layer=name, tensor="P", expected=(directions, 3 * hidden), actual=P.shape)
    for slot, array in (("W", W), ("R", R), ("B", B), ("P", P)):
        if array is not None and array.dtype.kind != "f":
            raise InputFormatError(f"weights must be floating point, got {array.dtype}", file=path, layer=name, tensor=slot)
    clip = attrs.get("clip")
    return OnnxRecurrentNode(
        op=op,
        name=name,
        hidden_size=hidden,
        direction=direction,
        activations=acts,
        clip=float(clip) if clip is not None else None,
        input_forget=bool(attrs.get("input_forget", 0)),
        linear_before_reset=bool(attrs.get("linear_before_reset", 0)),
        layout=int(attrs.get("layout", 0)),
        W=W,
        R=R,
        B=B,
        P=P,
    )


_STANDALONE_OPS_READ = {op: name for name, op in STANDALONE_OPS.items()}


def _standalone_activation(node: onnx_proto.NodeProto, opset: int) -> tuple[str, float | None, float | None] | None:
    """The activation one op computes on its own (``None`` if it is not one, or not on the last axis)."""
    name = _STANDALONE_OPS_READ.get(node.op_type)
    if name is None:
        return None
    attrs = {a.name: attribute_value(a) for a in node.attribute}
    if name in ("softmax", "log_softmax"):
        # before opset 13 the default axis is 1 (of a flattened 2-D view); only the last axis is a Dense's
        axis = attrs.get("axis", -1 if opset >= 13 else 1)
        return (name, None, None) if axis == -1 else None
    if node.op_type in ONNX_ACTIVATIONS:  # the op's own defaults, as the recurrent ops' activations have them
        _, alpha, beta = ONNX_ACTIVATIONS[node.op_type]
        return (
            name,
            float(attrs.get("alpha", alpha)) if alpha is not None else None,
            float(attrs.get("beta", beta)) if beta is not None else None,
        )
    return name, None, None


def _canonical_case(name: str) -> str:
    return next(k for k in ONNX_ACTIVATIONS if k.lower() == name.lower())


# ---------------------------------------------------------------------------------------------------
# Constant folding: NumPy versions of the shape ops exporters use to build weights.


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _constant(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    if "value" in attrs:
        return [reader.tensor(attrs["value"])]
    for key in ("value_float", "value_int"):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=np.float32 if key == "value_float" else np.int64)]
    for key in ("value_floats", "value_ints"):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=np.float32 if key == "value_floats" else np.int64)]
    raise ValueError("unsupported Constant")


def _slice(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    data = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    axes = list(axes) if axes is not None else list(range(len(starts)))
    index = [slice(None)] * data.ndim
    for k, axis in enumerate(axes):
        step = steps[k] if steps else 1
        index[axis] = slice(int(np.clip(starts[k], -2**62, 2**62)), int(np.clip(ends[k], -2**62, 2**62)), step)
    return [data[tuple(index)]]


def _axes(inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[int]:
    if opset >= 13:
        return _ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else []
    return list(attrs.get("axes", []))


def _unsqueeze(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    data = inputs[0]
    axes = sorted(a % (data.ndim + len(_axes(inputs, attrs, opset))) for a in _axes(inputs, attrs, opset))
    for axis in axes:
        data = np.expand_dims(data, axis)
    return [data]


def _squeeze(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    axes = _axes(inputs, attrs, opset)
    return [np.squeeze(inputs[0], axis=tuple(axes) if axes else None)]


def _split(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    data, axis = inputs[0], int(attrs.get("axis", 0))
    sizes = _ints(inputs[1]) if opset >= 13 and len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    if sizes is None:
        parts = int(attrs.get("num_outputs", 0)) or None
        if parts is None:
            raise ValueError("Split without sizes")
        return list(np.array_split(data, parts, axis=axis))
    return list(np.split(data, np.cumsum(sizes)[:-1], axis=axis))


def _reshape(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    shape = _ints(inputs[1]) if opset >= 5 else list(attrs["shape"])
    shape = [inputs[0].shape[k] if s == 0 and not attrs.get("allowzero") else s for k, s in enumerate(shape)]
    return [inputs[0].reshape(shape)]


def _cast(reader: _Reader, inputs: list[Any], attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    return [inputs[0].astype(numpy_dtype(attrs["to"]))]


_FOLDERS = {
    "Constant": _constant,
    "Identity": lambda r, i, a, o: [i[0]],
    "Cast": _cast,
    "Slice": _slice,
    "Concat": lambda r, i, a, o: [np.concatenate([v for v in i if v is not None], axis=int(a["axis"]))],
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Transpose": lambda r, i, a, o: [np.transpose(i[0], a.get("perm"))],
    "Reshape": _reshape,
    "Split": _split,
    "Gather": lambda r, i, a, o: [np.take(i[0], i[1], axis=int(a.get("axis", 0)))],
    "Add": lambda r, i, a, o: [i[0] + i[1]],
    "Sub": lambda r, i, a, o: [i[0] - i[1]],
    "Mul": lambda r, i, a, o: [i[0] * i[1]],
    "Neg": lambda r, i, a, o: [-i[0]],
}


def iter_nodes(graph: onnx_proto.GraphProto) -> Iterator[onnx_proto.NodeProto]:
    """Every node of ``graph`` and of its subgraphs."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx_proto.AttributeProto.GRAPH:
                yield from iter_nodes(attribute.g)
            elif attribute.type == onnx_proto.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from iter_nodes(sub)
