"""TFLite flatbuffers, built with the ``tflite`` package's schema bindings and ``flatbuffers`` (no TensorFlow).

A model (schema version 3, file identifier ``TFL3``) is buffers, operator codes and subgraphs; a subgraph is
tensors (shape, type, buffer index, ``is_variable``, ``shape_signature`` with -1 for a dynamic axis), operators
(operator code index, input and output tensor indices, -1 for an optional input left out, builtin options) and
its inputs and outputs. Buffer 0 is the empty buffer every tensor without data points at. Every buffer's bytes
are inline (every TFLite runtime reads those; a model is at most 2 GiB). Options are given by their table's
name and fields (``("UnidirectionalSequenceLSTMOptions", {"FusedActivationFunction": 4})``) and built through
the bindings' ``<Table>Add<Field>`` functions, so a misspelt field fails here, not in the runtime.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lstmconv.errors import InputFormatError

__all__ = ["TfliteSubgraph", "TfliteModel", "read_model_summary", "TFLITE_TYPES"]

#: NumPy dtype -> TFLite TensorType name
TFLITE_TYPES = {"float32": "FLOAT32", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}
_ALIGN = 16  # buffer data aligned as TensorFlow's converter aligns it


def _schema(name: str) -> ModuleType:
    return importlib.import_module(f"tflite.{name}")


def _enum(table: str, member: str) -> int:
    return int(getattr(getattr(_schema(table), table), member))


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int
    variable: bool
    signature: tuple[int, ...] | None


@dataclass
class _Operator:
    code: str
    inputs: list[int]
    outputs: list[int]
    options: tuple[str, dict[str, Any]] | None


@dataclass
class TfliteSubgraph:
    """One subgraph being built; tensors and operators in the order they are added (operators must be added
    in an order that computes every input before it is read)."""

    model: TfliteModel
    name: str
    tensors: list[_Tensor] = field(default_factory=list)
    operators: list[_Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def tensor(
        self, name: str, shape: tuple[int, ...] | list[int], dtype: str = "float32", *, data: np.ndarray | None = None,
        variable: bool = False, signature: tuple[int, ...] | None = None,
    ) -> int:
        """A new tensor (a constant when ``data`` is given), named uniquely from ``name``; its index."""
        unique, k = name, 1
        while unique in self._names:
            unique, k = f"{name}_{k}", k + 1
        self._names.add(unique)
        buffer = 0 if data is None else self.model.buffer(np.ascontiguousarray(data, dtype=dtype))
        self.tensors.append(_Tensor(unique, tuple(int(d) for d in shape), dtype, buffer, variable, signature))
        return len(self.tensors) - 1

    def constant(self, name: str, data: np.ndarray | list[int] | float, dtype: str | None = None) -> int:
        array = np.asarray(data, dtype=dtype or (np.float32 if isinstance(data, float) else None))
        if array.dtype == np.float16 or array.dtype == np.float64:
            array = array.astype(np.float32)  # float16 widened exactly; float64 refused before planning
        if array.dtype == np.int64:
            array = array.astype(np.int32)
        return self.tensor(name, array.shape, str(array.dtype), data=array)

    def op(self, code: str, inputs: list[int], outputs: list[int], options: tuple[str, dict[str, Any]] | None = None) -> None:
        self.operators.append(_Operator(code, inputs, outputs, options))

    def shape_of(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape


class TfliteModel:
    """A TFLite model being built: its buffers and subgraphs (the first is the main one)."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.buffers: list[np.ndarray | None] = [None]  # each array until its bytes are in the flatbuffer
        self.sizes: list[int] = [0]  # each buffer's byte size, kept when its array is dropped
        self.subgraphs: list[TfliteSubgraph] = []

    def subgraph(self, name: str) -> TfliteSubgraph:
        graph = TfliteSubgraph(self, name)
        self.subgraphs.append(graph)
        return graph

    def buffer(self, array: np.ndarray) -> int:
        self.buffers.append(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)))
        self.sizes.append(array.nbytes)
        return len(self.buffers) - 1

    def to_bytes(self) -> memoryview:
        """The flatbuffer: a view of the builder's own buffer (no copy). Each weight array is dropped once its
        bytes are in it, so building holds the weights about once."""
        import flatbuffers

        size = sum(n + _ALIGN for n in self.sizes) + 4096 * (1 + sum(len(g.tensors) + len(g.operators) for g in self.subgraphs))
        builder = flatbuffers.Builder(size)
        codes = sorted({op.code for graph in self.subgraphs for op in graph.operators})
        buffers = []
        for index, data in enumerate(self.buffers):
            buffers.append(self._buffer(builder, data))
            self.buffers[index] = None
        subgraphs = [self._subgraph(builder, graph, codes) for graph in self.subgraphs]
        operator_codes = [self._operator_code(builder, code) for code in codes]
        model = _schema("Model")
        description = builder.CreateString(self.description)
        codes_vector = _offsets(builder, model.StartOperatorCodesVector, operator_codes)
        subgraphs_vector = _offsets(builder, model.StartSubgraphsVector, subgraphs)
        buffers_vector = _offsets(builder, model.StartBuffersVector, buffers)
        model.Start(builder)
        model.AddVersion(builder, 3)
        model.AddOperatorCodes(builder, codes_vector)
        model.AddSubgraphs(builder, subgraphs_vector)
        model.AddDescription(builder, description)
        model.AddBuffers(builder, buffers_vector)
        builder.Finish(model.End(builder), file_identifier=b"TFL3")
        return memoryview(builder.Bytes)[builder.Head() :]

    @staticmethod
    def _buffer(builder: Any, data: np.ndarray | None) -> int:
        schema = _schema("Buffer")
        vector = None
        if data is not None and data.nbytes:  # CreateByteVector, aligned for the runtime's float reads
            size = data.nbytes
            builder.StartVector(1, size, _ALIGN)
            builder.head = builder.head - size
            builder.Bytes[builder.head : builder.head + size] = memoryview(data.reshape(-1)).cast("B")
            vector = builder.EndVector()
        schema.Start(builder)
        if vector is not None:
            schema.AddData(builder, vector)
        return int(schema.End(builder))

    @staticmethod
    def _operator_code(builder: Any, code: str) -> int:
        schema = _schema("OperatorCode")
        number = _enum("BuiltinOperator", code)
        schema.Start(builder)
        schema.AddDeprecatedBuiltinCode(builder, min(number, 127))  # 127: "look at builtin_code"
        schema.AddBuiltinCode(builder, number)
        schema.AddVersion(builder, 1)
        return int(schema.End(builder))

    def _subgraph(self, builder: Any, graph: TfliteSubgraph, codes: list[str]) -> int:
        tensor_schema, operator_schema, subgraph_schema = _schema("Tensor"), _schema("Operator"), _schema("SubGraph")
        tensors = []
        for tensor in graph.tensors:
            name = builder.CreateString(tensor.name)
            shape = _ints(builder, tensor_schema.StartShapeVector, list(tensor.shape))
            signature = _ints(builder, tensor_schema.StartShapeSignatureVector, list(tensor.signature)) if tensor.signature else None
            tensor_schema.Start(builder)
            tensor_schema.AddShape(builder, shape)
            tensor_schema.AddType(builder, _enum("TensorType", TFLITE_TYPES[tensor.dtype]))
            tensor_schema.AddBuffer(builder, tensor.buffer)
            tensor_schema.AddName(builder, name)
            if tensor.variable:
                tensor_schema.AddIsVariable(builder, True)
            if signature is not None:
                tensor_schema.AddShapeSignature(builder, signature)
            tensors.append(tensor_schema.End(builder))
        operators = []
        for operator in graph.operators:
            inputs = _ints(builder, operator_schema.StartInputsVector, operator.inputs)
            outputs = _ints(builder, operator_schema.StartOutputsVector, operator.outputs)
            options = _options(builder, *operator.options) if operator.options else None
            operator_schema.Start(builder)
            operator_schema.AddOpcodeIndex(builder, codes.index(operator.code))
            operator_schema.AddInputs(builder, inputs)
            operator_schema.AddOutputs(builder, outputs)
            if options is not None:
                operator_schema.AddBuiltinOptionsType(builder, _enum("BuiltinOptions", operator.options[0]))  # type: ignore[index]
                operator_schema.AddBuiltinOptions(builder, options)
            operators.append(operator_schema.End(builder))
        tensors_vector = _offsets(builder, subgraph_schema.StartTensorsVector, tensors)
        operators_vector = _offsets(builder, subgraph_schema.StartOperatorsVector, operators)
        inputs_vector = _ints(builder, subgraph_schema.StartInputsVector, graph.inputs)
        outputs_vector = _ints(builder, subgraph_schema.StartOutputsVector, graph.outputs)
        name = builder.CreateString(graph.name)
        subgraph_schema.Start(builder)
        subgraph_schema.AddTensors(builder, tensors_vector)
        subgraph_schema.AddInputs(builder, inputs_vector)
        subgraph_schema.AddOutputs(builder, outputs_vector)
        subgraph_schema.AddOperators(builder, operators_vector)
        subgraph_schema.AddName(builder, name)
        return int(subgraph_schema.End(builder))


def _ints(builder: Any, start: Any, values: list[int]) -> int:
    start(builder, len(values))
    for value in reversed(values):
        builder.PrependInt32(value)
    return int(builder.EndVector())


def _offsets(builder: Any, start: Any, values: list[int]) -> int:
    start(builder, len(values))
    for value in reversed(values):
        builder.PrependUOffsetTRelative(value)
    return int(builder.EndVector())


def _options(builder: Any, table: str, fields: dict[str, Any]) -> int:
    schema = _schema(table)
    schema.Start(builder)
    for name, value in fields.items():
        getattr(schema, f"Add{name}")(builder, value)
    return int(schema.End(builder))


def read_model_summary(data: bytes, path: Path) -> dict[str, Any]:
    """What a written model holds, read back through the bindings: per subgraph its operators' codes and the
    byte size of every tensor's buffer, by tensor name."""
    model_class = getattr(_schema("Model"), "Model")
    if data[4:8] != b"TFL3":
        raise InputFormatError("not a TFLite flatbuffer (no TFL3 identifier)", file=path)
    model = model_class.GetRootAs(data, 0)
    codes = [model.OperatorCodes(k).BuiltinCode() for k in range(model.OperatorCodesLength())]
    names = {v: k for k, v in vars(getattr(_schema("BuiltinOperator"), "BuiltinOperator")).items() if not k.startswith("_")}
    summary: dict[str, Any] = {"subgraphs": []}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        sizes = {}
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            sizes[tensor.Name().decode()] = model.Buffers(tensor.Buffer()).DataLength()
        operators = [names[codes[graph.Operators(o).OpcodeIndex()]] for o in range(graph.OperatorsLength())]
        summary["subgraphs"].append({"operators": operators, "buffer_bytes": sizes})
    return summary
