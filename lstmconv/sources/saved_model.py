"""TensorFlow SavedModel directories written by tf.keras 2 (``model.save(dir)``, the default format of TF 2.0-2.12).

SRC is the directory or its ``saved_model.pb``. The weights are the ``variables/variables`` tensor bundle
(:mod:`lstmconv.io.tf_bundle`), keyed by object paths that often name no layer (``trainable_variables/3``,
``variables/5``); the bundle's object graph ties each to its layer (:mod:`lstmconv.io.tf_objects`). Each layer's
Keras config is JSON that tf.keras stored beside its object: in ``keras_metadata.pb`` (TF 2.5+) or, before
that, in the user objects of ``saved_model.pb``'s object graph. The root's is the model's: a Sequential or
functional model converts whole; a subclassed model (its config ``{}``, its call traced code) converts layer by
layer, or whole from a ``--config`` that states the architecture. The traced functions are never run or read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lstmconv.adapters.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.io.tf_bundle import open_bundle
from lstmconv.io.tf_objects import KerasObject, checkpoint_graph, keras_objects, node_at, variables_under
from lstmconv.protocols import LayerItem, Options
from lstmconv.schema import Wiring
from lstmconv.sources.keras import keras_layers
from lstmconv.sources.keras_files import flatten_config, model_wiring, read_sidecar
from lstmconv.sources.tf_checkpoint import checkpoint_entries, layer_entries

__all__ = ["SOURCE"]

_PROTO = "saved_model.pb"
_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
#: tf.keras's identifiers of layer objects (metrics, the optimizer and plain tf.Modules are none)
_LAYERS = ("_tf_keras_layer", "_tf_keras_rnn_layer", "_tf_keras_input_layer", "_tf_keras_network", "_tf_keras_sequential", "_tf_keras_model")
_GRAPH_MODELS = ("Sequential", "Functional", "Model")


class SavedModelSource:
    def resolve(self, path: Path) -> Path | None:
        """A SavedModel directory stands for its ``saved_model.pb``."""
        proto = path / _PROTO
        return proto if path.is_dir() and proto.is_file() else None

    def claims(self, path: Path) -> bool:
        return path.name == _PROTO

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        entries, model, version = _read(path, options)
        info = KerasFileInfo(str(path), version, "saved-model", True)
        yield keras_layers(info, entries, skip_unsupported=options.skip_unsupported), model_wiring(model), [e.name for e in entries]


SOURCE = SavedModelSource()


def _read(path: Path, options: Options) -> tuple[list[KerasLayerEntry], dict[str, Any] | None, str]:
    """The layers' entries (each reading its variables when built), the model config and the Keras version."""
    folder = path.parent
    bundle = open_bundle(folder / "variables" / "variables.index")
    objects = keras_objects(folder)
    root = next((item for item in objects if item.path == "root"), None)
    if root is None or root.identifier not in _LAYERS:
        raise UnsupportedFeatureError(
            "a SavedModel that tf.keras did not write (no Keras metadata for its root object)",
            file=path,
            hint="lstmconv reads the SavedModels of Keras model.save(dir); save the model with Keras, or export it to ONNX",
        )
    if _GRAPH not in bundle.entries:
        raise InputFormatError("the SavedModel's variables hold no object graph", file=bundle.index)
    if not root.metadata:
        if options.config is None:
            raise InputFormatError(
                "the Keras metadata of this SavedModel is missing: tf.keras 2.5+ keeps the layers' configs in "
                "keras_metadata.pb beside saved_model.pb",
                file=folder / "keras_metadata.pb",
                hint="copy keras_metadata.pb from where the model was saved, or pass --config with model.to_json()",
            )
        model = read_sidecar(options.config)["model"]  # its variables are a TF2 checkpoint's, read as one
        return checkpoint_entries(bundle, model), model, model.get("keras_version") or "2-tf"
    root_metadata = _json(root, path)
    model = _model_config(root_metadata, options)
    configs: dict[str, tuple[str, dict[str, Any]]] = {}
    top: list[tuple[str, str]] = []  # (name, path) of the model's own layers, in node order
    for item in objects:
        if item.identifier not in _LAYERS or item.path == "root":
            continue
        metadata = _json(item, path)
        name, cls, cfg = metadata.get("name"), metadata.get("class_name"), metadata.get("config")
        if not isinstance(name, str) or not isinstance(cls, str) or not isinstance(cfg, dict):
            continue
        if not any(item.path.startswith(outer + ".") for _, outer in top):
            top.append((name, item.path))
        configs.setdefault(name, (cls, cfg))
    if model is not None:
        configs.update({name: (cls, cfg) for name, cls, cfg, _ in flatten_config(model)})
    nodes = checkpoint_graph(bundle.read_bytes(_GRAPH), bundle.index)
    layers = [(name, variables_under(nodes, node, bundle.entries, bundle.index))
              for name, object_path in top if (node := node_at(nodes, object_path)) is not None]
    version = root_metadata.get("keras_version")
    return layer_entries(bundle, layers, configs, model), model, version if isinstance(version, str) else "2-tf"


def _json(item: KerasObject, path: Path) -> dict[str, Any]:
    """An object's metadata JSON, with tf.keras's encodings of tuples and shapes (``{"class_name": "__tuple__",
    "items": [...]}``, ``TensorShape``) read back as lists, as tf.keras's ``json_utils.decode`` reads them."""

    def decode(value: dict[str, Any]) -> Any:
        if value.get("class_name") in ("__tuple__", "TensorShape") and isinstance(value.get("items"), list):
            return value["items"]
        return value

    try:
        data = json.loads(item.metadata, object_hook=decode) if item.metadata else {}
    except RecursionError:
        raise InputFormatError("an object's Keras metadata is nested too deeply to be a layer's", file=path, layer=item.path) from None
    except ValueError as error:
        raise InputFormatError(f"an object's Keras metadata is not JSON: {error}", file=path, layer=item.path) from None
    return data if isinstance(data, dict) else {}


def _model_config(root: dict[str, Any], options: Options) -> dict[str, Any] | None:
    """The model config: ``--config`` when given, else the root's when it is a Sequential or functional model
    (a subclassed model's config does not describe its layers' wiring)."""
    if options.config is not None:
        return read_sidecar(options.config)["model"]  # type: ignore[no-any-return]
    if root.get("class_name") in _GRAPH_MODELS and isinstance(root.get("config"), dict) and root["config"].get("layers"):
        return {"class_name": root["class_name"], "config": root["config"], "keras_version": root.get("keras_version")}
    return None
