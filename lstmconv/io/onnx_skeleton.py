"""Parse an ``.onnx`` file without its large tensors' bytes: they stay in the file until a layer needs them.

``onnx.load`` holds the whole file twice at its peak (the bytes read and the parsed message), 2.3 GiB for a
1.1 GiB model, before lstmconv has converted anything. Instead, the file is mapped read-only and its
protobuf fields are walked (:mod:`lstmconv.io.protobuf_wire`) along the paths where tensors live::

    ModelProto.graph (7) -> GraphProto.initializer (5)                      -> TensorProto
                            GraphProto.node (1) -> NodeProto.attribute (5) -> AttributeProto.t (5) / tensors (10)
                                                                            -> AttributeProto.g (6) / graphs (11)
                                                                               -> GraphProto (again)

Every ``TensorProto.raw_data`` (field 9) of at least :data:`INLINE_BYTES` is left out of the copy that is
parsed, and the tensor is marked as ONNX external data pointing into the same file
(``data_location = EXTERNAL``; ``location``, ``offset`` and ``length`` entries, the ONNX external-data
convention), so the reader fetches it like any external tensor, one at a time. Everything else is copied
as it is. Tensors stored another way (``float_data``, already external) are untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx

from lstmconv.errors import InputFormatError
from lstmconv.io.protobuf_wire import WIRE_LEN, WIRE_VARINT, WireFormatError, fields, key, read_varint, varint

__all__ = ["read_skeleton", "INLINE_BYTES"]

INLINE_BYTES = 4096  # smaller tensors stay in the parsed message (reading them later would cost more than they do)

# message -> {field number: the message type of that field}, for the fields on the way to a tensor
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph"},
    "graph": {1: "node", 5: "tensor"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph"},
}
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_MAX_DEPTH = 200  # messages (If/Loop bodies inside bodies...); a hostile file must not exhaust the stack


def read_skeleton(path: Path, inline_bytes: int | None = None) -> onnx.ModelProto:
    """The model in ``path`` with every embedded tensor of at least ``inline_bytes`` (default
    :data:`INLINE_BYTES`) turned into a reference to its bytes in ``path``."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size == 0:
                raise InputFormatError("file is empty", file=path)
            # read with pread, not a memory map: a file cut short while it is read is then an error, not SIGBUS
            data = _FileBytes(handle.fileno(), size)
            # the reader resolves external data against the real file's folder: name the real file (a symlink's
            # own name would not be found there)
            location = path.resolve().name
            threshold = INLINE_BYTES if inline_bytes is None else inline_bytes
            skeleton = _Rewriter(data, location, threshold).message("model", 0, size, 0)
    except WireFormatError as error:
        raise InputFormatError(f"cannot parse as an ONNX model: {error}", file=path) from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(skeleton)
    except Exception as error:  # protobuf DecodeError and friends
        raise InputFormatError(f"cannot parse as an ONNX model: {type(error).__name__}: {error}", file=path) from None
    return model


class _FileBytes:
    """The bytes of an open file, indexed and sliced like ``bytes``, read a page at a time with ``pread``."""

    _PAGE = 1 << 16

    def __init__(self, descriptor: int, size: int) -> None:
        self.descriptor, self.size = descriptor, size
        self.page_start, self.page = -1, b""

    def __len__(self) -> int:
        return self.size

    def _read(self, start: int, length: int) -> bytes:
        data = os.pread(self.descriptor, length, start)
        if len(data) < min(length, self.size - start):
            raise WireFormatError("the file ended while it was being read (it was cut short meanwhile)")
        return data

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.size)
            return self._read(start, max(0, stop - start))
        if not 0 <= index < self.size:
            raise IndexError(index)
        if not self.page_start <= index < self.page_start + len(self.page):
            self.page_start = index - index % self._PAGE
            self.page = self._read(self.page_start, min(self._PAGE, self.size - self.page_start))
        return self.page[index - self.page_start]


class _Rewriter:
    def __init__(self, data: _FileBytes, location: str, inline_bytes: int) -> None:
        self.data = data
        self.location = location
        self.inline_bytes = inline_bytes

    def message(self, kind: str, start: int, end: int, depth: int) -> bytes:
        """The message at ``data[start:end]`` with the large tensors inside it left out."""
        if depth > _MAX_DEPTH:
            raise WireFormatError(f"graphs nested more than {_MAX_DEPTH} messages deep")
        if kind == "tensor":
            return self.tensor(start, end)
        children = _CHILDREN[kind]
        out = bytearray()
        for field in fields(self.data, start, end):
            child = children.get(field.number)
            if child is None or field.wire != WIRE_LEN:
                out += self.data[field.start : field.end]
                continue
            body = self.message(child, field.value_start, field.end, depth + 1)
            out += key(field.number) + varint(len(body)) + body
        return bytes(out)

    def tensor(self, start: int, end: int) -> bytes:
        kept = bytearray()
        raw: tuple[int, int] | None = None
        location = 0  # TensorProto.DataLocation, as protobuf decodes it: the last occurrence, any varint spelling
        for field in fields(self.data, start, end):
            if field.number == _TENSOR_RAW_DATA and field.wire == WIRE_LEN:
                raw = (field.value_start, field.end)
                continue
            if field.number == _TENSOR_DATA_LOCATION and field.wire == WIRE_VARINT:
                location = read_varint(self.data, field.value_start, field.end)[0] & 0xFFFFFFFF  # an int32 enum
            kept += self.data[field.start : field.end]
        if raw is not None and location == _EXTERNAL:
            # onnxruntime reads the external bytes, a reader that missed the location the inline ones: never guess
            raise WireFormatError("a tensor holds its bytes inline and also says they are in an external file")
        if raw is None or location == _EXTERNAL or raw[1] - raw[0] < self.inline_bytes:
            return bytes(self.data[start:end])
        offset, stop = raw
        for name, value in (("location", self.location), ("offset", str(offset)), ("length", str(stop - offset))):
            entry = _string(_ENTRY_KEY, name) + _string(_ENTRY_VALUE, value)
            kept += key(_TENSOR_EXTERNAL_DATA) + varint(len(entry)) + entry
        kept += key(_TENSOR_DATA_LOCATION, WIRE_VARINT) + varint(_EXTERNAL)
        return bytes(kept)


def _string(number: int, text: str) -> bytes:
    encoded = text.encode()
    return key(number) + varint(len(encoded)) + encoded
