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
(:class:`~lstmconv.io.checked_file.CheckedFile`).

Protobuf caps a message at 2 GiB, so larger models cannot be one ``.onnx`` file; they are refused before
anything is written past the limit, unless the weights go to **external data** (the ONNX convention,
``onnx/docs/ExternalData.md``): each streamed tensor's bytes are appended to a data file beside the model and
the tensor written in the model only names them (``data_location = EXTERNAL``, with ``location``, ``offset``
and ``length`` entries), in the same framing as above. As ``onnx`` and onnxruntime do when they save external
data, a tensor over 1 MiB starts at a multiple of 64 KiB, so that onnxruntime can map it from the file on any
system (its ``OffsetAlignmentInfo``: ``align_threshold`` 1 MiB, ``allocation_granularity`` 64 KiB).
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from lstmconv.errors import UnsupportedFeatureError, VerificationError
from lstmconv.io import onnx_proto
from lstmconv.io.checked_file import CheckedFile
from lstmconv.io.onnx_proto import element_type
from lstmconv.io.protobuf_wire import WIRE_LEN, WireFormatError, fields, key, varint

__all__ = ["OnnxStream", "PROTOBUF_LIMIT", "count_graph_fields"]

PROTOBUF_LIMIT = 2**31 - 1  # bytes in one protobuf message (the whole .onnx file)
_ALIGN_ABOVE = 1 << 20  # external tensors larger than this start at a multiple of _ALIGNMENT
_ALIGNMENT = 64 << 10

# field numbers in onnx.proto
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9


def external_data_path(model: Path) -> Path:
    """Where the external data of ONNX ``model`` goes: ``<model file name>.data`` beside it (torch.onnx's name)."""
    return model.with_name(model.name + ".data")



class OnnxStream:
    """Append initializers to ``path``; :meth:`finish` writes the rest of the model after them. With
    ``data_path``, their bytes go there instead, as external data the model finds under the name ``location``
    (the data file's final name, relative to the model's folder). Errors name ``path``: when it is a temporary
    file, :func:`lstmconv.io.atomic.write_atomically` renames it to the destination in the message."""

    def __init__(self, path: Path, data_path: Path | None = None, *, location: str = "") -> None:
        if (data_path is None) != (not location):
            raise ValueError("external data needs both a data file and its location")
        self.file = CheckedFile(path)
        self.data = CheckedFile(data_path) if data_path is not None else None
        self.location = location
        self.written: list[str] = []  # initializer names, in file order

    def add(self, name: str, array: np.ndarray) -> None:
        """Write ``array`` as the initializer ``name`` (raw little-endian data, read back as written)."""
        if name in self.written:
            raise ValueError(f"duplicate initializer {name}")
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        header = onnx_proto.TensorProto(name=name, dims=data.shape, data_type=element_type(data.dtype))
        if self.data is None:
            tensor = header.SerializeToString() + key(_TENSOR_RAW_DATA) + varint(data.nbytes)
            inline = data.nbytes
        else:
            offset = self._append_external(data, name)
            # what onnx.external_data_helper.set_external_data writes (it wants the raw data in the message)
            header.data_location = onnx_proto.TensorProto.EXTERNAL
            for entry, value in (("location", self.location), ("offset", offset), ("length", data.nbytes)):
                header.external_data.add(key=entry, value=str(value))
            tensor = header.SerializeToString()
            inline = 0
        tensor_size = len(tensor) + inline
        initializer = key(_GRAPH_INITIALIZER) + varint(tensor_size)
        framing = key(_MODEL_GRAPH) + varint(len(initializer) + tensor_size) + initializer + tensor
        self._refuse_beyond_limit(len(framing) + inline, name)
        self.file.append(framing, tensor=name)
        if inline:
            self.file.append(data, tensor=name)
        self.written.append(name)

    def _append_external(self, data: np.ndarray, name: str) -> int:
        """Append ``data`` to the data file (aligned when large) and return its offset there."""
        assert self.data is not None
        padding = -self.data.position % _ALIGNMENT if data.nbytes > _ALIGN_ABOVE else 0
        if padding:
            self.data.append(bytes(padding), tensor=name)
        return self.data.append(data, tensor=name)

    @property
    def data_size(self) -> int:
        """Bytes written to the data file (0 without external data)."""
        return self.data.position if self.data is not None else 0

    def flush_behind(self) -> None:
        """Start flushing the tensors written so far to disk in the background."""
        (self.data if self.data is not None else self.file).flush_behind()  # the model's part is small

    def finish(self, rest: onnx_proto.ModelProto) -> None:
        """Write ``rest`` (the model without the streamed tensors) after them, flush and close (the data file
        first: the model is complete only once what it refers to is)."""
        serialized = rest.SerializeToString()
        self._refuse_beyond_limit(len(serialized), "the graph")
        if self.data is not None:
            self.data.close()
        self.file.append(serialized, tensor="the graph")
        self.file.close()

    def _refuse_beyond_limit(self, size: int, what: str) -> None:
        if self.file.position + size > PROTOBUF_LIMIT:
            raise UnsupportedFeatureError(
                f"the model does not fit in one .onnx file: protobuf caps a model at 2 GiB and {what} would end at "
                f"{(self.file.position + size) / 2**30:.2f} GiB",
                file=self.file.path,
                hint=f"pass --external-data (external_data=True) to write the weights to {external_data_path(self.file.path)} "
                "beside the model, or convert to torch or canonical .safetensors (no size limit)",
            )

    def abort(self) -> None:
        """Close unfinished (the caller removes the files)."""
        try:
            self.file.abort()
        finally:
            if self.data is not None:
                self.data.abort()


def count_graph_fields(path: Path) -> int:
    """How many ``ModelProto.graph`` fields ``path`` holds, walking its top-level fields without reading their
    contents; raises VerificationError unless the fields tile the file exactly."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            return sum(field.number == _MODEL_GRAPH and field.wire == WIRE_LEN for field in fields(data, 0, len(data)))
        except WireFormatError as error:
            raise VerificationError(f"the written file is not one protobuf message: {error}", file=path) from None
