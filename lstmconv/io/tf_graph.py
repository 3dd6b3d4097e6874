"""The ops of a TensorFlow ``MetaGraphDef`` (a checkpoint's ``.meta``), walked on the wire without TensorFlow.

``MetaGraphDef``: ``meta_info_def = 1`` (``MetaInfoDef.tensorflow_version = 5``), ``graph_def = 2``.
``GraphDef``: ``node = 1`` of ``NodeDef {name = 1, op = 2, input = 3, attr = 5}`` (``attr``: map entries
``{key = 1, value = 2}`` of ``AttrValue {f = 4, b = 5, tensor = 8}``), ``library = 2``:
``FunctionDefLibrary.function = 1`` of ``FunctionDef {signature = 1 (OpDef.name = 1), node_def = 3}``.
A Const's value is ``TensorProto {dtype = 1, tensor_content = 4, float_val = 5, double_val = 6}``.

Control flow v1 puts a loop's ops in the graph itself (``rnn/while/...``); v2 (TF 2 graphs, ``tf.compat.v1``)
puts them in the library's body functions, whose node names are local and whose inputs read
``node:output_arg:index``. Each is a :class:`GraphOps` here, inputs normalised to ``node:index``. Gradient
functions and ``gradients/`` ops are training's, never a cell's forward computation, and are skipped.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from lstmconv.errors import InputFormatError
from lstmconv.io.protobuf_wire import (
    WIRE_32BIT,
    WIRE_LEN,
    WIRE_VARINT,
    Field,
    WireFormatError,
    fields,
    read_varint,
)
from lstmconv.io.reading import regular_file

__all__ = ["GraphNode", "GraphOps", "MetaGraph", "read_meta_graph"]

_SMALL_TENSOR = 64  # bytes of a Const's content worth decoding: the scalars a cell's graph holds


@dataclass(frozen=True)
class GraphNode:
    name: str
    op: str
    inputs: tuple[str, ...]  # "node:index"
    value: tuple[float, ...] = ()  # a small float Const's values
    floats: dict[str, float] = field(default_factory=dict)  # float attributes (forget_bias, cell_clip)
    flags: dict[str, bool] = field(default_factory=dict)  # bool attributes (use_peephole)


@dataclass(frozen=True)
class GraphOps:
    """The ops of the graph (``function`` empty) or of one library function."""

    function: str
    nodes: tuple[GraphNode, ...]


@dataclass(frozen=True)
class MetaGraph:
    tensorflow_version: str | None
    parts: tuple[GraphOps, ...]


def read_meta_graph(path: Path) -> MetaGraph:
    """The forward ops of the ``.meta`` file at ``path``."""
    if regular_file(path, "graph (.meta)").stat().st_size == 0:
        raise InputFormatError("file is empty", file=path)
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            version: str | None = None
            parts: list[GraphOps] = []
            for part in fields(data, 0, len(data)):
                if part.wire != WIRE_LEN:
                    continue
                if part.number == 1:
                    for item in fields(data, part.value_start, part.end):
                        if item.number == 5 and item.wire == WIRE_LEN:
                            version = bytes(data[item.value_start : item.end]).decode("utf-8", "replace")
                elif part.number == 2:
                    parts.extend(_graph(data, part))
    except WireFormatError as error:
        raise InputFormatError(f"cannot read the graph: {error}", file=path) from None
    return MetaGraph(version, tuple(parts))


def _graph(data: mmap.mmap, graph: Field) -> list[GraphOps]:
    nodes: list[GraphNode] = []
    functions: list[GraphOps] = []
    for item in fields(data, graph.value_start, graph.end):
        if item.wire != WIRE_LEN:
            continue
        if item.number == 1:
            node = _node(data, item, local=False)
            if not node.name.startswith("gradients"):
                nodes.append(node)
        elif item.number == 2:
            for function in fields(data, item.value_start, item.end):
                if function.number == 1 and function.wire == WIRE_LEN:
                    functions.append(_function(data, function))
    return [GraphOps("", tuple(nodes)), *(f for f in functions if "_grad" not in f.function)]


def _function(data: mmap.mmap, function: Field) -> GraphOps:
    name = ""
    nodes: list[GraphNode] = []
    for item in fields(data, function.value_start, function.end):
        if item.wire != WIRE_LEN:
            continue
        if item.number == 1:
            for part in fields(data, item.value_start, item.end):
                if part.number == 1 and part.wire == WIRE_LEN:
                    name = _text(data, part)
        elif item.number == 3:
            nodes.append(_node(data, item, local=True))
    return GraphOps(name, tuple(nodes))


def _text(data: mmap.mmap, item: Field) -> str:
    return bytes(data[item.value_start : item.end]).decode("utf-8", "replace")


def _node(data: mmap.mmap, node: Field, *, local: bool) -> GraphNode:
    name = op = ""
    inputs: list[str] = []
    value: tuple[float, ...] = ()
    floats: dict[str, float] = {}
    flags: dict[str, bool] = {}
    for item in fields(data, node.value_start, node.end):
        if item.wire != WIRE_LEN:
            continue
        if item.number == 1:
            name = _text(data, item)
        elif item.number == 2:
            op = _text(data, item)
        elif item.number == 3:
            reference = _text(data, item)
            if not reference.startswith("^"):
                inputs.append(_normalised(reference, local))
        elif item.number == 5:
            key, attr = "", None
            for part in fields(data, item.value_start, item.end):
                if part.number == 1 and part.wire == WIRE_LEN:
                    key = _text(data, part)
                elif part.number == 2 and part.wire == WIRE_LEN:
                    attr = part
            if attr is None:
                continue
            for part in fields(data, attr.value_start, attr.end):
                if part.number == 4 and part.wire == WIRE_32BIT:
                    floats[key] = struct.unpack_from("<f", data, part.value_start)[0]
                elif part.number == 5 and part.wire == WIRE_VARINT:
                    flags[key] = bool(read_varint(data, part.value_start)[0])
                elif part.number == 8 and part.wire == WIRE_LEN and key == "value":
                    value = _tensor(data, part)
    return GraphNode(name, op, tuple(inputs), value, floats, flags)


def _normalised(reference: str, local: bool) -> str:
    """``node:index``: ``split:2`` and ``split`` in a graph, ``split:output:2`` in a function body."""
    parts = reference.split(":")
    if local and len(parts) == 3:
        return f"{parts[0]}:{parts[2]}"
    if len(parts) == 2:
        return reference
    return f"{parts[0]}:0"


def _tensor(data: mmap.mmap, tensor: Field) -> tuple[float, ...]:
    """The values of a small float32/float64 tensor (nothing for any other)."""
    dtype = 0
    content: bytes | None = None
    values: list[float] = []
    for item in fields(data, tensor.value_start, tensor.end):
        if item.number == 1 and item.wire == WIRE_VARINT:
            dtype = read_varint(data, item.value_start)[0]
        elif item.number == 4 and item.wire == WIRE_LEN and item.end - item.value_start <= _SMALL_TENSOR:
            content = bytes(data[item.value_start : item.end])
        elif item.number == 5 and item.wire == WIRE_LEN and item.end - item.value_start <= _SMALL_TENSOR:  # packed
            values.extend(struct.unpack(f"<{(item.end - item.value_start) // 4}f", data[item.value_start : item.end - (item.end - item.value_start) % 4]))
        elif item.number == 5 and item.wire == WIRE_32BIT:
            values.append(struct.unpack_from("<f", data, item.value_start)[0])
        elif item.number == 6 and item.wire == WIRE_LEN and item.end - item.value_start <= _SMALL_TENSOR:
            values.extend(struct.unpack(f"<{(item.end - item.value_start) // 8}d", data[item.value_start : item.end - (item.end - item.value_start) % 8]))
    if dtype not in (1, 2):
        return ()
    if content is not None:
        size = 4 if dtype == 1 else 8
        return struct.unpack(f"<{len(content) // size}{'f' if dtype == 1 else 'd'}", content[: len(content) - len(content) % size])
    return tuple(values)
