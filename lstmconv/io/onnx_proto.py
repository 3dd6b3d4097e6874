"""ONNX's protobuf messages and the few helpers lstmconv needs, without importing the ``onnx`` package.

The messages (``ModelProto``, ``NodeProto``, ``TensorProto``...) are the onnx package's own generated module,
``onnx/onnx_ml_pb2.py``, which needs only protobuf. Importing ``onnx`` itself also imports ``ml_dtypes`` for
float8 and 4-bit types (0.8 s of start-up with ml_dtypes 0.7), which lstmconv never writes. Once ``onnx`` is
imported its module is used, and protobuf gives both the same classes. The helpers below do what ``onnx.helper``
and ``onnx.numpy_helper`` do for the element types lstmconv reads and writes; any other element type is decoded by
``onnx.numpy_helper`` itself.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "messages",
    "ELEMENT_TYPES",
    "element_type",
    "numpy_dtype",
    "to_array",
    "from_array",
    "attribute_value",
    "make_node",
    "make_value_info",
    "uses_external_data",
]


@cache
def messages() -> ModuleType:
    """The module of ONNX's protobuf messages (``onnx.onnx_ml_pb2``)."""
    if "onnx" in sys.modules:
        import onnx.onnx_ml_pb2

        return onnx.onnx_ml_pb2
    spec = importlib.util.find_spec("onnx")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the onnx package is not installed (pip install onnx)")
    path = Path(next(iter(spec.submodule_search_locations))) / "onnx_ml_pb2.py"
    module_spec = importlib.util.spec_from_file_location("lstmconv._onnx_ml_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def __getattr__(name: str) -> Any:
    """``onnx_proto.ModelProto`` and the other messages, loaded on first use."""
    if name.endswith("Proto"):
        return getattr(messages(), name)
    raise AttributeError(name)


#: TensorProto element type -> NumPy dtype (little-endian), for the types stored as plain numbers
ELEMENT_TYPES: dict[int, np.dtype] = {
    code: np.dtype(name).newbyteorder("<")
    for code, name in (
        (1, "float32"), (2, "uint8"), (3, "int8"), (4, "uint16"), (5, "int16"), (6, "int32"), (7, "int64"),
        (9, "bool"), (10, "float16"), (11, "float64"), (12, "uint32"), (13, "uint64"),
    )
}
_CODE = {dtype.newbyteorder("="): code for code, dtype in ELEMENT_TYPES.items()}
# where a TensorProto without raw_data keeps each type's values (onnx.proto3's comments on the fields)
_INT32_FIELD = {2, 3, 4, 5, 6, 9, 10}


def element_type(dtype: np.dtype | str) -> int:
    """The TensorProto element type of a NumPy dtype."""
    return _CODE[np.dtype(dtype).newbyteorder("=")]


def numpy_dtype(code: int) -> np.dtype:
    """The NumPy dtype of a TensorProto element type (``onnx.helper``'s, for types lstmconv does not store)."""
    if code in ELEMENT_TYPES:
        return ELEMENT_TYPES[code].newbyteorder("=")
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(code))


def to_array(tensor: Any) -> np.ndarray:
    """A TensorProto held in the message (not external data) as an array, as ``onnx.numpy_helper.to_array``."""
    dtype = ELEMENT_TYPES.get(tensor.data_type)
    if dtype is None or tensor.data_type == 10 and not tensor.raw_data:  # float16 bits in int32_data: onnx's way
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)
    shape = tuple(tensor.dims)
    if tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if tensor.data_type == 1:
        values: Sequence[Any] = tensor.float_data
    elif tensor.data_type == 11:
        values = tensor.double_data
    elif tensor.data_type == 7:
        values = tensor.int64_data
    elif tensor.data_type in (12, 13):
        values = tensor.uint64_data
    else:
        assert tensor.data_type in _INT32_FIELD
        values = tensor.int32_data
    return np.asarray(values, dtype=dtype.newbyteorder("=")).reshape(shape)


def from_array(array: np.ndarray, name: str) -> Any:
    """A TensorProto holding ``array`` as raw little-endian data (``onnx.numpy_helper.from_array``)."""
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return messages().TensorProto(name=name, dims=data.shape, data_type=element_type(data.dtype), raw_data=data.tobytes())


def uses_external_data(tensor: Any) -> bool:
    return tensor.HasField("data_location") and tensor.data_location == messages().TensorProto.EXTERNAL


def attribute_value(attribute: Any) -> Any:
    """An AttributeProto's value (``onnx.helper.get_attribute_value``)."""
    kind = messages().AttributeProto
    field = {
        kind.FLOAT: "f", kind.INT: "i", kind.STRING: "s", kind.TENSOR: "t", kind.GRAPH: "g",
        kind.FLOATS: "floats", kind.INTS: "ints", kind.STRINGS: "strings", kind.TENSORS: "tensors",
        kind.GRAPHS: "graphs", kind.SPARSE_TENSOR: "sparse_tensor", kind.SPARSE_TENSORS: "sparse_tensors",
        kind.TYPE_PROTO: "tp", kind.TYPE_PROTOS: "type_protos",
    }.get(attribute.type)
    if field is None:
        raise ValueError(f"attribute {attribute.name} has no value of a known type ({attribute.type})")
    value = getattr(attribute, field)
    return list(value) if field in _REPEATED else value


_REPEATED = {"floats", "ints", "strings", "tensors", "graphs", "sparse_tensors", "type_protos"}


def _attribute(name: str, value: Any) -> Any:
    """An AttributeProto (``onnx.helper.make_attribute`` for numbers, strings, tensors and lists of them)."""
    kind = messages().AttributeProto
    attribute = kind(name=name)
    if isinstance(value, (bool, int, np.integer)):
        attribute.i, attribute.type = int(value), kind.INT
    elif isinstance(value, (float, np.floating)):
        attribute.f, attribute.type = float(value), kind.FLOAT
    elif isinstance(value, (str, bytes)):
        attribute.s, attribute.type = value.encode() if isinstance(value, str) else value, kind.STRING
    elif isinstance(value, messages().TensorProto):
        attribute.t.CopyFrom(value)
        attribute.type = kind.TENSOR
    else:
        items = list(value)
        if all(isinstance(item, (bool, int, np.integer)) for item in items):
            attribute.ints.extend(int(item) for item in items)
            attribute.type = kind.INTS
        elif all(isinstance(item, (bool, int, float, np.integer, np.floating)) for item in items):
            attribute.floats.extend(float(item) for item in items)
            attribute.type = kind.FLOATS
        elif all(isinstance(item, (str, bytes)) for item in items):
            attribute.strings.extend(item.encode() if isinstance(item, str) else item for item in items)
            attribute.type = kind.STRINGS
        else:
            raise TypeError(f"attribute {name}: no ONNX attribute type for {items!r}")
    return attribute


def make_node(op_type: str, inputs: Iterable[str], outputs: Iterable[str], *, name: str = "", **attributes: Any) -> Any:
    """A NodeProto; attributes in name order, those given as None left out (``onnx.helper.make_node``)."""
    node = messages().NodeProto(op_type=op_type, input=list(inputs), output=list(outputs), name=name)
    node.attribute.extend(_attribute(key, value) for key, value in sorted(attributes.items()) if value is not None)
    return node


def make_value_info(name: str, element: int, dims: Sequence[int | str] | None) -> Any:
    """A ValueInfoProto of a tensor; a str dimension is symbolic (``onnx.helper.make_tensor_value_info``)."""
    info = messages().ValueInfoProto(name=name)
    tensor_type = info.type.tensor_type
    tensor_type.elem_type = element
    if dims is not None:
        tensor_type.shape.SetInParent()
        for dim in dims:
            entry = tensor_type.shape.dim.add()
            if isinstance(dim, str):
                entry.dim_param = dim
            else:
                entry.dim_value = int(dim)
    return info
