"""Load any supported source into the canonical form, keeping a source-layout reference per layer.

Sources are detected from the file's content (HDF5 signature, zip members) and extension; ``source_format``
overrides the detection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import contextlib
import dataclasses
import os

import numpy as np

from lstmconv.errors import ConfigError, InputFormatError, LstmconvError, UnsupportedFeatureError
from lstmconv._fast.finite import all_finite
from lstmconv.adapters.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.sources.keras_files import open_keras
from lstmconv.adapters.keras_layers import RECURRENT_CLASSES, build_layer
from lstmconv.io.reading import regular_file
from lstmconv.reference.common import ReferenceFn
from lstmconv.registry import SOURCE_NAMES
from lstmconv.pipeline.report import LeftOut
from lstmconv.schema import CanonicalModel, Layer, SourceInfo, Wiring

if TYPE_CHECKING:
    from lstmconv.sources.onnx_graph import OnnxFile

__all__ = [
    "LoadedModel",
    "LayerSource",
    "loaded_layers",
    "detect_format",
    "load_file",
    "load_keras_weights",
    "load_state_dict",
    "iter_keras_layers",
    "iter_onnx_layers",
    "iter_torch_layers",
    "refuse_nonfinite_layer",
    "refuse_without_recurrent",
    "reading_errors",
]


@dataclass(frozen=True)
class LoadedModel:
    """The canonical model plus, per layer name, the reference computing it in the source's own layout."""

    model: CanonicalModel
    references: Mapping[str, ReferenceFn] = field(default_factory=dict)
    source: str = ""
    source_format: str = "keras"
    layout: str = ""


@dataclass
class LayerSource:
    """A source's layers, each with its source reference, as the writers take them: read one at a time from a
    file (:func:`lstmconv.pipeline.read.open_layers`) or from a model already in memory (:func:`loaded_layers`)."""

    source: str  # the file, or what a model in memory came from (for messages and metadata)
    source_format: str  # 'keras', 'onnx', 'torch' or 'canonical'
    layers: Iterator[tuple[Layer, ReferenceFn | None]]
    skipped: list[str]  # what is left out, with why; grows while ``layers`` is consumed
    wiring: Wiring | None
    reserve: int  # room for the header of a .safetensors holding these layers


def loaded_layers(loaded: LoadedModel) -> LayerSource:
    """A model already in memory (:func:`load_file`, :func:`load_state_dict`...) as a LayerSource."""
    from lstmconv.pipeline.write import header_reserve
    from lstmconv.schema import RecurrentLayer

    layers = loaded.model.layers
    # at most 5 tensors per gate and a projection, per level and direction (canonical; torch has fewer)
    tensors = sum(
        (5 * len(layer.levels[0].forward.gates) + 1) * layer.num_levels * (2 if layer.bidirectional else 1)
        if isinstance(layer, RecurrentLayer)
        else 2
        for layer in layers
    )
    return LayerSource(
        loaded.source,
        loaded.source_format,
        ((layer, loaded.references.get(layer.name)) for layer in layers),
        list(loaded.model.skipped),
        loaded.model.wiring,
        header_reserve([layer.name for layer in layers], tensors),
    )


def detect_format(path: Path) -> str:
    """'keras', 'torch', 'onnx' or 'canonical', from the file's first bytes and its extension."""
    regular_file(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except IsADirectoryError:
        raise InputFormatError("is a directory, not a model file", file=path) from None
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror or error}", file=path) from None
    if not head:
        raise InputFormatError("file is empty", file=path)
    if head == b"\x89HDF\r\n\x1a\n":
        return "keras"
    if head[:4] == b"PK\x03\x04":
        return "keras" if path.suffix == ".keras" else "torch"
    if head[:2] == b"\x80\x02" or path.suffix in (".pt", ".pth", ".bin"):  # legacy (pre-1.6) torch pickle
        return "torch"
    if path.suffix in (".pt", ".pth"):
        return "torch"
    if path.suffix == ".safetensors":
        from lstmconv.io.canonical_file import is_canonical_file

        return "canonical" if is_canonical_file(path) else "torch"
    if path.suffix == ".onnx":
        return "onnx"
    raise InputFormatError(
        "unrecognised file: not HDF5 (Keras .h5), a Keras 3 .keras archive, a torch file or an ONNX model",
        file=path,
        hint="pass --from (source_format=...) to say what it is",
    )


def load_file(
    path: str | Path,
    *,
    config: str | Path | None = None,
    source_format: str | None = None,
    skip_unsupported: bool = False,
    allow_nonfinite: bool = False,
) -> LoadedModel:
    """Read ``path`` into the canonical form.

    ``config`` is an architecture JSON (``model.to_json()``) for weights-only Keras files.
    ``skip_unsupported`` leaves out recurrent layers lstmconv cannot read instead of refusing the file;
    layers with weights that lstmconv does not convert (BatchNormalization, Conv1D, custom layers) are
    always left out and listed in ``model.skipped``. Weights holding NaN or Inf are refused unless
    ``allow_nonfinite``.

    Every failure is an :class:`~lstmconv.errors.LstmconvError` naming the file: an error raised by h5py, onnx,
    protobuf, zipfile or numpy on a damaged file becomes an :class:`~lstmconv.errors.InputFormatError`.
    """
    path = Path(path)
    with reading_errors(path):
        loaded = _load(path, config, source_format, skip_unsupported)
    refuse_without_recurrent(loaded.model.layers, loaded.model.skipped, path)
    if not allow_nonfinite:
        _refuse_nonfinite(loaded)
    return loaded


def native_order(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (a copy only when it is not): writers copy raw bytes."""
    native = array.dtype.newbyteorder("=")
    return array if array.dtype == native else array.astype(native)


def refuse_without_recurrent(layers: Sequence[object], skipped: Sequence[str], path: str | Path) -> None:
    """lstmconv moves recurrent layers: a file without one is refused rather than half-converted."""
    from lstmconv.schema import RecurrentMeta

    if not any(isinstance(layer, RecurrentMeta) for layer in layers):
        found = ", ".join(getattr(layer, "name", "?") for layer in layers)
        raise InputFormatError(
            "no LSTM, GRU or SimpleRNN layer in this file",
            file=path,
            hint=f"found only: {found}" + (f"; left out: {'; '.join(skipped)}" if skipped else ""),
        )


@contextlib.contextmanager
def reading_errors(path: Path) -> Iterator[None]:
    """Turn whatever a parser raises on a damaged file into an InputFormatError naming the file."""
    try:
        yield
    except (LstmconvError, KeyboardInterrupt):
        raise
    except Exception as error:  # untrusted input: h5py, onnx, protobuf, zipfile, numpy errors
        if os.environ.get("LSTMCONV_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise InputFormatError(
            f"cannot read this file ({type(error).__name__}{': ' + message if message else ''})",
            file=path,
            hint="the file may be truncated or damaged",
        ) from None


def _refuse_nonfinite(loaded: LoadedModel) -> None:
    for layer in loaded.model.layers:
        refuse_nonfinite_layer(layer, loaded.source)


def nonfinite_tensor(layer: Layer) -> tuple[str, np.ndarray] | None:
    """The first of ``layer``'s tensors (canonical key, array) holding NaN or Inf, or None."""
    from lstmconv.io.canonical_file import canonical_tensors

    tensors = canonical_tensors(CanonicalModel(layers=(layer,)))
    # The tensors are mostly per-gate views into the arrays read from the file: scanning those arrays whole reads
    # the same memory in order, where a strided view is copied through NumPy's buffers first (5% of a large
    # conversion). Only if one of them is not finite is each tensor scanned, to name it.
    if all(all_finite(whole) for whole in _whole_arrays(tensors.values())):
        return None
    for key, array in tensors.items():
        if not all_finite(array):
            return key, array
    return None


def _whole_arrays(arrays: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The contiguous arrays ``arrays`` look into (each once), as ``arrays``' dtypes; an array itself when its
    memory's owner cannot be read as its dtype."""
    wholes: dict[tuple[int, int, np.dtype], np.ndarray] = {}
    for array in arrays:
        owner = array.base if isinstance(array.base, np.ndarray) else array
        whole = owner.reshape(-1).view(array.dtype) if _elements_line_up(array, owner) else array
        wholes.setdefault((whole.__array_interface__["data"][0], whole.nbytes, whole.dtype), whole)
    return list(wholes.values())


def _elements_line_up(array: np.ndarray, owner: np.ndarray) -> bool:
    """Whether every element of ``array`` is one element of ``owner``'s memory read as ``array``'s dtype (so that
    scanning the owner scans the array): same dtype, or raw bytes (lstmconv._fast.buffers), and every element at a
    multiple of the item size from the owner's start. Not for an owner much larger than the array (a gate is a
    quarter of its matrix, an eighth of a bidirectional ONNX one): an owner holding a whole model, as arrays
    given by a caller may have, would be scanned again for every layer."""
    item = array.itemsize
    offset = array.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    return (
        owner.nbytes <= 16 * array.nbytes
        and owner.flags.c_contiguous
        and (owner.dtype == array.dtype or owner.dtype == np.uint8)
        and owner.nbytes % item == 0
        and offset % item == 0
        and all(stride % item == 0 for stride in array.strides)
    )


def refuse_nonfinite_layer(layer: Layer, source: str) -> None:
    """Raise when ``layer``'s weights hold NaN or Inf."""
    found = nonfinite_tensor(layer)
    if found is None:
        return
    key, array = found
    nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    layer_name, _, tensor = key.partition("/")
    raise InputFormatError(
        f"weights hold {nan} NaN and {inf} infinite values",
        file=source,
        layer=layer_name,
        tensor=tensor,
        hint="pass --allow-nonfinite (allow_nonfinite=True) to convert them anyway (the numeric check is then skipped for this layer)",
    )


def refuse_nothing_read(layers: Sequence[object], skipped: Sequence[str], path: str | Path) -> None:
    """Refuse a file in which no layer could be read (what was left out is the hint)."""
    if not layers:
        raise InputFormatError("no layer lstmconv can convert was found", file=path, hint="; ".join(skipped) or None)


def _load(path: Path, config: str | Path | None, source_format: str | None, skip_unsupported: bool) -> LoadedModel:
    fmt = source_format or detect_format(path)
    if fmt == "onnx":
        return _load_onnx(path)
    if fmt == "canonical":
        return _load_canonical(path)
    if fmt == "torch":
        return _load_torch(path)
    if fmt != "keras":
        raise UnsupportedFeatureError(f"unknown source format {fmt!r}", file=path, hint=f"choose one of {', '.join(SOURCE_NAMES)}")
    with open_keras(path, config) as (info, entries, wiring):
        return _build_model(info, entries, skip_unsupported=skip_unsupported, wiring=wiring)


def _load_torch(path: Path) -> LoadedModel:
    from lstmconv.io.torch_files import open_torch_state

    with open_torch_state(path) as (stand_ins, metadata, notes, load):
        return _torch_model(stand_ins, metadata, notes, path, load=load)


def load_state_dict(state_dict: Mapping[str, Any], *, nonlinearity: str | None = None) -> LoadedModel:
    """Canonical form of a torch ``state_dict`` held in memory (tensors or arrays), e.g. ``module.state_dict()``.

    Modules are found from the keys (``<prefix>.weight_ih_l0`` ...). ``nonlinearity`` states ``nn.RNN``'s
    activation ('tanh' or 'relu'), which a state dict does not record.
    """
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"a state dict maps names to tensors; got a {type(state_dict).__name__}", file="<state_dict>")
    arrays: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor; torch itself is never imported here
            value = value.detach().cpu()
            value = value.float().numpy() if str(value.dtype) == "torch.bfloat16" else value.numpy()
        arrays[str(key)] = native_order(_numeric_array(value, "<state_dict>", str(key)))
    return _torch_model(arrays, None, [], "<state_dict>", nonlinearity=nonlinearity)


def _gather(
    items: Iterable[tuple[Layer, ReferenceFn | None] | str],
) -> tuple[list[Layer], dict[str, ReferenceFn], list[str]]:
    """A source's layers, their references (for the layers that have one) and the text of each left-out layer,
    from the ``iter_*_layers`` items (a str is a left-out layer)."""
    layers: list[Layer] = []
    references: dict[str, ReferenceFn] = {}
    skipped: list[str] = []
    for item in items:
        if isinstance(item, str):
            skipped.append(item)
            continue
        layer, reference = item
        layers.append(layer)
        if reference is not None:
            references[layer.name] = reference
    return layers, references, skipped


def _torch_model(
    tensors: Mapping[str, np.ndarray],
    metadata: dict[str, Any] | None,
    notes: list[str],
    path: Path | str,
    *,
    nonlinearity: str | None = None,
    load: Callable[[str], np.ndarray] | None = None,
) -> LoadedModel:
    """A state dict's layers; with ``load``, ``tensors`` are stand-ins (see :func:`iter_torch_layers`)."""
    items = iter_torch_layers(tensors, metadata, notes, path, nonlinearity=nonlinearity, load=load)
    layers, references, skipped = _gather(items)
    return LoadedModel(
        model=CanonicalModel(layers=tuple(layers), skipped=tuple(skipped)),
        references=references,
        source=str(path),
        source_format="torch",
        layout="torch",
    )


def iter_torch_layers(
    tensors: Mapping[str, np.ndarray],
    metadata: dict[str, Any] | None,
    notes: list[str],
    path: Path | str,
    *,
    nonlinearity: str | None = None,
    load: Callable[[str], np.ndarray] | None = None,
) -> Iterator[tuple[Layer, ReferenceFn | None] | str]:
    """Build a state dict's torch.nn modules as layers, one at a time; a str is a key left out (yielded first).

    With ``load``, ``tensors`` holds stand-ins of the right shapes (see ``open_safetensors_state``) and each
    module's parameters are read with ``load(key)`` when its layer is built.
    """
    from lstmconv.adapters.torch import find_torch_modules, recurrent_to_canonical
    from lstmconv.schema import DenseLayer, DenseMeta, EmbeddingLayer, EmbeddingMeta, RecurrentLayer, RecurrentMeta
    from lstmconv.reference.torch_function import torch_layer_function

    described = {m["name"]: m for m in (metadata or {}).get("layers", [])}  # written by lstmconv: exact facts
    custom = (metadata or {}).get("custom_modules", {})
    pickled = (metadata or {}).get("pickled_modules", {})  # a whole-module pickle's own attributes
    try:
        modules, leftover = find_torch_modules(dict(tensors))
    except LstmconvError as error:
        raise error.with_context(file=path) from None
    # an nn.Embedding's 'weight' is told from a bias-less nn.Linear's only by what lstmconv recorded
    tables = [key for key in leftover if described.get(key.removesuffix(".weight"), {}).get("type") == "embedding"]
    leftover = [key for key in leftover if key not in tables]
    if not modules:
        raise InputFormatError("no nn.LSTM/GRU/RNN or nn.Linear parameters found", file=path, hint=", ".join(leftover[:8]) or None)
    yield from (LeftOut(key, "not an nn.LSTM/GRU/RNN/Linear parameter") for key in leftover)
    for key in tables:
        facts = EmbeddingMeta.model_validate({**described[key.removesuffix(".weight")], "source": SourceInfo(framework="torch", layout="torch").model_dump()})
        table = load(key) if load is not None else tensors[key]
        yield EmbeddingLayer(**dict(facts), weight=table), None  # type: ignore[misc]
    for module in modules:
        if load is not None:
            module.params = {param: load(key) for param, key in module.keys.items()}
        stated = described.get(module.prefix)
        source = SourceInfo(framework="torch", layout="torch", notes=tuple(notes))
        try:
            if module.kind == "recurrent":
                module_nonlinearity = nonlinearity  # the caller's word for nn.RNN, unless the file records it
                if stated is not None and stated.get("cell") == "rnn":
                    module_nonlinearity = stated["activations"]["candidate"]["name"]
                facts = pickled.get(module.prefix, {})
                if isinstance(facts.get("nonlinearity"), str):
                    module_nonlinearity = facts["nonlinearity"]
                if module.prefix in custom:
                    module.params = {k: v for k, v in module.params.items() if not k.startswith("peephole")}
                    raise UnsupportedFeatureError(
                        "this layer was written for lstmconv's emitted module, not torch.nn; convert the original "
                        "source instead",
                        file=path,
                        layer=module.prefix,
                    )
                layer: Layer = recurrent_to_canonical(module, source, nonlinearity=module_nonlinearity)
                if stated is not None:
                    facts = RecurrentMeta.model_validate({**stated, "source": layer.source.model_dump()})
                    described_fields = {k: v for k, v in dict(layer).items() if k != "levels"}
                    layer = RecurrentLayer(**{**described_fields, **dict(facts)}, levels=layer.levels)
                elif facts:  # a pickled module says what it is; lstmconv's layers are batch-first
                    if facts.get("batch_first") is False:
                        note = "the pickled module is batch_first=False; the converted layer takes (batch, time, features)"
                        layer = layer.model_copy(update={"source": layer.source.model_copy(update={"notes": (*layer.source.notes, note)})})
                else:
                    layer = layer.model_copy(
                        update={"source": layer.source.model_copy(update={"inferred": (*layer.source.inferred, "batch_first, go_backwards and how outputs are used are not recorded in a state dict")})}
                    )
            else:
                weight, bias = module.params["weight"], module.params["bias"]
                facts = DenseMeta.model_validate({**stated, "source": source.model_dump()}) if stated else None
                layer = DenseLayer(
                    **(dict(facts) if facts else {
                        "name": module.prefix, "input_size": int(weight.shape[1]), "units": int(weight.shape[0]),
                        "activation": {"name": "linear"}, "dtype": str(weight.dtype),
                        "source": source.model_copy(update={"inferred": ("nn.Linear: no activation recorded",)}),
                    }),
                    weight=weight,
                    bias=bias,
                )
        except LstmconvError as error:
            raise error.with_context(file=path, layer=module.prefix) from None
        assert isinstance(layer, (RecurrentLayer, DenseLayer))
        yield layer, torch_layer_function(layer, module.params)
        module.params = {}  # read again if asked for: not held while the next module is built
        del layer


def _load_canonical(path: Path) -> LoadedModel:
    from lstmconv.io.canonical_file import open_canonical

    with open_canonical(path) as (metadata, canonical):
        layers, references, _ = _gather((layer, canonical_reference(layer)) for layer in canonical)
    model = CanonicalModel(layers=tuple(layers), wiring=metadata.wiring)
    return LoadedModel(model=model, references=references, source=str(path), source_format="canonical", layout="canonical")


def canonical_reference(layer: Layer) -> ReferenceFn | None:
    """What a canonical file's layer computes, from its gate-named weights (None for weightless layers)."""
    import functools

    from lstmconv.reference.canonical import canonical_forward
    from lstmconv.schema import DenseLayer, RecurrentLayer
    from lstmconv.reference.torch_function import torch_layer_function

    if isinstance(layer, RecurrentLayer):
        return functools.partial(canonical_forward, layer)
    if isinstance(layer, DenseLayer):  # canonical Dense is (units, in), nn.Linear's orientation
        return torch_layer_function(layer, {"weight": layer.weight, **({"bias": layer.bias} if layer.bias is not None else {})})
    return None


def _load_onnx(path: Path) -> LoadedModel:
    from lstmconv.sources.onnx_graph import read_onnx

    layers, references, _ = _gather(iter_onnx_layers(read_onnx(path)))
    return LoadedModel(
        model=CanonicalModel(layers=tuple(layers)),
        references=references,
        source=str(path),
        source_format="onnx",
        layout="onnx",
    )


def iter_onnx_layers(onnx_file: OnnxFile) -> Iterator[tuple[Layer, ReferenceFn]]:
    """Build the file's recurrent and Dense layers one at a time, each reading only its own weights from the file."""
    from lstmconv.activations import Activation
    from lstmconv.adapters.onnx import node_to_canonical
    from lstmconv.sources.onnx_graph import OnnxDenseEntry, OnnxEmbeddingEntry
    from lstmconv.schema import DenseLayer, EmbeddingLayer
    from lstmconv.reference.onnx_function import onnx_dense_function, onnx_layer_function

    for entry in onnx_file.entries:
        source = SourceInfo(
            framework="onnx", layout=f"onnx-opset{onnx_file.opset}", version=onnx_file.producer or None, notes=entry.notes
        )
        if isinstance(entry, OnnxEmbeddingEntry):
            table = entry.load()
            embedding = EmbeddingLayer(
                name=entry.name,
                vocabulary_size=int(table.shape[0]),
                embedding_size=int(table.shape[1]),
                dtype=str(table.dtype),
                source=source,
                weight=table,
            )
            yield embedding, None
            del embedding, table
            continue
        if isinstance(entry, OnnxDenseEntry):
            kernel, bias = entry.load()
            name, alpha, beta = entry.activation
            activation = Activation(name=name, alpha=alpha, beta=beta)  # type: ignore[arg-type]
            dense = DenseLayer(
                name=entry.name,
                input_size=int(kernel.shape[0]),
                units=int(kernel.shape[1]),
                activation=activation,
                use_bias=bias is not None,
                dtype=str(kernel.dtype),
                source=source,
                weight=kernel.T,
                bias=bias,
            )
            yield dense, onnx_dense_function(activation, kernel, bias)
            del dense, kernel, bias
            continue
        node = entry.node
        try:
            layer = node_to_canonical(node, source)
            if entry.runtime_inputs:
                layer = layer.model_copy(update={"runtime_inputs": entry.runtime_inputs})
        except LstmconvError as error:
            raise error.with_context(file=onnx_file.path) from None
        # The node's own function; layout only changes how X/Y are arranged, so check in layout 0.
        yield layer, onnx_layer_function(layer, [dataclasses.replace(node, layout=0)])
        del layer, node  # not held while the next layer is read


def _numeric_array(value: Any, source: str, tensor: str) -> np.ndarray:
    """``value`` as a NumPy array of numbers (object, string and empty values refused by name)."""
    if value is None:
        raise ConfigError("the array is None", file=source, tensor=tensor)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"not an array: {error}", file=source, tensor=tensor) from None
    if array.dtype.kind not in "fiub":
        raise ConfigError(f"the array holds {array.dtype}, not numbers", file=source, tensor=tensor)
    return array


def load_keras_weights(
    weights: Sequence[np.ndarray],
    *,
    class_name: str,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    keras_version: str = "3",
) -> LoadedModel:
    """Canonical form of one Keras layer given as ``layer.get_weights()`` plus its class and config.

    ``config`` is ``layer.get_config()`` (``None``: infer from shapes with the defaults of ``keras_version``).
    ``keras_version`` decides what ``hard_sigmoid`` means ('2.x': 0.2x+0.5; '3.x': x/6+0.5).
    """
    if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Sequence | np.ndarray):
        raise ConfigError(f"weights are a list of arrays (layer.get_weights()); got a {type(weights).__name__}", file="<arrays>")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"config is a mapping (layer.get_config()); got a {type(config).__name__}", file="<arrays>")
    if not isinstance(keras_version, str) or not isinstance(class_name, str):
        raise ConfigError("class_name and keras_version are strings ('LSTM', '2.2.4')", file="<arrays>", actual=(class_name, keras_version))
    arrays = [native_order(_numeric_array(w, "<arrays>", f"weights[{k}]")) for k, w in enumerate(weights)]
    layer_name = name or (config or {}).get("name") or class_name.lower()
    entry = KerasLayerEntry(
        name=layer_name,
        class_name=class_name,
        config=dict(config) if config is not None else None,
        array_names=[f"weights[{i}]" for i in range(len(arrays))],
        load_arrays=lambda: arrays,
    )
    info = KerasFileInfo("<arrays>", keras_version, "arrays", config is not None)
    return _build_model(info, [entry], skip_unsupported=False, wiring=None)


def iter_keras_layers(
    info: KerasFileInfo, entries: list[KerasLayerEntry], *, skip_unsupported: bool
) -> Iterator[tuple[Layer, ReferenceFn | None] | str]:
    """Build the entries' layers one at a time (each reads only its own arrays); a str is a left-out layer."""
    for entry in entries:
        try:
            built = build_layer(entry, info)
        except UnsupportedFeatureError as error:
            if entry.class_name in RECURRENT_CLASSES and not skip_unsupported:
                raise
            yield LeftOut(entry.name, error.message, entry.class_name or "no config")
            continue
        if built is not None:
            yield built.layer, built.reference
        del built  # not held while the next layer is read


def _build_model(
    info: KerasFileInfo, entries: list[KerasLayerEntry], *, skip_unsupported: bool, wiring: Wiring | None
) -> LoadedModel:
    layers, references, skipped = _gather(iter_keras_layers(info, entries, skip_unsupported=skip_unsupported))
    refuse_nothing_read(layers, skipped, info.path)
    try:
        model = CanonicalModel(layers=tuple(layers), skipped=tuple(skipped), wiring=wiring)
    except LstmconvError as error:
        raise error.with_context(file=info.path) from None
    return LoadedModel(model=model, references=references, source=info.path, source_format="keras", layout=info.layout)
