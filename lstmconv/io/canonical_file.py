"""lstmconv's own file: gate-named tensors in a ``.safetensors`` file plus the canonical metadata.

Tensor keys::

    <layer>/levels/<k>/<forward|backward>/<gate>/<w_input|w_recurrent|b_input|b_recurrent|peephole>
    <layer>/levels/<k>/<forward|backward>/w_projection
    <layer>/weight, <layer>/bias                      (Dense, Embedding)

The header's ``"lstmconv_canonical"`` entry is the :class:`~lstmconv.schema.CanonicalMetadata` JSON (schema in
``schemas/``). Reading a file back gives the same canonical model, bit for bit. Written layer by layer by
:mod:`lstmconv.targets.canonical`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from lstmconv.errors import InputFormatError, MissingTensorError
from lstmconv.schema import (
    ActivationLayer,
    ActivationMeta,
    CanonicalMetadata,
    ConcatenateLayer,
    ConcatenateMeta,
    DropoutLayer,
    DropoutMeta,
    CanonicalModel,
    DenseLayer,
    DenseMeta,
    DirectionWeights,
    EmbeddingLayer,
    EmbeddingMeta,
    GateWeights,
    Layer,
    RecurrentLayer,
    RecurrentMeta,
    StackLevel,
)

__all__ = ["CANONICAL_KEY", "canonical_tensors", "open_canonical", "is_canonical_file"]

CANONICAL_KEY = "lstmconv_canonical"
_GATE_FIELDS = ("w_input", "w_recurrent", "b_input", "b_recurrent", "peephole")


def canonical_tensors(model: CanonicalModel) -> dict[str, np.ndarray]:
    """Every array of ``model`` under its canonical key."""
    tensors: dict[str, np.ndarray] = {}
    for layer in model.layers:
        if isinstance(layer, RecurrentLayer):
            for k, side, direction in layer.directions():
                prefix = f"{layer.name}/levels/{k}/{side}"
                for gate, params in direction.gates.items():
                    for field in _GATE_FIELDS:
                        value = getattr(params, field)
                        if value is not None:
                            tensors[f"{prefix}/{gate}/{field}"] = value
                if direction.w_projection is not None:
                    tensors[f"{prefix}/w_projection"] = direction.w_projection
        elif isinstance(layer, (DenseLayer, EmbeddingLayer)):
            tensors[f"{layer.name}/weight"] = layer.weight
            if isinstance(layer, DenseLayer) and layer.bias is not None:
                tensors[f"{layer.name}/bias"] = layer.bias
    return tensors


def _tensors_of(layer: Layer) -> dict[str, np.ndarray]:
    """A built layer's arrays by their key in the file."""
    return canonical_tensors(CanonicalModel(layers=(layer,)))


def is_canonical_file(path: Path) -> bool:
    """A safetensors file whose header carries lstmconv's canonical metadata."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return CANONICAL_KEY in (handle.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


@contextlib.contextmanager
def open_canonical(path: Path) -> Iterator[tuple[CanonicalMetadata, Iterator[Layer]]]:
    """The file's metadata and its layers, each built (its tensors read) when the iterator reaches it."""
    from lstmconv.io.torch_files import open_safetensors_state

    with open_safetensors_state(path) as (stand_ins, header, load):
        raw = header.get(CANONICAL_KEY)
        if raw is None:
            raise InputFormatError("not an lstmconv canonical file (no metadata)", file=path)
        try:
            metadata = CanonicalMetadata.model_validate_json(raw)
        except ValidationError as error:
            raise InputFormatError(f"canonical metadata does not validate: {error.errors()[0]['msg']}", file=path) from None
        tensors = _Tensors(stand_ins, load)
        yield metadata, (_layer(path, meta, tensors) for meta in metadata.layers)


class _Tensors(Mapping[str, np.ndarray]):
    """The file's tensors by key, each read from the file when it is looked up (not kept)."""

    def __init__(self, stand_ins: dict[str, np.ndarray], load: Callable[[str], np.ndarray]) -> None:
        self.stand_ins, self.load = stand_ins, load

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.stand_ins:
            raise KeyError(key)
        return self.load(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.stand_ins)

    def __len__(self) -> int:
        return len(self.stand_ins)


def _take(path: Path, tensors: Mapping[str, np.ndarray], key: str, required: bool = True) -> np.ndarray | None:
    if key in tensors:
        return tensors[key]
    if required:
        raise MissingTensorError("missing tensor", file=path, tensor=key)
    return None


def _layer(path: Path, meta: object, tensors: Mapping[str, np.ndarray]) -> Layer:
    layer = _build(path, meta, tensors)
    dtype = getattr(meta, "dtype", None)
    for key, array in _tensors_of(layer).items():
        if dtype is not None and array.dtype != np.dtype(dtype):  # the metadata is copied to every output
            raise InputFormatError(
                "the metadata's dtype contradicts a tensor's", file=path, tensor=key, expected=dtype, actual=str(array.dtype)
            )
    return layer


def _build(path: Path, meta: object, tensors: Mapping[str, np.ndarray]) -> Layer:
    if isinstance(meta, RecurrentMeta):
        # what the file holds decides how far the loops go, never a count the metadata declares
        held = {key[len(meta.name) + 1 :].split("/")[1] for key in tensors if key.startswith(f"{meta.name}/levels/")}
        if held != {str(k) for k in range(len(held))} or len(held) != meta.num_levels:
            raise InputFormatError(
                "the metadata's num_levels does not match the levels the file holds",
                file=path,
                layer=meta.name,
                expected=meta.num_levels,
                actual=len(held),
            )
        levels = []
        for k in range(meta.num_levels):
            sides = ["forward", "backward"] if meta.bidirectional else ["forward"]
            directions = {}
            for side in sides:
                prefix = f"{meta.name}/levels/{k}/{side}"
                # relative to the prefix: a layer name may hold '/' (Keras 'enc/rnn', ONNX node paths)
                gate_names = sorted({key[len(prefix) + 1 :].split("/")[0] for key in tensors if key.startswith(prefix + "/") and key[len(prefix) + 1 :].count("/") == 1})
                gates = {
                    gate: GateWeights(
                        **{
                            field: _take(path, tensors, f"{prefix}/{gate}/{field}", field.startswith("w_"))
                            for field in _GATE_FIELDS
                        }
                    )
                    for gate in gate_names
                }
                directions[side] = DirectionWeights(
                    gates=gates, w_projection=_take(path, tensors, f"{prefix}/w_projection", required=False)
                )
            levels.append(StackLevel(forward=directions["forward"], backward=directions.get("backward")))
        return RecurrentLayer(**dict(meta), levels=tuple(levels))
    if isinstance(meta, DenseMeta):
        return DenseLayer(**dict(meta), weight=_take(path, tensors, f"{meta.name}/weight"), bias=_take(path, tensors, f"{meta.name}/bias", False))
    if isinstance(meta, EmbeddingMeta):
        return EmbeddingLayer(**dict(meta), weight=_take(path, tensors, f"{meta.name}/weight"))
    weightless = {ActivationMeta: ActivationLayer, DropoutMeta: DropoutLayer, ConcatenateMeta: ConcatenateLayer}
    return weightless[type(meta)].model_validate(meta.model_dump())  # type: ignore[index]
