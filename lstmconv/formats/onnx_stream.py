"""Write an ``.onnx`` model tensor by tensor, holding no more than one layer's weights in memory.

An ONNX file is one serialized ``ModelProto``. Protobuf lets a message's fields come in any order, and a
parser merges repeated occurrences of a message field "as if with MergeFrom", appending repeated fields
(protobuf encoding guide, "Last One Wins" / merging). So the file is written as::

    graph { initializer { <tensor 1> } }     one ModelProto.graph field per large tensor, as it is converted
    graph { initializer { <tensor 2> } }
    ...
    <ModelProto: ir_version, opset, graph with its nodes, inputs, outputs and small tensors>

and ``onnx.load`` or onnxruntime read one model whose initializers are the streamed tensors followed by the
small ones. A tensor's header (name, dims, type) is serialized by the protobuf library; only the framing of
the fields (a key and a length each) is written here. Every piece is read back as written
(:class:`~lstmconv.formats.checked_file.CheckedFile`).

Protobuf caps a message at 2 GiB, so larger models cannot be one ``.onnx`` file; they are refused before
anything is written past the limit.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from lstmconv.errors import UnsupportedFeatureError, VerificationError
from lstmconv.formats.checked_file import CheckedFile
from lstmconv.formats.protobuf_wire import WIRE_LEN, WireFormatError, fields, key, varint

__all__ = ["OnnxStream", "PROTOBUF_LIMIT", "count_graph_fields"]

PROTOBUF_LIMIT = 2**31 - 1  # bytes in one protobuf message (the whole .onnx file)

# field numbers in onnx.proto
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9


class OnnxStream:
    """Append initializers to ``path``; :meth:`finish` writes the rest of the model after them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = CheckedFile(path)
        self.written: list[str] = []  # initializer names, in file order

    def add(self, name: str, array: np.ndarray) -> None:
        """Write ``array`` as the initializer ``name`` (raw little-endian data, read back as written)."""
        if name in self.written:
            raise ValueError(f"duplicate initializer {name}")
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        element = helper.np_dtype_to_tensor_dtype(data.dtype)
        header = TensorProto(name=name, dims=data.shape, data_type=element).SerializeToString()
        tensor = header + key(_TENSOR_RAW_DATA) + varint(data.nbytes)
        tensor_size = len(tensor) + data.nbytes
        initializer = key(_GRAPH_INITIALIZER) + varint(tensor_size)
        framing = key(_MODEL_GRAPH) + varint(len(initializer) + tensor_size) + initializer + tensor
        self._refuse_beyond_limit(len(framing) + data.nbytes, name)
        self.file.append(framing, tensor=name)
        self.file.append(data, tensor=name)
        self.written.append(name)

    def flush_behind(self) -> None:
        """Start flushing the tensors written so far to disk in the background."""
        self.file.flush_behind()

    def finish(self, rest: onnx.ModelProto) -> None:
        """Write ``rest`` (the model without the streamed tensors) after them, flush and close."""
        serialized = rest.SerializeToString()
        self._refuse_beyond_limit(len(serialized), "the graph")
        self.file.append(serialized, tensor="the graph")
        self.file.close()

    def _refuse_beyond_limit(self, size: int, what: str) -> None:
        if self.file.position + size > PROTOBUF_LIMIT:
            raise UnsupportedFeatureError(
                f"the model does not fit in one .onnx file: protobuf caps a model at 2 GiB and {what} would end at "
                f"{(self.file.position + size) / 2**30:.2f} GiB",
                file=self.path,
                hint="convert to torch or canonical .safetensors (no size limit); "
                "lstmconv does not write ONNX external data",
            )

    def abort(self) -> None:
        """Close unfinished (the caller removes the file)."""
        self.file.abort()


def count_graph_fields(path: Path) -> int:
    """How many ``ModelProto.graph`` fields ``path`` holds, walking its top-level fields without reading their
    contents; raises VerificationError unless the fields tile the file exactly."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            return sum(field.number == _MODEL_GRAPH and field.wire == WIRE_LEN for field in fields(data, 0, len(data)))
        except WireFormatError as error:
            raise VerificationError(f"the written file is not one protobuf message: {error}", file=path) from None
