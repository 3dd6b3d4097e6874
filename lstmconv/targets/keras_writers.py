"""Write Keras weight files: Keras 3 ``.weights.h5`` and legacy Keras 2 ``.h5`` (see :mod:`lstmconv.adapters.keras_plan`).

A legacy ``.h5`` of a model whose wiring is known is what tf.keras ``model.save("m.h5")`` writes: the root's
``model_config`` (Keras 2 JSON), ``keras_version`` and ``backend`` attributes, and the weights under
``model_weights`` (``layer_names``, each layer's ``weight_names``), so ``tf.keras.models.load_model`` rebuilds
the model and ``load_weights`` still finds the weights. Without a wiring, the file is a ``save_weights`` file
(weights at the root). A weights file without a model config says nothing about a layer's class or options
(activations, ``return_sequences``...), so each layer's group also carries its Keras config as the attribute
:data:`CONFIG_ATTRIBUTE` (JSON ``{"class_name", "config"}``), which Keras ignores and lstmconv reads back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lstmconv.adapters.keras_entries import CONFIG_ATTRIBUTE
from lstmconv.sources.keras_files import _snake_case
from lstmconv.schema import ModelInput, Wiring
from lstmconv.adapters.keras_plan import KerasLayerPlan

__all__ = ["KerasWeightsWriter", "write_keras_archive", "keras3_model_config", "keras2_model_config", "keras2_weight_names", "KERAS2_VERSION", "CONFIG_ATTRIBUTE"]

#: The Keras version stamped on legacy files: activation names there mean what Keras 2 computes.
KERAS2_VERSION = "2.15.0"

_CELL = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}


def _vars(group: h5py.Group, name: str, arrays: list[np.ndarray]) -> None:
    holder = group.create_group("vars")
    holder.attrs["name"] = name
    for index, array in enumerate(arrays):
        holder.create_dataset(str(index), data=np.ascontiguousarray(array))


class KerasWeightsWriter:
    """Write a Keras weights file plan by plan: Keras 3 ``.weights.h5`` (``keras3``) or a legacy Keras 2 /
    tf.keras ``save_weights`` file, loadable by name. Each plan's arrays can be dropped once added."""

    def __init__(self, path: Path, keras3: bool, wiring: Wiring | None = None) -> None:
        self.handle = h5py.File(path, "w")
        self.keras3 = keras3
        self.layers = self.handle.create_group("layers") if keras3 else None
        # a legacy file of a wired model is a whole model: weights under model_weights, config at the root
        self.wiring = wiring if not keras3 else None
        self.weights_root = self.handle.create_group("model_weights") if self.wiring is not None else self.handle
        self.counters: dict[str, int] = {}
        self.names: list[str] = []
        self.plans: list[KerasLayerPlan] = []  # without their arrays, for the model config

    def add(self, plan: KerasLayerPlan) -> None:
        """Write ``plan``'s layer and arrays."""
        self.names.append(plan.name)
        self.plans.append(KerasLayerPlan(plan.name, plan.class_name, plan.config, [], plan.inner_class, plan.source_layer))
        if self.layers is None:
            group = self.weights_root.create_group(plan.name)
            names = keras2_weight_names(plan)
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, array in zip(names, plan.arrays):
                group.create_dataset(name, data=np.ascontiguousarray(array))
            return
        snake = _snake_case(plan.class_name)
        index = self.counters.get(snake, 0)
        self.counters[snake] = index + 1
        group = self.layers.create_group(snake if index == 0 else f"{snake}_{index}")
        group.attrs[CONFIG_ATTRIBUTE] = json.dumps(_layer_config(plan, 3))
        _vars(group, plan.name, [])
        if plan.class_name in _CELL:
            _vars(group.create_group("cell"), _CELL[plan.class_name], plan.arrays)
        elif plan.class_name == "Bidirectional":
            half = len(plan.arrays) // 2  # forward weights, then backward weights
            inner = plan.inner_class or "LSTM"
            for side, arrays in (("forward", plan.arrays[:half]), ("backward", plan.arrays[half:])):
                direction = group.create_group(f"{side}_layer")
                _vars(direction, f"{side}_{plan.name}", [])
                _vars(direction.create_group("cell"), _CELL[inner], arrays)
        elif plan.class_name == "TimeDistributed":
            _vars(group.create_group("layer"), plan.name + "_dense", plan.arrays)
        else:
            group.pop("vars")
            _vars(group, plan.name, plan.arrays)

    def close(self) -> None:
        """Write what describes the whole file and close it."""
        if self.keras3:
            _vars(self.handle, "model", [])
        else:
            for node in {self.handle, self.weights_root}:
                node.attrs["backend"] = "tensorflow"
                node.attrs["keras_version"] = KERAS2_VERSION
            self.weights_root.attrs["layer_names"] = np.array([name.encode() for name in self.names])
            planned = {plan.source_layer for plan in self.plans}
            wiring = self.wiring
            if wiring is not None and not wiring.unsupported and all(name in planned for name in wiring.inbound):
                self.handle.attrs["model_config"] = json.dumps(keras2_model_config(self.plans, wiring))
            else:  # the model cannot be rebuilt (a layer left out): each layer says what it is
                for plan in self.plans:
                    self.weights_root[plan.name].attrs[CONFIG_ATTRIBUTE] = json.dumps(_layer_config(plan, 2))
        self.handle.close()

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        if self.handle.id.valid:
            self.handle.close()


def keras2_weight_names(plan: KerasLayerPlan) -> list[str]:
    leaves = {"Embedding": ["embeddings"], "Dense": ["kernel", "bias"], "TimeDistributed": ["kernel", "bias"]}
    if plan.class_name in _CELL:
        return [f"{plan.name}/{_CELL[plan.class_name]}/{leaf}:0" for leaf in ("kernel", "recurrent_kernel", "bias")][: len(plan.arrays)]
    if plan.class_name == "Bidirectional":
        cell = _CELL[plan.inner_class or "LSTM"]
        half = len(plan.arrays) // 2
        leaf_names = ("kernel", "recurrent_kernel", "bias")[:half]
        return [f"{plan.name}/{side}_{plan.name}/{cell}/{leaf}:0" for side in ("forward", "backward") for leaf in leaf_names]
    return [f"{plan.name}/{leaf}:0" for leaf in leaves.get(plan.class_name, [])][: len(plan.arrays)]


def _layer_config(plan: KerasLayerPlan, keras_major: int, wiring: Wiring | None = None) -> dict[str, Any]:
    """``{"class_name", "config"}`` of one layer as Keras ``keras_major`` serializes it (Keras 3 adds ``module``
    and ``registered_name``; a wrapped layer is serialized the same way). A recurrent layer whose states the
    ``wiring`` reads returns them (``return_state``)."""
    config = dict(plan.config)
    if wiring is not None and _reads_states(plan, wiring):
        if "layer" in config:
            config["layer"] = {**config["layer"], "config": {**config["layer"]["config"], "return_state": True}}
        else:
            config["return_state"] = True
    if "layer" in config:  # Bidirectional / TimeDistributed: the wrapped layer as tf.keras 2.13+ and Keras 3 write it
        inner = config["layer"]
        config["layer"] = {"module": "keras.layers", "class_name": inner["class_name"], "config": inner["config"], "registered_name": None}
    if keras_major < 3:
        return {"class_name": plan.class_name, "config": config}
    return {"module": "keras.layers", "class_name": plan.class_name, "config": config, "registered_name": None}


def _reads_states(plan: KerasLayerPlan, wiring: Wiring) -> bool:
    """Whether the wiring reads a tensor of ``plan``'s layer past its outputs (a return_state state)."""
    outputs = 2 if plan.class_name == "Bidirectional" and plan.config.get("merge_mode") is None else 1
    return any(index >= outputs for index in wiring.tensors_read(plan.source_layer))


def keras2_model_config(plans: list[KerasLayerPlan], wiring: Wiring) -> dict[str, Any]:
    """tf.keras's ``model_config`` for ``plans`` connected as ``wiring`` says (Sequential when it is a chain)."""
    by_source = {plan.source_layer: plan for plan in plans}

    def input_layer(model_input: ModelInput) -> dict[str, Any]:
        dtype = model_input.dtype if model_input.dtype in ("int32", "int64") else "float32"
        config = {"batch_input_shape": [None, *model_input.shape], "dtype": dtype, "sparse": False, "name": model_input.name}
        return {"class_name": "InputLayer", "config": config}

    order = [name for name in wiring.inbound if name in by_source]
    if _is_chain(wiring, order):
        layers = [input_layer(wiring.inputs[0])] + [_layer_config(by_source[name], 2) for name in order]
        return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}
    def named(source: str) -> str:
        return by_source[source].name if source in by_source else source

    layers = [{**input_layer(i), "name": i.name, "inbound_nodes": []} for i in wiring.inputs]
    for name in order:
        plan = by_source[name]
        # tf.keras lists a recurrent layer's initial states after its input, as tensors of the node
        refs = [(s, 0) for s in wiring.inbound[name]] + list(wiring.initial_state.get(name, ()))
        sources = [[named(s), 0, index, {}] for s, index in refs]
        layers.append({**_layer_config(plan, 2, wiring), "name": plan.name, "inbound_nodes": [sources]})
    config = {
        "name": "model",
        "layers": layers,
        "input_layers": [[i.name, 0, 0] for i in wiring.inputs],
        "output_layers": [[named(o), 0, index] for o, index in wiring.model_outputs()],
    }
    return {"class_name": "Functional", "config": config}


def _is_chain(wiring: Wiring, order: list[str]) -> bool:
    """One input, one output, each layer reading the one before it (and no state passed around)."""
    plain = not wiring.initial_state and not wiring.output_tensors
    return plain and len(wiring.inputs) == 1 and len(wiring.outputs) == 1 and all(
        wiring.inbound[name] == ((wiring.inputs[0].name,) if k == 0 else (order[k - 1],)) for k, name in enumerate(order)
    )


def keras3_model_config(plans: list[KerasLayerPlan], wiring: Wiring) -> dict[str, Any]:
    """A Keras 3 ``config.json`` for ``plans`` connected as ``wiring`` says (Sequential when it is a chain)."""
    by_source = {plan.source_layer: plan for plan in plans}

    def layer_config(plan: KerasLayerPlan) -> dict[str, Any]:
        return _layer_config(plan, 3, wiring)

    def input_layer(model_input: ModelInput) -> dict[str, Any]:
        dtype = model_input.dtype if model_input.dtype in ("int32", "int64") else "float32"
        config = {"batch_shape": [None, *model_input.shape], "dtype": dtype, "sparse": False, "name": model_input.name}
        return {"module": "keras.layers", "class_name": "InputLayer", "config": config, "registered_name": None}

    order = [name for name in wiring.inbound if name in by_source]
    if _is_chain(wiring, order):
        layers = [input_layer(wiring.inputs[0])] + [layer_config(by_source[name]) for name in order]
        return {"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "layers": layers}, "registered_name": None}

    shapes: dict[str, list[int | None]] = {i.name: [None, *i.shape] for i in wiring.inputs}
    dtypes: dict[str, str] = {i.name: i.dtype for i in wiring.inputs}
    for name in order:
        shapes[name] = _output_shape(by_source[name], [shapes[s] for s in wiring.inbound[name]])
        dtypes[name] = "float32"

    def tensor(source: str, index: int = 0) -> dict[str, Any]:
        name = by_source[source].name if source in by_source else source
        shape = shapes[source] if index == 0 else [None, _units(by_source[source])]
        config = {"shape": shape, "dtype": dtypes[source], "keras_history": [name, 0, index]}
        return {"class_name": "__keras_tensor__", "config": config}

    layers = []
    for model_input in wiring.inputs:
        layers.append({**input_layer(model_input), "name": model_input.name, "inbound_nodes": []})
    for name in order:
        plan = by_source[name]
        sources = [tensor(s) for s in wiring.inbound[name]]
        args = [sources] if plan.class_name == "Concatenate" else sources
        states = wiring.initial_state.get(name, ())
        kwargs = {"initial_state": [tensor(s, index) for s, index in states]} if states else {}
        layers.append({**layer_config(plan), "name": plan.name, "inbound_nodes": [{"args": args, "kwargs": kwargs}]})
    config = {
        "name": "functional",
        "layers": layers,
        "input_layers": [[i.name, 0, 0] for i in wiring.inputs],
        "output_layers": [[by_source[o].name if o in by_source else o, 0, index] for o, index in wiring.model_outputs()],
    }
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": config, "registered_name": "Functional"}


def _units(plan: KerasLayerPlan) -> int:
    """A recurrent layer's units (the width of each state it returns)."""
    return int(plan.config.get("layer", {}).get("config", plan.config)["units"])


def _output_shape(plan: KerasLayerPlan, inputs: list[list[int | None]]) -> list[int | None]:
    """Keras output shape of ``plan`` (batch dimension first, None when unknown)."""
    shape = inputs[0]
    config = plan.config
    if plan.class_name in _CELL or plan.class_name == "Bidirectional":
        inner = config.get("layer", {}).get("config", config)
        width = inner["units"] * (2 if plan.class_name == "Bidirectional" and config.get("merge_mode") == "concat" else 1)
        return [shape[0], shape[1], width] if inner.get("return_sequences") else [shape[0], width]
    if plan.class_name in ("Dense", "TimeDistributed"):
        units = config.get("units", config.get("layer", {}).get("config", {}).get("units"))
        return [*shape[:-1], units]
    if plan.class_name == "Embedding":
        return [*shape, config["output_dim"]]
    if plan.class_name == "Concatenate":
        axis = config.get("axis", -1) % len(shape)
        joined = list(shape)
        sizes = [s[axis] for s in inputs]
        joined[axis] = None if any(v is None for v in sizes) else sum(sizes)  # type: ignore[misc]
        return joined
    return list(shape)


def write_keras_archive(path: Path, plans: list[KerasLayerPlan], wiring: Wiring, keras_version: str, weights: Path) -> None:
    """A Keras 3 ``.keras`` zip: config.json, metadata.json and the Keras 3 weights file ``weights`` (copied into
    the archive in chunks; deterministic bytes). ``plans`` describe the layers (their arrays are not read)."""
    import json
    import shutil
    import zipfile

    config = keras3_model_config(plans, wiring)
    small = {
        "metadata.json": json.dumps({"keras_version": keras_version, "date_saved": "lstmconv"}).encode(),
        "config.json": json.dumps(config).encode(),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in small.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        info = zipfile.ZipInfo("model.weights.h5", date_time=(1980, 1, 1, 0, 0, 0))
        info.file_size = weights.stat().st_size
        with weights.open("rb") as source, archive.open(info, "w") as member:
            shutil.copyfileobj(source, member, 8 << 20)
