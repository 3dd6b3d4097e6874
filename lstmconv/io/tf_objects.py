"""TensorFlow's object graphs: which variable of a tensor bundle belongs to which Keras layer.

Three protobufs, walked on the wire (no TensorFlow, no generated classes):

- ``TrackableObjectGraph``, the ``_CHECKPOINTABLE_OBJECT_GRAPH`` tensor of a TF2 checkpoint and of a
  SavedModel's ``variables/`` bundle: ``nodes = 1`` (``TrackableObject``: ``children = 1`` of
  ``ObjectReference {node_id = 1, local_name = 2}``, ``attributes = 2`` of
  ``SerializedTensor {name = 1, full_name = 2, checkpoint_key = 3}``). Node 0 is the root.
- ``SavedObjectGraph`` in ``saved_model.pb`` (``SavedModel.meta_graphs = 2`` -> ``MetaGraphDef.object_graph_def
  = 7``): ``nodes = 1`` (``SavedObject``: ``children = 1``, ``user_object = 4`` of
  ``SavedUserObject {identifier = 1, metadata = 3}``), where tf.keras before 2.5 kept each layer's JSON.
- ``SavedMetadata`` in ``keras_metadata.pb`` (tf.keras 2.5+): ``nodes = 1`` of ``SavedObject {node_id = 2,
  node_path = 3, identifier = 4, metadata = 5}``.

Objects are named by their path from the root (``root.layer_with_weights-0.cell``), as tf.keras names them in
``keras_metadata.pb``; a path is found in a checkpoint's graph by following the children's local names.
"""

from __future__ import annotations

import mmap
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lstmconv.errors import InputFormatError
from lstmconv.io.protobuf_wire import WIRE_LEN, Field, WireFormatError, fields, read_varint
from lstmconv.io.reading import regular_file

__all__ = ["TrackableNode", "KerasObject", "checkpoint_graph", "node_at", "variables_under", "keras_objects"]

_MAX_METADATA_BYTES = 256 << 20
_MAX_DEPTH = 64  # object paths in Keras models are a few levels deep; a cycle or a lie stops here


@dataclass(frozen=True)
class TrackableNode:
    children: tuple[tuple[int, str], ...]  # (node id, local name)
    variables: tuple[tuple[str, str], ...]  # (full name, checkpoint key)


@dataclass(frozen=True)
class KerasObject:
    """One object tf.keras saved metadata for: its path, its identifier (``_tf_keras_rnn_layer``...) and JSON."""

    path: str
    identifier: str
    metadata: str


def _values(data: bytes | mmap.mmap, message: Field) -> dict[int, bytes | int]:
    """The scalar and length-delimited fields of a flat message (the last of each number)."""
    values: dict[int, bytes | int] = {}
    for item in fields(data, message.value_start, message.end):
        values[item.number] = bytes(data[item.value_start : item.end]) if item.wire == WIRE_LEN else read_varint(data, item.value_start)[0]
    return values


def _text(value: bytes | int | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def checkpoint_graph(data: bytes, file: Path) -> list[TrackableNode]:
    """The nodes of a serialized ``TrackableObjectGraph``."""
    nodes = []
    try:
        for node in fields(data, 0, len(data)):
            if node.number != 1 or node.wire != WIRE_LEN:
                continue
            children: list[tuple[int, str]] = []
            variables: list[tuple[str, str]] = []
            for part in fields(data, node.value_start, node.end):
                if part.wire != WIRE_LEN or part.number not in (1, 2):
                    continue
                values = _values(data, part)
                if part.number == 1:
                    child = values.get(1, 0)
                    children.append((child if isinstance(child, int) else 0, _text(values.get(2))))
                elif _text(values.get(1)) == "VARIABLE_VALUE":
                    variables.append((_text(values.get(2)), _text(values.get(3))))
            nodes.append(TrackableNode(tuple(children), tuple(variables)))
    except WireFormatError as error:
        raise InputFormatError(f"cannot read the checkpoint's object graph: {error}", file=file) from None
    return nodes


def node_at(nodes: list[TrackableNode], path: str) -> int | None:
    """The id of the node at ``path`` (``root.a.b``: the root's child ``a``, its child ``b``), if any."""
    parts = path.split(".")
    if parts[0] != "root" or not nodes:
        return None
    current = 0
    for local_name in parts[1:]:
        current = next((child for child, name in nodes[current].children if name == local_name), -1)
        if not 0 <= current < len(nodes):
            return None
    return current


def variables_under(nodes: list[TrackableNode], node_id: int, held: set[str] | dict[str, object], file: Path) -> list[tuple[str, str]]:
    """(full name, checkpoint key) of every variable under ``node_id``, in the order the layer created them (its
    ``variables`` list comes first among a layer's children). ``held``: the keys the bundle holds."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def walk(current: int, depth: int) -> None:
        if current in seen or depth > _MAX_DEPTH or not 0 <= current < len(nodes):
            return
        seen.add(current)
        for full_name, checkpoint_key in nodes[current].variables:
            if checkpoint_key not in held:
                raise InputFormatError("the object graph names a variable the checkpoint does not hold", file=file, tensor=checkpoint_key)
            found.append((full_name, checkpoint_key))
        for child, _ in nodes[current].children:
            walk(child, depth + 1)

    walk(node_id, 0)
    return found


def keras_objects(folder: Path) -> list[KerasObject]:
    """The objects of a SavedModel that tf.keras saved metadata for, in node order: from ``keras_metadata.pb``
    when the folder has one, else from the user objects of ``saved_model.pb``'s object graph."""
    metadata = folder / "keras_metadata.pb"
    try:
        if metadata.exists():
            regular_file(metadata, "Keras metadata")
            return list(_saved_metadata(_small(metadata)))
        return _user_objects(folder / "saved_model.pb")
    except WireFormatError as error:
        raise InputFormatError(f"cannot read the SavedModel's object metadata: {error}", file=metadata if metadata.exists() else folder / "saved_model.pb") from None


def _small(path: Path) -> bytes:
    size = path.stat().st_size
    if size > _MAX_METADATA_BYTES:
        raise InputFormatError("Keras metadata larger than any model's", file=path, actual=f"{size} bytes")
    return path.read_bytes()


def _saved_metadata(data: bytes) -> Iterator[KerasObject]:
    for node in fields(data, 0, len(data)):
        if node.number == 1 and node.wire == WIRE_LEN:
            values = _values(data, node)
            yield KerasObject(_text(values.get(3)), _text(values.get(4)), _text(values.get(5)))


def _user_objects(saved_model: Path) -> list[KerasObject]:
    """Keras objects of the first MetaGraph's ``SavedObjectGraph``, named by breadth-first paths from the root
    (the paths tf.keras writes into ``keras_metadata.pb``). The graph's functions are skipped, not read."""
    if regular_file(saved_model, "SavedModel").stat().st_size == 0:
        raise InputFormatError("file is empty", file=saved_model)
    with saved_model.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        graph = _object_graph_field(data)
        if graph is None:
            return []
        children: list[list[tuple[int, str]]] = []
        users: list[tuple[str, str] | None] = []
        for node in fields(data, graph.value_start, graph.end):
            if node.number != 1 or node.wire != WIRE_LEN:
                continue
            links: list[tuple[int, str]] = []
            user: tuple[str, str] | None = None
            for part in fields(data, node.value_start, node.end):
                if part.number == 1 and part.wire == WIRE_LEN:
                    values = _values(data, part)
                    child = values.get(1, 0)
                    links.append((child if isinstance(child, int) else 0, _text(values.get(2))))
                elif part.number == 4 and part.wire == WIRE_LEN:
                    values = _values(data, part)
                    user = (_text(values.get(1)), _text(values.get(3)))
            children.append(links)
            users.append(user)
    paths: dict[int, str] = {0: "root"} if children else {}
    queue = deque([0] if children else [])
    while queue:
        current = queue.popleft()
        for child, local_name in children[current]:
            if 0 <= child < len(children) and child not in paths and paths[current].count(".") < _MAX_DEPTH:
                paths[child] = f"{paths[current]}.{local_name}"
                queue.append(child)
    return [KerasObject(paths[i], *user) for i, user in enumerate(users) if user is not None and i in paths]


def _object_graph_field(data: mmap.mmap) -> Field | None:
    for meta_graph in fields(data, 0, len(data)):
        if meta_graph.number == 2 and meta_graph.wire == WIRE_LEN:
            for part in fields(data, meta_graph.value_start, meta_graph.end):
                if part.number == 7 and part.wire == WIRE_LEN:
                    return part
            return None
    return None
