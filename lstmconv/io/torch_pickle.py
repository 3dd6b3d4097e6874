"""Read a ``torch.save`` zip archive without torch and without running anything in it.

An archive (every ``torch.save`` since PyTorch 1.6) holds ``<name>/data.pkl``, a pickle of the saved object, and
one record ``<name>/data/<key>`` per storage, its raw bytes in the order ``<name>/byteorder`` says. The pickle
is read by an unpickler that knows torch's own tensor rebuilding (``torch._utils._rebuild_tensor_v2``,
``_rebuild_parameter``..., the ``torch.*Storage`` types) and turns every other class into an inert record
that keeps its arguments and state and runs nothing: no ``__reduce__`` of any other callable, no import. A
whole-module pickle (``torch.save(model)``) then becomes a tree of records whose ``_parameters``, ``_buffers``
and ``_modules`` give the state dict torch would build, with each module's own attributes (an ``nn.RNN``'s
``nonlinearity``, ``batch_first``). A tensor is read from its record, found by name as torch finds it, when
its layer is built.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.io.reading import read_into

__all__ = ["StoredTensor", "PickledModule", "TorchArchive", "open_archive", "is_torch_archive", "expanded_tensor_error"]

#: Storage classes of the pickle -> the element type of their records (bfloat16 is read as its bits).
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}
_MAX_PICKLE_BYTES = 256 << 20  # a state dict's pickle is small: its tensors' bytes are in the records


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as the pickle describes it: which record holds its storage, and how it views it."""

    record: str
    dtype: str  # a _STORAGE_DTYPES value
    storage_elements: int
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def unread(self) -> bool:
        """A dtype NumPy cannot hold (float8...): refused by name when the tensor is read."""
        return self.dtype not in _STORAGE_DTYPES.values()

    @property
    def elements(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass
class PickledModule:
    """A class instance the pickle holds, inert: its class path, call arguments and state."""

    kind: str  # "module.Class"
    args: tuple[Any, ...] = ()
    state: Any = None
    items: list[Any] = field(default_factory=list)

    def __setstate__(self, state: Any) -> None:  # BUILD
        self.state = state

    def append(self, item: Any) -> None:  # APPEND(S) on an instance of a list subclass
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEM(S) on a dict subclass
        self.items.append((key, value))


class _Storage:
    def __init__(self, record: str, dtype: str, elements: int) -> None:
        self.record, self.dtype, self.elements = record, dtype, elements


class _StorageType:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> StoredTensor:
    if not isinstance(storage, _Storage):
        raise _Refused("a tensor whose storage is not one of the archive's records")
    return StoredTensor(storage.record, storage.dtype, storage.elements, int(offset), tuple(map(int, size)), tuple(map(int, stride)))


class _DType:
    def __init__(self, name: str) -> None:
        self.name = name


#: torch dtype names (``torch.float32``...) -> the element types above
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64", "float16": "float16",
    "half": "float16", "bfloat16": "bfloat16", "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
}


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, *rest: Any) -> StoredTensor:
    """torch's rebuilding of a tensor over an untyped storage (bytes) with its own dtype."""
    if not isinstance(storage, _Storage) or not isinstance(dtype, _DType):
        raise _Refused("a tensor whose storage is not one of the archive's records")
    element = _TORCH_DTYPES.get(dtype.name, dtype.name)
    itemsize = np.dtype(np.uint16 if element == "bfloat16" else element).itemsize if element in _TORCH_DTYPES.values() else 1
    storage = _Storage(storage.record, element, storage.elements // itemsize)
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


def _rebuild_from_type(function: Any, new_type: Any, args: Any, state: Any) -> Any:
    if function not in (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter):
        raise _Refused("a tensor subclass rebuilt by something else than torch's tensor rebuilding")
    return function(*args)


class _Refused(Exception):
    """What the pickle holds is not something lstmconv reads (the message says what)."""


_CALLABLES: dict[str, Any] = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    "collections.OrderedDict": collections.OrderedDict,
    "torch.Size": tuple,
    "builtins.set": set, "__builtin__.set": set, "builtins.frozenset": frozenset,
}
_NAMED_REFUSALS = {
    "torch._utils._rebuild_qtensor": "a quantized tensor (lstmconv reads float weights)",
    "torch._utils._rebuild_sparse_tensor": "a sparse tensor (lstmconv reads dense weights)",
    "torch._utils._rebuild_sparse_csr_tensor": "a sparse tensor (lstmconv reads dense weights)",
    "torch._utils._rebuild_nested_tensor": "a nested tensor",
    "torch._utils._rebuild_meta_tensor_no_storage": "a tensor with no data",
    "torch._utils._rebuild_wrapper_subclass": "a tensor subclass",
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:  # every GLOBAL, STACK_GLOBAL, INST, OBJ and EXT ends here
        path = f"{module}.{name}"
        if path in _CALLABLES:
            return _CALLABLES[path]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module in ("torch", "torch.storage") and name == "UntypedStorage":  # bytes; the tensor says its dtype (v3)
            return _StorageType("uint8")
        if module == "torch" and name.endswith("Storage"):  # float8, complex...: named when the tensor is read
            return _StorageType(name.removesuffix("Storage").lower())
        if module == "torch" and name[:1].islower():  # a dtype: torch.float8_e4m3fn...
            return _DType(name)
        if path in _NAMED_REFUSALS:
            raise _Refused(_NAMED_REFUSALS[path])
        if module == "torch._utils" and name.startswith("_rebuild"):
            raise _Refused(f"a tensor rebuilt by {path}")
        return self._inert(path)

    def _inert(self, path: str) -> type:
        """A stand-in class: calling it (REDUCE) or creating it (NEWOBJ) records the arguments, nothing else."""
        if path not in self.classes:

            def new(cls: type, *args: Any, **kwargs: Any) -> PickledModule:
                return PickledModule(path, args)

            self.classes[path] = type(path, (), {"__new__": new, "__reduce__": None})
        return self.classes[path]

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
            raise _Refused("a persistent reference that is not a tensor storage")
        _, storage_type, key, _location, elements = pid[:5]
        return _Storage(f"{self.archive}/data/{key}", storage_type.dtype, int(elements))


@dataclass
class TorchArchive:
    """What a ``torch.save`` archive holds, read without torch: a state dict's tensors (``<prefix>.<name>``), the
    facts a whole-module pickle gives about each module, and a reader of one tensor."""

    path: Path
    tensors: dict[str, StoredTensor]
    modules: dict[str, dict[str, Any]]  # module prefix -> its class ('class') and plain attributes
    notes: list[str]
    big_endian: bool
    records: dict[str, tuple[int, int]]  # record name -> (data offset in the file, size)

    def read(self, key: str, stream: Any) -> np.ndarray:
        """Tensor ``key`` as a NumPy array of its own (bfloat16 widened to float32, exactly)."""
        tensor = self.tensors[key]
        stored = np.dtype(np.uint16 if tensor.dtype == "bfloat16" else tensor.dtype).newbyteorder(">" if self.big_endian else "<")
        start, size = self.records[tensor.record]
        span = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride)) + 1 if tensor.elements else 0
        buffer = np.empty(span, dtype=stored)
        if span and not read_into(stream, buffer, start + tensor.offset * stored.itemsize):
            raise InputFormatError("the file ends inside this tensor", file=self.path, tensor=key)
        strides = tuple(s * stored.itemsize for s in tensor.stride)
        view = np.lib.stride_tricks.as_strided(buffer, tensor.shape, strides, writeable=False) if span else buffer.reshape(tensor.shape)
        native = view.astype(stored.newbyteorder("="))
        if tensor.dtype == "bfloat16":  # the top half of a float32: widening is a shift
            return (native.astype(np.uint32) << 16).view(np.float32)
        return np.ascontiguousarray(native)


def is_torch_archive(path: Path) -> bool:
    """A zip whose members include ``<name>/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def open_archive(path: Path) -> TorchArchive:
    """Read the archive's directory and its pickle; nothing in it is run (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputFormatError(f"cannot read as a torch zip archive: {error}", file=path) from None
    with archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise InputFormatError("a torch archive holds one data.pkl", file=path, actual=len(pickles))
        prefix = pickles[0].rpartition("/")[0]
        info = archive.getinfo(pickles[0])
        if info.file_size > _MAX_PICKLE_BYTES:
            raise InputFormatError("the archive's pickle is larger than any state dict's", file=path, actual=info.file_size)
        try:
            data = archive.read(pickles[0])
            byteorder = archive.read(f"{prefix}/byteorder").strip() if f"{prefix}/byteorder" in archive.namelist() else b"little"
            records = _records(path, archive)
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as error:  # names that differ, a bad CRC...
            raise InputFormatError(f"damaged torch zip archive: {error}", file=path) from None
    try:
        loaded = _Unpickler(data, prefix).load()
    except _Refused as refused:
        raise UnsupportedFeatureError(f"the pickle holds {refused}", file=path) from None
    except RecursionError:
        raise InputFormatError("the pickle is nested too deeply", file=path) from None
    except Exception as error:  # a malformed pickle: EOFError, UnpicklingError, IndexError, TypeError...
        raise InputFormatError(f"cannot read the pickle: {type(error).__name__}: {error}", file=path) from None
    tensors, modules, notes = _state_of(path, loaded)
    for key, tensor in tensors.items():
        _check_tensor(path, key, tensor, records)
    return TorchArchive(path, tensors, modules, notes, byteorder == b"big", records)


def _records(path: Path, archive: zipfile.ZipFile) -> dict[str, tuple[int, int]]:
    """Each stored record's data offset in the file and size, from the local headers the central directory
    points at (zipfile checks that their names agree)."""
    records: dict[str, tuple[int, int]] = {}
    with path.open("rb") as stream:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                continue  # a storage cannot be read from it: one that is placed there is refused
            stream.seek(info.header_offset)
            header = stream.read(30)
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise ValueError(f"no local header for {info.filename}")
            name_length = int.from_bytes(header[26:28], "little")
            extra_length = int.from_bytes(header[28:30], "little")
            name = stream.read(name_length)
            if name.decode("utf-8", "replace") != info.filename and name.decode("cp437", "replace") != info.filename:
                raise ValueError(f"the local header of {info.filename} names {name!r}")
            records[info.filename] = (info.header_offset + 30 + name_length + extra_length, info.file_size)
    return records


def _check_tensor(path: Path, key: str, tensor: StoredTensor, records: dict[str, tuple[int, int]]) -> None:
    if tensor.unread:
        return  # refused by name if it is read
    itemsize = np.dtype(np.uint16 if tensor.dtype == "bfloat16" else tensor.dtype).itemsize
    record = records.get(tensor.record)
    if record is None:
        raise InputFormatError("the tensor's storage has no stored record in the archive", file=path, tensor=key, expected=tensor.record)
    if record[1] != tensor.storage_elements * itemsize:
        raise InputFormatError(
            "the tensor's storage does not match its record in the zip archive", file=path, tensor=key,
            expected=f"{tensor.storage_elements * itemsize} bytes", actual=f"{record[1]} bytes",
        )
    span = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride)) + 1 if tensor.elements else 0
    if tensor.offset < 0 or any(s < 0 for s in tensor.stride) or tensor.offset + span > tensor.storage_elements:
        raise InputFormatError("the tensor reaches past its storage", file=path, tensor=key)
    if tensor.elements > tensor.storage_elements:
        raise expanded_tensor_error(path, key, tensor.elements * itemsize, tensor.storage_elements * itemsize)


def expanded_tensor_error(path: Path, key: str, needed: int, held: int) -> InputFormatError:
    """The refusal of a tensor that needs ``needed`` bytes from a storage of ``held`` (a stride-0 expansion,
    overlapping strides): a file of a few bytes could otherwise ask for gigabytes."""
    return InputFormatError(
        "the tensor repeats its storage's bytes (expanded or overlapping strides): converting it would take "
        "more memory than the file holds",
        file=path, tensor=key, expected=f"at most {held} bytes, what its storage holds", actual=f"{needed} bytes",
        hint="save the tensor materialised (tensor.contiguous()) if it is meant to be that large",
    )


def _state_of(path: Path, loaded: Any) -> tuple[dict[str, StoredTensor], dict[str, dict[str, Any]], list[str]]:
    """The state dict in what the pickle holds: a mapping of names to tensors (a checkpoint's
    ``state_dict``/``model_state_dict``/``model`` entry), or a module tree."""
    notes: list[str] = []
    if isinstance(loaded, dict) and not any(isinstance(v, StoredTensor) for v in loaded.values()):
        for entry in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(entry), (dict, PickledModule)):
                loaded = loaded[entry]
                notes.append(f"weights taken from the checkpoint's '{entry}' entry")
                break
    if isinstance(loaded, dict):
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, StoredTensor)}
        return tensors, {}, notes
    if isinstance(loaded, PickledModule) and _is_module(loaded):
        tensors: dict[str, StoredTensor] = {}
        modules: dict[str, dict[str, Any]] = {}
        _walk_module(loaded, "", tensors, modules, depth=0)
        notes.append(f"a whole {loaded.kind} module, read without running it (its parameters and buffers)")
        return tensors, modules, notes
    what = loaded.kind if isinstance(loaded, PickledModule) else type(loaded).__name__
    raise UnsupportedFeatureError(
        f"the pickle holds a {what}, not a torch module or a state dict of tensors", file=path,
        hint="save the model's state_dict() (torch.save(model.state_dict(), path)) or use .safetensors",
    )


def _is_module(record: PickledModule) -> bool:
    return isinstance(record.state, dict) and "_parameters" in record.state and "_modules" in record.state


_FACTS = ("mode", "nonlinearity", "batch_first", "bidirectional", "num_layers", "input_size", "hidden_size", "proj_size", "bias")


def _walk_module(record: PickledModule, prefix: str, tensors: dict[str, StoredTensor], modules: dict[str, dict[str, Any]], depth: int) -> None:
    if depth > 100:
        raise _Refused("modules nested more than 100 deep")
    state = record.state
    modules[prefix.rstrip(".")] = {"class": record.kind, **{k: state[k] for k in _FACTS if isinstance(state.get(k), (str, int, bool))}}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, StoredTensor) and name not in skip:
                tensors[f"{prefix}{name}"] = value
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PickledModule) and _is_module(child):
            _walk_module(child, f"{prefix}{name}.", tensors, modules, depth + 1)
