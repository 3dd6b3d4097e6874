"""Write Keras weight files: Keras 3 ``.weights.h5`` and legacy Keras 2 ``.h5`` (see :mod:`lstmconv.targets.keras`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from lstmconv.formats.keras_files import _snake_case
from lstmconv.targets.keras import KerasLayerPlan

__all__ = ["write_keras3_weights", "write_keras2_weights", "KERAS2_VERSION"]

#: The Keras version stamped on legacy files: activation names there mean what Keras 2 computes.
KERAS2_VERSION = "2.15.0"
_CELL = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}


def _vars(group: h5py.Group, name: str, arrays: list[np.ndarray]) -> None:
    holder = group.create_group("vars")
    holder.attrs["name"] = name
    for index, array in enumerate(arrays):
        holder.create_dataset(str(index), data=np.ascontiguousarray(array))


def write_keras3_weights(path: Path, plans: list[KerasLayerPlan]) -> None:
    """A Keras 3 weights file for a model holding ``plans``' layers in this order."""
    counters: dict[str, int] = {}
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layers")
        for plan in plans:
            snake = _snake_case(plan.class_name)
            index = counters.get(snake, 0)
            counters[snake] = index + 1
            group = layers.create_group(snake if index == 0 else f"{snake}_{index}")
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
        _vars(handle, "model", [])


def write_keras2_weights(path: Path, plans: list[KerasLayerPlan]) -> None:
    """A legacy (Keras 2 / tf.keras ``save_weights``) HDF5 file, loadable by name."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([p.name.encode() for p in plans])
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["keras_version"] = KERAS2_VERSION
        for plan in plans:
            group = handle.create_group(plan.name)
            names = _keras2_weight_names(plan)
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, array in zip(names, plan.arrays):
                group.create_dataset(name, data=np.ascontiguousarray(array))


def _keras2_weight_names(plan: KerasLayerPlan) -> list[str]:
    leaves = {"Embedding": ["embeddings"], "Dense": ["kernel", "bias"], "TimeDistributed": ["kernel", "bias"]}
    if plan.class_name in _CELL:
        return [f"{plan.name}/{_CELL[plan.class_name]}/{leaf}:0" for leaf in ("kernel", "recurrent_kernel", "bias")][: len(plan.arrays)]
    if plan.class_name == "Bidirectional":
        cell = _CELL[plan.inner_class or "LSTM"]
        half = len(plan.arrays) // 2
        leaf_names = ("kernel", "recurrent_kernel", "bias")[:half]
        return [f"{plan.name}/{side}_{plan.name}/{cell}/{leaf}:0" for side in ("forward", "backward") for leaf in leaf_names]
    return [f"{plan.name}/{leaf}:0" for leaf in leaves.get(plan.class_name, [])][: len(plan.arrays)]
