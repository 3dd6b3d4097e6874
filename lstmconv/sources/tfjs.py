"""TensorFlow.js layers models: ``model.json`` and the binary weight shards beside it, read as tfjs 4.22 reads them.

``model.json`` holds the Keras model config (``modelTopology``: the converter's ``{"keras_version", "model_config"}``
or, from tfjs itself, the config alone) and a ``weightsManifest``: groups of shard files, each listing weights
(name, shape, dtype, optional ``quantization``). tfjs concatenates every group's shards in manifest order into one
buffer and cuts it into the listed weights back to back (tfjs-core ``io.decodeWeights``); a weight may span two
shards. Quantized weights are decoded as tfjs does: ``uint8``/``uint16`` as ``q * scale + min`` in double
precision, rounded to float32; ``float16`` widened exactly. Weight names start with their layer's name
(``lstm_1/kernel``, ``lstm_1/lstm_cell/kernel`` from some converter versions), and each layer's arrays come in
Keras order, so the Keras adapters build the layers (:mod:`lstmconv.adapters.keras_layers`). tfjs computes with
Keras 2's semantics (``hardSigmoid`` is ``0.2x + 0.5``) and cannot load Keras 3 configs: such a file is refused.
Each layer's weights are read from the shards only when its layer is built.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.adapters.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.errors import ConfigError, InputFormatError, UnsupportedFeatureError
from lstmconv.io.reading import read_json, regular_file
from lstmconv.protocols import LayerItem, Options
from lstmconv.schema import Wiring
from lstmconv.sources.keras import keras_layers
from lstmconv.sources.keras_files import flatten_config, model_wiring

__all__ = ["SOURCE", "read_manifest"]

#: bytes per value of each stored dtype (tfjs-core ``DTYPE_VALUE_SIZE_MAP``); string weights are refused
_STORED = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1"), "uint8": np.dtype("u1"),
           "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


class TfjsSource:
    def claims(self, path: Path) -> bool:
        """Whether a ``.json`` file is a tfjs layers model (``modelTopology`` and ``weightsManifest``)."""
        try:
            manifest = _read_json(path)
        except InputFormatError:
            return False
        return isinstance(manifest, dict) and "modelTopology" in manifest and "weightsManifest" in manifest

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        info, entries, model = read_manifest(path)
        yield keras_layers(info, entries, skip_unsupported=options.skip_unsupported), model_wiring(model), [e.name for e in entries]


SOURCE = TfjsSource()


@dataclass(frozen=True)
class _Weight:
    name: str
    shape: tuple[int, ...]
    dtype: str  # what the weight is (float32, int32, bool)
    stored: np.dtype  # how its values are stored
    offset: int  # in the concatenation of every shard
    quantization: dict[str, Any] | None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.stored.itemsize


def read_manifest(path: Path) -> tuple[KerasFileInfo, list[KerasLayerEntry], dict[str, Any]]:
    """The file facts, one Keras entry per layer of the config (its weights read on demand) and the config."""
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or "modelTopology" not in manifest or "weightsManifest" not in manifest:
        raise InputFormatError("not a TensorFlow.js layers model (no modelTopology and weightsManifest)", file=path)
    topology = manifest["modelTopology"]
    if not isinstance(topology, dict):
        raise InputFormatError("modelTopology is not a Keras model config", file=path)
    model = topology.get("model_config", topology) if "class_name" not in topology else topology
    if not isinstance(model, dict) or "class_name" not in model:
        raise InputFormatError("modelTopology holds no Keras model config", file=path)
    version = topology.get("keras_version")
    if (isinstance(version, str) and version.split(".", 1)[0].isdigit() and int(version.split(".", 1)[0]) >= 3) or _keras3_config(model):
        raise UnsupportedFeatureError(
            "tfjs cannot load a Keras 3 model config (tfjs 4.22 reads the Keras 2 dialect)",
            file=path,
            hint="convert the Keras 3 source itself (.keras or .weights.h5) instead",
        )
    shards, weights = _layout(path, manifest["weightsManifest"])
    by_layer: dict[str, list[_Weight]] = {}
    for weight in weights:
        by_layer.setdefault(weight.name.split("/", 1)[0], []).append(weight)
    configs = flatten_config(model)
    entries = []
    for name, cls, cfg, prefix in configs:
        if prefix:
            raise ConfigError(f"nested model '{prefix[0]}' inside the model is not supported yet", file=path, layer=prefix[0])
        if cls in ("Sequential", "Model", "Functional"):
            continue
        if _gru_reset_after(cls, cfg):
            raise UnsupportedFeatureError(
                "GRU reset_after=True: tfjs 4.22 cannot build this layer (GRUCell throws 'does not support reset_after "
                "parameter set to true'), so this model.json does not load in tfjs",
                file=path,
                layer=name,
                hint="convert the Keras file the model was exported from instead",
            )
        own = by_layer.pop(name, [])
        entries.append(KerasLayerEntry(name, cls, cfg, [w.name for w in own], _loader(path, shards, own)))
    if by_layer:
        unknown = ", ".join(w.name for listed in by_layer.values() for w in listed)
        raise InputFormatError("weights of no layer in modelTopology", file=path, tensor=unknown[:300])
    # tfjs computes Keras 2 semantics whatever wrote the file (hardSigmoid = 0.2x + 0.5)
    info = KerasFileInfo(str(path), version if isinstance(version, str) else "2", "tfjs", True)
    return info, entries, model


def _read_json(path: Path) -> Any:
    return read_json(path, "model.json")


def _keras3_config(model: dict[str, Any]) -> bool:
    """Keras 3 configs name each layer's module (``"module": "keras.layers"``), which tfjs does not read."""
    layers = model.get("config", {})
    layers = layers if isinstance(layers, list) else layers.get("layers", []) if isinstance(layers, dict) else []
    return any(isinstance(layer, dict) and "module" in layer for layer in layers)


def _gru_reset_after(cls: str, cfg: dict[str, Any]) -> bool:
    if cls == "Bidirectional":
        inner = cfg.get("layer", {})
        return isinstance(inner, dict) and _gru_reset_after(inner.get("class_name", ""), inner.get("config", {}))
    return cls in ("GRU", "GRUCell") and bool(cfg.get("reset_after"))


def _layout(path: Path, groups: Any) -> tuple[list[tuple[Path, int]], list[_Weight]]:
    """The shard files in tfjs's order with their sizes, and every weight with its offset in their
    concatenation; refuses what tfjs could not load."""
    if not isinstance(groups, list):
        raise InputFormatError("weightsManifest is not a list of groups", file=path)
    shards: list[tuple[Path, int]] = []
    weights: list[_Weight] = []
    offset = 0
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(group.get("weights"), list):
            raise InputFormatError("a weightsManifest group has no paths and weights lists", file=path)
        for shard in group["paths"]:
            shards.append(_shard(path, shard))
        for spec in group["weights"]:
            weight = _weight(path, spec, offset)
            weights.append(weight)
            offset += weight.nbytes
    total = sum(size for _, size in shards)
    if offset > total:
        raise InputFormatError(
            "the weight shards hold fewer bytes than the weights listed", file=path, expected=f"{offset} bytes", actual=f"{total} bytes"
        )
    return shards, weights


def _shard(path: Path, name: Any) -> tuple[Path, int]:
    """A shard file beside model.json (a name that leaves the folder is refused), with its size."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
        raise InputFormatError("a weight shard path leaves the model's folder", file=path, actual=repr(name)[:200])
    shard = regular_file(path.parent / name, "weight shard")
    return shard, shard.stat().st_size


def _weight(path: Path, spec: Any, offset: int) -> _Weight:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InputFormatError("a weight spec has no name", file=path)
    name, dtype, shape = spec["name"], spec.get("dtype", "float32"), spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
        raise InputFormatError("weight shape is not a list of sizes", file=path, tensor=name, actual=repr(shape)[:100])
    quantization = spec.get("quantization")
    if quantization is not None:
        if not isinstance(quantization, dict) or quantization.get("dtype") not in ("uint8", "uint16", "float16"):
            raise InputFormatError(
                "unknown quantization (tfjs reads uint8, uint16 and float16)", file=path, tensor=name, actual=repr(quantization)[:100]
            )
        if quantization["dtype"] != "float16" and not all(isinstance(quantization.get(k), (int, float)) for k in ("min", "scale")):
            raise InputFormatError("a quantized weight needs its min and scale", file=path, tensor=name)
        if dtype != "float32":
            raise UnsupportedFeatureError(f"a quantized {dtype} weight", file=path, tensor=name)
        stored = _STORED[quantization["dtype"]]
    elif dtype in ("float32", "int32", "bool"):
        stored = _STORED[dtype]
    else:
        raise UnsupportedFeatureError(f"weights of dtype {dtype!r} are not numbers lstmconv converts", file=path, tensor=name)
    return _Weight(name, tuple(shape), dtype, stored, offset, quantization)


def _loader(path: Path, shards: list[tuple[Path, int]], weights: list[_Weight]) -> Callable[[], list[np.ndarray]]:
    def load() -> list[np.ndarray]:
        return [_read(path, shards, weight) for weight in weights]

    return load


def _read(path: Path, shards: list[tuple[Path, int]], weight: _Weight) -> np.ndarray:
    """One weight, read from the shards it lies in and decoded as tfjs decodes it."""
    raw = np.empty(weight.nbytes, np.uint8)
    start, done = weight.offset, 0
    for shard, size in shards:
        if done == raw.size:
            break
        if start >= size:
            start -= size
            continue
        take = min(size - start, raw.size - done)
        with shard.open("rb") as handle:
            handle.seek(start)
            if handle.readinto(memoryview(raw[done : done + take])) != take:
                raise InputFormatError("a weight shard ended early (changed while read?)", file=shard, tensor=weight.name)
        done += take
        start = 0
    values = raw.view(weight.stored).reshape(weight.shape)
    quantization = weight.quantization
    if quantization is None:
        return values.astype(weight.stored.newbyteorder("="), copy=False) if weight.dtype != "bool" else values.astype(bool)
    if quantization["dtype"] == "float16":
        return values.astype(np.float32)
    return (values.astype(np.float64) * float(quantization["scale"]) + float(quantization["min"])).astype(np.float32)
