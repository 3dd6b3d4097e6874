"""How the layers of a Keras model connect, from its config (Sequential and functional; Keras 1, 2 and 3).

Keras 1/2 functional configs list ``inbound_nodes`` as ``[[[layer, node_index, tensor_index, kwargs], ...]]``;
Keras 3 as ``[{"args": [...], "kwargs": {...}}]`` with ``{"class_name": "__keras_tensor__", "config":
{"keras_history": [layer, node_index, tensor_index]}}`` tensors. Shared layers (called more than once),
a layer reading a second output of another (``return_state``), or extra tensor arguments such as
``initial_state`` cannot be rebuilt as one fused-op graph and are listed in ``Wiring.unsupported``.
"""

from __future__ import annotations

from typing import Any

from lstmconv.adapters.keras_layers import GRAPH_CLASSES, RECURRENT_CLASSES
from lstmconv.schema import ModelInput, Wiring

__all__ = ["wiring_from_config"]

_RECURRENT = set(RECURRENT_CLASSES)


def wiring_from_config(model: dict[str, Any]) -> Wiring | None:
    """The wiring of a Keras model config, or ``None`` when the config is not a model we can wire."""
    cls, cfg = model.get("class_name"), model.get("config", {})
    layers = cfg if isinstance(cfg, list) else cfg.get("layers", [])
    if cls == "Sequential":
        return _sequential(layers)
    if cls in ("Model", "Functional"):
        return _functional(cfg, layers)
    return None


def _name(layer: dict[str, Any]) -> str:
    return str(layer.get("config", {}).get("name") or layer.get("name"))


def _shape_dtype(config: dict[str, Any]) -> tuple[tuple[int | None, ...], str] | None:
    shape = config.get("batch_input_shape") or config.get("batch_shape")
    if shape is None and isinstance(config.get("build_config"), dict):
        shape = config["build_config"].get("input_shape")
    if shape is None:
        return None
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):  # Keras 3 DTypePolicy
        dtype = dtype.get("config", {}).get("name", "float32")
    return tuple(shape[1:]), str(dtype)


def _unsupported(layer: dict[str, Any]) -> str | None:
    cls, config = layer.get("class_name"), layer.get("config", {})
    if cls not in GRAPH_CLASSES:
        return f"{_name(layer)} ({cls}): lstmconv does not convert this layer class"
    if cls == "TimeDistributed" and config.get("layer", {}).get("class_name") != "Dense":
        return f"{_name(layer)} (TimeDistributed): only TimeDistributed(Dense) is supported"
    return None


def _sequential(layers: list[dict[str, Any]]) -> Wiring | None:
    inbound: dict[str, tuple[str, ...]] = {}
    unsupported: list[str] = []
    inputs: list[ModelInput] = []
    previous: str | None = None
    for layer in layers:
        name, config = _name(layer), layer.get("config", {})
        if layer.get("class_name") == "InputLayer":
            found = _shape_dtype(config)
            if found is not None:
                inputs.append(ModelInput(name=name, shape=found[0], dtype=found[1]))
                previous = name
            continue
        if previous is None:
            found = _shape_dtype(config)
            if found is None:
                return None  # an unbuilt Sequential: no input shape to wire from
            dtype = "int32" if layer.get("class_name") == "Embedding" else found[1]
            inputs.append(ModelInput(name=f"{name}_input", shape=found[0], dtype=dtype))
            previous = inputs[-1].name
        inbound[name] = (previous,)
        reason = _unsupported(layer)
        if reason:
            unsupported.append(reason)
        previous = name
    if previous is None or not inputs:
        return None
    return Wiring(inputs=tuple(inputs), inbound=inbound, outputs=(previous,), unsupported=tuple(unsupported))


def _functional(cfg: dict[str, Any], layers: list[dict[str, Any]]) -> Wiring | None:
    inbound: dict[str, tuple[str, ...]] = {}
    initial_state: dict[str, tuple[tuple[str, int], ...]] = {}
    unsupported: list[str] = []
    inputs: list[ModelInput] = []
    for layer in layers:
        name, config = _name(layer), layer.get("config", {})
        if layer.get("class_name") == "InputLayer":
            found = _shape_dtype(config)
            if found is None:
                return None
            inputs.append(ModelInput(name=name, shape=found[0], dtype=found[1]))
            continue
        nodes = layer.get("inbound_nodes", [])
        if len(nodes) != 1:
            unsupported.append(f"{name} ({layer.get('class_name')}): called {len(nodes)} times (shared layer)")
            continue
        history, extra, states = _node_tensors(nodes[0])
        if layer.get("class_name") in _RECURRENT and len(history) > 1:  # Keras 2: x, then the initial states
            history, states = history[:1], history[1:] + states
        if states and layer.get("class_name") in _RECURRENT:
            initial_state[name] = tuple((source, tensor) for source, _, tensor in states)
        elif states:
            extra = True
        if extra or any(tensor != 0 for _, _, tensor in history):
            unsupported.append(
                f"{name} ({layer.get('class_name')}): reads another tensor than a layer's first output as its input"
            )
        inbound[name] = tuple(source for source, _, _ in history)
        if len(history) > 1 and layer.get("class_name") != "Concatenate":
            unsupported.append(
                f"{name} ({layer.get('class_name')}): reads {len(history)} tensors (e.g. an initial_state taken from "
                "another layer)"
            )
        reason = _unsupported(layer)
        if reason:
            unsupported.append(reason)
    classes = {_name(layer): layer.get("class_name") for layer in layers}
    tensors = [(str(e[0]), int(e[2]) if len(e) > 2 else 0) for e in _layer_list(cfg.get("output_layers", []))]
    for source, tensor in [*tensors, *(ref for refs in initial_state.values() for ref in refs)]:
        if tensor != 0 and classes.get(source) not in _RECURRENT:
            unsupported.append(f"{source} ({classes.get(source)}): another layer reads its output tensor {tensor}")
    outputs = tuple(dict.fromkeys(name for name, _ in tensors))
    if not inputs or not outputs:
        return None
    return Wiring(
        inputs=tuple(inputs),
        inbound=inbound,
        outputs=outputs,
        initial_state=initial_state,
        output_tensors=tuple(tensors) if any(tensor != 0 for _, tensor in tensors) else (),
        unsupported=tuple(unsupported),
    )


def _layer_list(value: Any) -> list[list[Any]]:
    """Keras writes [[name, 0, 0], ...] or, for one tensor in Keras 3, [name, 0, 0]."""
    if value and isinstance(value[0], str):
        return [value]
    return list(value)


def _node_tensors(node: Any) -> tuple[list[tuple[str, int, int]], bool, list[tuple[str, int, int]]]:
    """(layer, node, tensor) of every tensor a call reads as arguments; True when other tensors come through
    keyword arguments; the tensors given as ``initial_state``."""
    if isinstance(node, dict):  # Keras 3
        history: list[tuple[str, int, int]] = []
        _collect(node.get("args", []), history)
        kwargs = dict(node.get("kwargs", {}))
        states: list[tuple[str, int, int]] = []
        _collect(kwargs.pop("initial_state", None), states)
        keyword: list[tuple[str, int, int]] = []
        _collect(kwargs, keyword)
        return history, bool(keyword), states
    entries = [entry for entry in node if isinstance(entry, list) and entry and isinstance(entry[0], str)]
    extra = any(len(entry) > 3 and isinstance(entry[3], dict) and entry[3] for entry in entries)
    return [(str(e[0]), int(e[1]), int(e[2])) for e in entries], extra, []


def _collect(value: Any, found: list[tuple[str, int, int]]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            layer, node_index, tensor_index = value["config"]["keras_history"]
            found.append((str(layer), int(node_index), int(tensor_index)))
            return
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)
