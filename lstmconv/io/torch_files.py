"""Write (and read back) PyTorch weights: ``.safetensors`` (default) or a plain ``state_dict`` ``.pt``/``.pth``.

Keys are ``<layer>.<torch parameter name>`` (``lstm_1.weight_ih_l0``). A safetensors file carries the
canonical description of every layer in its header metadata under ``"lstmconv"`` (JSON), so the modules can
be rebuilt from the file alone. Writing ``.safetensors`` never imports torch; ``.pt`` needs torch.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv._fast import buffers
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.io.reading import read_into
from lstmconv.io.torch_pickle import TorchArchive, expanded_tensor_error, is_torch_archive, open_archive
from lstmconv.io.safetensors_stream import SAFETENSORS_DTYPES

__all__ = [
    "TORCH_SUFFIXES",
    "METADATA_KEY",
    "write_torch_file",
    "read_torch_file",
    "open_torch_state",
    "open_safetensors_state",
    "open_pt_state",
    "lstmconv_metadata",
]

TORCH_SUFFIXES = (".safetensors", ".pt", ".pth")
METADATA_KEY = "lstmconv"


def write_torch_file(path: Path, tensors: Mapping[str, np.ndarray], metadata: dict[str, object]) -> None:
    """Write ``tensors`` to ``path`` (format by suffix); ``metadata`` goes into the safetensors header."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        contiguous = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")) for k, v in tensors.items()}
        save_file(contiguous, str(path), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
        return
    torch = _import_torch(path)
    state = {k: torch.from_numpy(np.array(v, dtype=v.dtype.newbyteorder("="), order="C")) for k, v in tensors.items()}
    torch.save(state, str(path))


def read_torch_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object] | None]:
    """Read a file written by :func:`write_torch_file` (tensors as NumPy, and the lstmconv metadata)."""
    if path.suffix == ".safetensors":
        with open_safetensors_state(path) as (stand_ins, header, load):
            return {key: load(key) for key in stand_ins}, lstmconv_metadata(path, header)
    torch = _import_torch(path)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in state.items()}, None


@contextlib.contextmanager
def open_safetensors_state(
    path: Path,
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, str], Callable[[str], np.ndarray]]]:
    """A ``.safetensors`` file without reading its tensors: for each key a stand-in array of the tensor's shape
    and dtype that takes no memory, the header's ``__metadata__`` (text), and a function reading one tensor
    (valid inside the ``with`` block).

    The safetensors library checks the header (offsets inside the file, back to back); tensors are then read
    with ``pread`` straight into their arrays rather than through the library's map of the whole file, whose
    pages would stay counted in the process's memory until the file is closed.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = dict(handle.metadata() or {})
            stand_ins = {key: _stand_in(handle.get_slice(key)) for key in handle.keys()}  # noqa: SIM118 - not a dict
        with path.open("rb") as stream:
            (header_size,) = struct.unpack("<Q", stream.read(8))
            offsets = {k: v["data_offsets"] for k, v in json.loads(stream.read(header_size)).items() if k != "__metadata__"}
    except (SafetensorError, OSError, ValueError, KeyError, struct.error) as error:
        raise InputFormatError(f"cannot read safetensors file: {error}", file=path) from None
    data_start = 8 + header_size

    with path.open("rb") as stream:

        def load(key: str) -> np.ndarray:
            stand_in = stand_ins[key]
            if stand_in.dtype == _UNREAD:  # a dtype NumPy lacks (bfloat16...): the library says what it cannot do
                try:
                    with safe_open(str(path), framework="numpy") as handle:
                        return handle.get_tensor(key)
                except (SafetensorError, OSError, TypeError) as error:
                    raise InputFormatError(f"cannot read tensor: {error}", file=path, tensor=key) from None
            start, end = offsets[key]
            array = buffers.empty(stand_in.shape, stand_in.dtype.newbyteorder("<"))
            if end - start != array.nbytes:  # the library checks this too; a wrong size must never be read
                raise InputFormatError(
                    "tensor size does not match its shape", file=path, tensor=key, expected=array.nbytes, actual=end - start
                )
            if not read_into(stream, array, data_start + start):
                raise InputFormatError("the file ends inside this tensor", file=path, tensor=key)
            return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))

        yield stand_ins, header, load


def lstmconv_metadata(path: Path, header: Mapping[str, str]) -> dict[str, object] | None:
    """The layer descriptions lstmconv wrote into a torch file's header (None if another tool wrote it)."""
    raw = header.get(METADATA_KEY)
    try:
        return json.loads(raw) if raw else None
    except ValueError as error:
        raise InputFormatError(f"lstmconv's metadata in the header is not JSON: {error}", file=path) from None


_NUMPY_DTYPES = {code: np.dtype(name) for name, code in SAFETENSORS_DTYPES.items()}
_UNREAD = np.dtype([("unread", "u1")])  # the stand-in dtype of tensors NumPy cannot hold


def _stand_in(view: object) -> np.ndarray:
    """An array of the tensor's shape and dtype that holds one element (a read-only broadcast)."""
    dtype = _NUMPY_DTYPES.get(view.get_dtype(), _UNREAD)  # type: ignore[attr-defined]
    return np.broadcast_to(np.zeros((), dtype), tuple(view.get_shape()))  # type: ignore[attr-defined]


def _import_torch(path: Path):  # type: ignore[no-untyped-def]
    try:
        import torch
    except ImportError:
        raise UnsupportedFeatureError(
            f"writing or reading {path.suffix} files needs PyTorch, which is not installed",
            file=path,
            hint="write .safetensors instead (no torch needed), or pip install torch",
        ) from None
    return torch


@contextlib.contextmanager
def open_torch_state(
    path: Path,
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, object] | None, list[str], Callable[[str], np.ndarray]]]:
    """A torch ``state_dict`` file (``.safetensors``, or a ``.pt``/``.pth`` read without running anything in it)
    without reading its tensors: stand-ins of each tensor's shape and dtype, metadata (lstmconv's when lstmconv
    wrote the file; ``pickled_modules``, each module's class and attributes, for a whole-module pickle), notes
    (weights taken from a checkpoint's entry, dtypes widened), and a function reading one tensor (valid inside
    the ``with`` block). See :func:`open_safetensors_state` and :func:`open_pt_state`."""
    if path.suffix == ".safetensors":
        with open_safetensors_state(path) as (stand_ins, header, load):
            yield stand_ins, lstmconv_metadata(path, header), [], load
        return
    archive = open_archive(path) if is_torch_archive(path) else None
    with open_pt_state(path, archive) as (stand_ins, notes, load):
        modules = archive.modules if archive is not None else {}  # what a whole-module pickle says of each module
        yield stand_ins, {"pickled_modules": modules} if modules else None, notes, load


@contextlib.contextmanager
def _archive_state(archive: TorchArchive) -> Iterator[tuple[dict[str, np.ndarray], list[str], Callable[[str], np.ndarray]]]:
    """Stand-ins, notes and a tensor reader for an archive read by :mod:`lstmconv.io.torch_pickle`."""
    stand_ins: dict[str, np.ndarray] = {}
    notes = list(archive.notes)
    for key, tensor in archive.tensors.items():
        if tensor.dtype == "bfloat16":
            notes.append(f"{key}: bfloat16 widened to float32 (exact)")
        dtype = np.dtype(np.float32) if tensor.dtype == "bfloat16" else _UNREAD if tensor.unread else np.dtype(tensor.dtype)
        stand_ins[key] = np.broadcast_to(np.zeros((), dtype), tensor.shape)
    with archive.path.open("rb") as stream:

        def load(key: str) -> np.ndarray:
            if archive.tensors[key].unread:
                raise _unreadable(archive.path, key, archive.tensors[key].dtype)
            return archive.read(key, stream)

        yield stand_ins, notes, load


@contextlib.contextmanager
def open_pt_state(
    path: Path, archive: TorchArchive | None = None
) -> Iterator[tuple[dict[str, np.ndarray], list[str], Callable[[str], np.ndarray]]]:
    """A ``.pt``/``.pth`` ``state_dict``: stand-ins of each tensor's shape and dtype (NumPy's; bfloat16 is widened
    to float32, exactly), notes, and a function reading one tensor into an array of its own (valid inside the
    ``with`` block).

    A zip archive (every ``torch.save`` since PyTorch 1.6) is read without torch (:mod:`lstmconv.formats.
    torch_pickle`): its pickle by an unpickler that runs nothing, each tensor from its record found by name, when
    its module is built (``archive``: the archive already read, if it is one). A legacy (pre-1.6) pickle is
    loaded whole by ``torch.load(weights_only=True)``.
    """
    if archive is None and is_torch_archive(path):
        archive = open_archive(path)
    if archive is not None:
        with _archive_state(archive) as state:
            yield state
        return
    torch = _import_torch(path)
    tensors, notes = _load_pt(torch, path)
    stand_ins: dict[str, np.ndarray] = {}
    for key, tensor in tensors.items():
        needed, held = tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes()
        if needed > held:
            raise expanded_tensor_error(path, key, needed, held)
        if tensor.dtype == torch.bfloat16:
            notes.append(f"{key}: bfloat16 widened to float32 (exact)")
        stand_ins[key] = np.broadcast_to(np.zeros((), _numpy_dtype(torch, tensor)), tuple(tensor.shape))

    def load(key: str) -> np.ndarray:
        tensor, stand_in = tensors[key], stand_ins[key]
        if stand_in.dtype == _UNREAD:
            raise _unreadable(path, key, str(tensor.dtype).removeprefix("torch."))
        return (tensor.detach().float() if tensor.dtype == torch.bfloat16 else tensor.detach()).numpy()

    yield stand_ins, notes, load


def _unreadable(path: Path, key: str, dtype: str) -> InputFormatError:
    return InputFormatError(
        f"torch dtype {dtype} has no NumPy equivalent", file=path, tensor=key,
        hint="save the state dict in float32, float64, float16 or bfloat16",
    )


def _load_pt(torch: Any, path: Path) -> tuple[dict[str, Any], list[str]]:
    """The tensors of a ``.pt``/``.pth`` state dict (its non-tensor entries left out), found at the top level or
    under a checkpoint's ``state_dict``/``model_state_dict``/``model`` entry, and notes saying which."""
    import pickle

    notes: list[str] = []
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputFormatError(
            "refused: this pickle holds more than tensors and plain containers, and lstmconv loads .pt files "
            f"only with weights_only=True, so nothing in it was run ({first})",
            file=path,
            hint="save the model's state_dict() (torch.save(model.state_dict(), path)) or use .safetensors",
        ) from None
    except Exception as error:  # truncated zip, bad magic, unknown storage...
        raise InputFormatError(f"cannot load as a torch file: {type(error).__name__}: {error}", file=path) from None
    state = loaded
    if isinstance(loaded, dict) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                state = loaded[key]
                notes.append(f"weights taken from the checkpoint's '{key}' entry")
                break
    if not isinstance(state, dict):
        raise InputFormatError(
            f"expected a state_dict (a mapping of names to tensors), found {type(state).__name__}", file=path
        )
    return {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}, notes


def _numpy_dtype(torch: Any, tensor: Any) -> np.dtype:
    """The NumPy dtype ``tensor`` is read as: its own, float32 for bfloat16, :data:`_UNREAD` for dtypes NumPy lacks."""
    if tensor.dtype == torch.bfloat16:
        return np.dtype(np.float32)
    try:
        return torch.empty(0, dtype=tensor.dtype).numpy().dtype
    except TypeError:
        return _UNREAD
