"""Read Keras files: legacy HDF5 (Keras 1, 2, tf.keras, Keras 3 ``.h5``), Keras 3 ``.keras`` and ``.weights.h5``.

Legacy HDF5 (``keras/engine/saving.py``, ``tf_keras/src/saving/legacy/hdf5_format.py``)::

    /                       attrs keras_version, backend, model_config (full models only)
    /model_weights          attrs layer_names (maybe chunked layer_names0, 1, ...), keras_version
    /model_weights/<layer>  attrs weight_names: dataset paths, in get_weights() order

``model.save_weights()`` writes the ``/model_weights`` content at the root. Dataset names vary with the
version (``lstm_1/kernel:0``, ``lstm/lstm_cell/kernel:0``, ``lstm_1_W_i:0``, ...), so weights are taken
in ``weight_names`` order, never by name.

Keras 3 (``keras/src/saving/saving_lib.py``): ``.keras`` is a zip of ``config.json``, ``metadata.json`` and
``model.weights.h5``; inside, a layer's variables live under ``layers/<snake_case class name, made unique>``
(not the layer's name) as ``.../vars/0, 1, ...``, cells under ``cell/``, Bidirectional directions under
``forward_layer/`` and ``backward_layer/``, TimeDistributed's layer under ``layer/``.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lstmconv._fast import buffers
from lstmconv.adapters.keras_entries import CONFIG_ATTRIBUTE, KerasFileInfo, KerasLayerEntry
from lstmconv.adapters.keras_wiring import wiring_from_config
from lstmconv.errors import ConfigError, InputFormatError, LstmconvError
from lstmconv.io.hdf5_guard import prescan_hdf5
from lstmconv.io.reading import MAX_JSON_BYTES, regular_file
from lstmconv.io.zip_member import open_member
from lstmconv.schema import Wiring

__all__ = ["open_keras", "flatten_config"]

_NESTED_MODELS = {"Sequential", "Model", "Functional"}


@contextlib.contextmanager
def open_keras(
    path: str | Path, config_path: str | Path | None = None, *, meanwhile: Callable[[], object] | None = None
) -> Iterator[tuple[KerasFileInfo, list[KerasLayerEntry], Wiring | None]]:
    """Open a Keras file; yields the file facts, one entry per layer (valid inside the ``with``) and the wiring.

    ``meanwhile`` runs while the HDF5 structure is vetted in a forked child (:func:`prescan_hdf5`), if it is.
    """
    path = Path(path)
    sidecar = read_sidecar(config_path) if config_path is not None else None
    regular_file(path)
    with contextlib.ExitStack() as stack:
        try:
            if not zipfile.is_zipfile(path):
                prescan_hdf5(path, meanwhile=meanwhile)
            if zipfile.is_zipfile(path):
                archive = stack.enter_context(zipfile.ZipFile(path))
                info, entries, model = _open_keras_zip(path, archive, stack, sidecar, meanwhile)
                yield info, entries, model_wiring(model)
                return
            handle = stack.enter_context(h5py.File(path, "r"))
        except LstmconvError:
            raise
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as error:
            raise InputFormatError(f"cannot open as a Keras file: {error}", file=path) from None
        if "layers" in handle and "layer_names" not in handle.attrs and "model_weights" not in handle:
            version = (sidecar or {}).get("keras_version")
            info = KerasFileInfo(str(path), version or "3", "keras3-weights", sidecar is not None)
            model = (sidecar or {}).get("model")
            yield info, _keras3_entries(handle, model, info), model_wiring(model)
            return
        info, entries, model = _legacy_entries(path, handle, sidecar)
        yield info, entries, model_wiring(model)


def model_wiring(model: dict[str, Any] | None) -> Wiring | None:
    """How a Keras model config's layers connect (None without a config, or for one too unusual to follow)."""
    if model is None:
        return None
    try:
        return wiring_from_config(model)
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # an unusual config: the layers still convert one by one


def read_sidecar(config_path: str | Path) -> dict[str, Any]:
    """A model.to_json() file: {'class_name', 'config', 'keras_version', ...}, or a Keras 3 config.json."""
    regular_file(config_path, "architecture JSON")
    if Path(config_path).stat().st_size > MAX_JSON_BYTES:
        raise ConfigError("the architecture JSON is larger than any model's", file=config_path, actual=f"{Path(config_path).stat().st_size} bytes")
    try:
        data = json.loads(Path(config_path).read_text())
    except RecursionError:
        raise ConfigError("the architecture JSON is nested too deeply to be a model config", file=config_path) from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the architecture JSON: {error}", file=config_path) from None
    if not isinstance(data, dict) or "config" not in data:
        raise ConfigError("not a Keras model JSON (no 'config' key)", file=config_path, hint="use model.to_json()")
    return {"model": data, "keras_version": data.get("keras_version")}


# ---------------------------------------------------------------------------------------------------
# Config walking


def flatten_config(model: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """Layers of a Keras model config, depth first: (name, class_name, config, container path)."""
    found: list[tuple[str, str, dict[str, Any], list[str]]] = []

    def walk(model_config: dict[str, Any], prefix: list[str]) -> None:
        cfg = model_config.get("config", {})
        layers = cfg if isinstance(cfg, list) else cfg.get("layers", [])  # Keras <= 2.1 Sequential: a list
        for layer in layers:
            cls = layer.get("class_name")
            layer_cfg = layer.get("config", {})
            name = layer_cfg.get("name") or layer.get("name")
            if cls in _NESTED_MODELS:
                found.append((name, cls, layer_cfg, prefix))
                walk(layer, [*prefix, name])
            else:
                found.append((name, cls, layer_cfg, prefix))

    walk(model, [])
    seen: dict[tuple[str, ...], set[str]] = {}
    for name, _, _, prefix in found:
        names = seen.setdefault(tuple(prefix), set())
        if name in names:  # Keras itself refuses such a model; which config the weights belong to is unknown
            raise ConfigError(f"two layers of the model config are named {name!r}", layer=name)
        names.add(name)
    return found


def _strings(group: h5py.Group | h5py.File, attr: str) -> list[str] | None:
    """An attribute holding a list of names, joining Keras' chunked attr0, attr1, ... form."""
    if attr in group.attrs:
        values = list(group.attrs[attr])
    elif f"{attr}0" in group.attrs:
        values, chunk = [], 0
        while f"{attr}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{attr}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _text_attr(node: h5py.Group | h5py.File, attr: str) -> str | None:
    value = node.attrs.get(attr)
    if value is None:
        return None
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------------
# Legacy HDF5


def _legacy_entries(
    path: Path, handle: h5py.File, sidecar: dict[str, Any] | None
) -> tuple[KerasFileInfo, list[KerasLayerEntry], dict[str, Any] | None]:
    weights_root = handle["model_weights"] if "model_weights" in handle else handle
    layer_names = _strings(weights_root, "layer_names")
    if layer_names is None:
        raise InputFormatError(
            "not a Keras weights file: no 'layer_names' attribute",
            file=path,
            hint="expected a file written by Keras model.save() or model.save_weights()",
        )
    version = (
        _text_attr(weights_root, "keras_version")
        or _text_attr(handle, "keras_version")
        or (sidecar or {}).get("keras_version")
    )
    model_config = None
    raw_config = _text_attr(handle, "model_config")
    if raw_config:
        try:
            model_config = json.loads(raw_config)
        except ValueError as error:
            raise InputFormatError(f"model_config attribute is not valid JSON: {error}", file=path) from None
    elif sidecar is not None:
        model_config = sidecar["model"]
    configs: dict[str, tuple[str, dict[str, Any]]] = {}
    if model_config is not None:
        for name, cls, cfg, prefix in flatten_config(model_config):
            if prefix:
                raise ConfigError(
                    f"nested model '{prefix[0]}' inside the model is not supported yet",
                    file=path,
                    layer=prefix[0],
                    hint="save the inner model on its own and convert that file",
                )
            configs[name] = (cls, cfg)
    info = KerasFileInfo(str(path), version, "keras-h5", model_config is not None)
    entries = []
    for name in layer_names:
        if name not in weights_root:
            raise InputFormatError("layer listed in layer_names has no group", file=path, layer=name)
        group = weights_root[name]
        weight_names = _strings(group, "weight_names") or []
        cls, cfg = configs.get(name, (None, None))
        if model_config is None:
            cls, cfg = _layer_config_attribute(path, group, name)
        if model_config is not None and cls is None:
            raise ConfigError("layer has weights but is not in the model config", file=path, layer=name)
        entries.append(
            KerasLayerEntry(
                name=name,
                class_name=cls,
                config=cfg,
                array_names=weight_names,
                load_arrays=_dataset_loader(path, group, weight_names, name),
            )
        )
    if model_config is not None:  # weightless layers (Concatenate, Activation...) matter for the wiring
        listed = set(layer_names)
        for name, cls, cfg, _ in flatten_config(model_config):
            if name not in listed and cls not in _NESTED_MODELS:
                entries.append(KerasLayerEntry(name, cls, cfg, [], lambda: []))
        order = {name: k for k, (name, _, _, _) in enumerate(flatten_config(model_config))}
        entries.sort(key=lambda e: order.get(e.name, len(order)))
    return info, entries, model_config


def _layer_config_attribute(path: Path, group: h5py.Group, layer: str) -> tuple[str | None, dict[str, Any] | None]:
    """The class and config lstmconv's writers keep in a layer's group (:data:`CONFIG_ATTRIBUTE`), if any."""
    raw = _text_attr(group, CONFIG_ATTRIBUTE)
    if raw is None:
        return None, None
    try:
        stated = json.loads(raw)
        cls, cfg = stated["class_name"], stated["config"]
    except (ValueError, KeyError, TypeError):
        raise InputFormatError(f"the {CONFIG_ATTRIBUTE} attribute is not a Keras layer config", file=path, layer=layer) from None
    if not isinstance(cls, str) or not isinstance(cfg, dict):
        raise InputFormatError(f"the {CONFIG_ATTRIBUTE} attribute is not a Keras layer config", file=path, layer=layer)
    return cls, cfg


#: Largest dataset lstmconv reads (a header can claim any size; reading it must not try to allocate that).
MAX_DATASET_BYTES = 1 << 36  # 64 GiB


def read_dataset(path: Path, group: h5py.Group, name: str, layer: str) -> np.ndarray:
    """Read one weight dataset, refusing links out of the file, external or virtual storage and absurd sizes."""
    try:
        link = group.get(name, getlink=True)
    except (KeyError, ValueError, OSError, TypeError):
        link = None
    if isinstance(link, h5py.ExternalLink):
        raise InputFormatError(
            f"weight is an HDF5 external link to '{link.filename}'; lstmconv reads only data inside the file",
            file=path,
            layer=layer,
            tensor=name,
        )
    node = group.get(name) if link is not None else None
    if not isinstance(node, h5py.Dataset):
        raise InputFormatError("weight listed in the layer is missing", file=path, layer=layer, tensor=name)
    if node.is_virtual or node.external:
        raise InputFormatError(
            "weight is stored outside the file (virtual or external dataset); refused", file=path, layer=layer, tensor=name
        )
    if node.dtype.kind not in "fiub":
        raise InputFormatError(f"weight has dtype {node.dtype}, not a number", file=path, layer=layer, tensor=name)
    if node.dtype.kind == "f" and node.dtype.itemsize > 8:
        raise InputFormatError(
            f"weight has dtype {node.dtype} (long double), which no framework's recurrent layers compute in",
            file=path, layer=layer, tensor=name,
        )
    declared = int(node.size) * node.dtype.itemsize
    stored = node.id.get_storage_size()
    if declared and stored < declared and not node.compression and node.scaleoffset is None:
        # unwritten chunks read as the fill value: not weights anyone trained
        what = "was never written (it holds only its fill value)" if stored == 0 else "was only partly written"
        raise InputFormatError(
            f"the weight {what}", file=path, layer=layer, tensor=name,
            expected=f"{declared} bytes stored", actual=f"{stored} bytes",
        )
    file_size = path.stat().st_size if path.exists() else 0
    if declared > MAX_DATASET_BYTES or (declared > (256 << 20) and declared > 1000 * max(file_size, 1)):
        raise InputFormatError(
            f"dataset declares {declared} bytes in a file of {file_size} bytes; refused",
            file=path,
            layer=layer,
            tensor=name,
            actual=tuple(node.shape),
        )
    try:
        # HDF5 converts a big-endian dataset while reading (no second copy): every array lstmconv holds is
        # in the machine's order, so writers that copy raw bytes (safetensors, ONNX raw_data) stay right.
        # read_direct into an uninitialised array, not node[()]: h5py zero-fills the arrays it allocates
        # (calloc), a needless pass over every weight that is also where most of a large conversion's page
        # faults came from (100k of 150k at 1.1 GiB). HDF5 writes every element, fill values included.
        array = buffers.empty(node.shape, node.dtype.newbyteorder("="))
        if array.size:
            node.read_direct(array)
        return array
    except (OSError, TypeError, ValueError, RuntimeError) as error:
        raise InputFormatError(f"cannot read dataset: {error}", file=path, layer=layer, tensor=name) from None


def _dataset_loader(path: Path, group: h5py.Group, names: list[str], layer: str) -> Any:
    def load() -> list[np.ndarray]:
        return [read_dataset(path, group, name, layer) for name in names]

    return load


# ---------------------------------------------------------------------------------------------------
# Keras 3


def _open_keras_zip(
    path: Path,
    archive: zipfile.ZipFile,
    stack: contextlib.ExitStack,
    sidecar: dict[str, Any] | None,
    meanwhile: Callable[[], object] | None,
) -> tuple[KerasFileInfo, list[KerasLayerEntry], dict[str, Any]]:
    for member in archive.infolist():
        if member.filename.startswith(("/", "\\")) or ".." in Path(member.filename).parts or ":" in member.filename:
            raise InputFormatError(f"archive member '{member.filename}' has an unsafe path; refused", file=path)
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > MAX_DATASET_BYTES or (member.file_size > (64 << 20) and ratio > 200):
            raise InputFormatError(
                f"archive member '{member.filename}' expands to {member.file_size} bytes "
                f"from {member.compress_size} (a zip bomb?); refused",
                file=path,
            )
    members = set(archive.namelist())
    if "config.json" not in members:
        raise InputFormatError("not a Keras 3 archive: no config.json inside", file=path)
    if "model.weights.h5" not in members:
        raise InputFormatError(
            "Keras 3 archive without model.weights.h5", file=path, hint="only HDF5 weight stores are supported"
        )
    try:
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in members else {}
    except ValueError as error:
        raise InputFormatError(f"config.json or metadata.json is not valid JSON: {error}", file=path) from None
    version = metadata.get("keras_version") or "3"
    prescan_hdf5(path, "model.weights.h5", meanwhile=meanwhile)
    handle = stack.enter_context(h5py.File(stack.enter_context(open_member(path, "model.weights.h5")), "r"))
    info = KerasFileInfo(str(path), version, "keras3-zip", True)
    return info, _keras3_entries(handle, config, info), config


_CLASS_OF_PATH = {
    "lstm": "LSTM",
    "gru": "GRU",
    "simple_rnn": "SimpleRNN",
    "bidirectional": "Bidirectional",
    "dense": "Dense",
    "embedding": "Embedding",
    "time_distributed": "TimeDistributed",
}


def _snake_case(name: str) -> str:
    # keras/src/utils/naming.py to_snake_case
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_entries(handle: h5py.File, model: dict[str, Any] | None, info: KerasFileInfo) -> list[KerasLayerEntry]:
    entries: list[KerasLayerEntry] = []
    if model is None:
        layers = handle.get("layers")
        if not isinstance(layers, h5py.Group):
            raise InputFormatError("Keras 3 weights file without a 'layers' group", file=info.path)
        for key in sorted(layers, key=_natural_key):
            base = re.sub(r"_\d+$", "", key)
            vars_group = layers[key].get("vars")
            name = _text_attr(vars_group, "name") if isinstance(vars_group, h5py.Group) else None
            stated_class, stated_config = _layer_config_attribute(Path(info.path), layers[key], name or key)
            cls = stated_class or _CLASS_OF_PATH.get(base)
            entry = _keras3_entry(handle, f"layers/{key}", name or key, cls, stated_config, info)
            if stated_config is None:
                entry.notes.append(
                    "layer class from its path in the weights file; config not in the file "
                    "(return_sequences/go_backwards unknown; pass --config (config=...) to state them)"
                )
            entries.append(entry)
        return entries
    counters: dict[tuple[str, ...], dict[str, int]] = {}
    for name, cls, cfg, prefix in flatten_config(model):
        container = tuple(prefix)
        used = counters.setdefault(container, {})
        snake = _snake_case(cls)
        index = used.get(snake, 0)
        used[snake] = index + 1
        unique = snake if index == 0 else f"{snake}_{index}"
        if prefix:
            raise ConfigError(
                "nested models inside a Keras 3 model are not supported yet",
                file=info.path,
                layer=prefix[0],
                hint="save the inner model on its own and convert that file",
            )
        if cls in _NESTED_MODELS:
            continue
        entries.append(_keras3_entry(handle, f"layers/{unique}", name, cls, cfg, info))
    return entries


def _natural_key(key: str) -> tuple[str, int]:
    match = re.match(r"(.*?)(?:_(\d+))?$", key)
    assert match is not None
    return match.group(1), int(match.group(2) or 0)


def _keras3_entry(
    handle: h5py.File, path: str, name: str, cls: str | None, cfg: dict[str, Any] | None, info: KerasFileInfo
) -> KerasLayerEntry:
    if cls in ("LSTM", "GRU", "SimpleRNN", "RNN"):
        subpaths = [f"{path}/cell/vars"]
    elif cls == "Bidirectional":
        subpaths = [f"{path}/forward_layer/cell/vars", f"{path}/backward_layer/cell/vars"]
    elif cls == "TimeDistributed":
        subpaths = [f"{path}/layer/vars"]
    else:
        subpaths = [f"{path}/vars"]
    names: list[str] = []
    for sub in subpaths:
        group = handle.get(sub)
        if isinstance(group, h5py.Group):
            names.extend(f"{sub}/{k}" for k in sorted(group, key=lambda k: int(k) if k.isdigit() else -1))
    if cls not in _CLASS_OF_PATH.values() and cls != "RNN":
        # Unknown class: report its weights so it is listed as left out, never silently dropped.
        names = _all_datasets(handle, path)

    def load() -> list[np.ndarray]:
        return [read_dataset(Path(info.path), handle, dataset, name) for dataset in names]

    return KerasLayerEntry(name=name, class_name=cls, config=cfg, array_names=names, load_arrays=load)


def _all_datasets(handle: h5py.File, path: str) -> list[str]:
    group = handle.get(path)
    found: list[str] = []
    if isinstance(group, h5py.Group):
        group.visititems(lambda key, node: found.append(f"{path}/{key}") if isinstance(node, h5py.Dataset) else None)
    return found
