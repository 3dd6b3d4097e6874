"""Keras layer entries -> canonical layers: the Keras-specific reading of configs and weight lists.

Handles the Keras 1 vocabulary (``output_dim``, ``inner_activation``, ``consume_less``), Keras 2/3 configs,
``Bidirectional`` (forward weights then backward weights), generic ``RNN(LSTMCell|GRUCell|SimpleRNNCell)``,
the CuDNN classes, and files with no config at all (kind and sizes from shapes, defaults of the Keras
version the file records; every assumed fact is listed in the layer's ``source.inferred``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.adapters.keras import dense_weight_to_canonical, keras_activation, recurrent_to_canonical
from lstmconv.adapters.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.errors import (
    ConfigError,
    InputFormatError,
    LstmconvError,
    ShapeMismatchError,
    UnsupportedFeatureError,
)
from lstmconv.gates import GATE_ORDER, gate_count
from lstmconv.layouts.keras import KERAS_CLASSES, KerasCellArrays, KerasLayout, KerasRecurrentArrays
from lstmconv.reference.common import LayerOutput, ReferenceFn, compute_dtype
from lstmconv.reference.keras import keras_forward
from lstmconv.schema import (
    ActivationLayer,
    CellActivations,
    ConcatenateLayer,
    DenseLayer,
    DropoutLayer,
    EmbeddingLayer,
    Layer,
    RecurrentMeta,
    SourceInfo,
)

__all__ = ["build_layer", "BuiltLayer", "RECURRENT_CLASSES", "WEIGHTLESS_CLASSES", "GRAPH_CLASSES"]

_CELL_OF_CLASS = {
    "LSTM": "lstm",
    "CuDNNLSTM": "lstm",
    "LSTMCell": "lstm",
    "GRU": "gru",
    "CuDNNGRU": "gru",
    "GRUCell": "gru",
    "SimpleRNN": "rnn",
    "SimpleRNNCell": "rnn",
}
RECURRENT_CLASSES = {"LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "RNN", "Bidirectional"}
_DROPOUT_CLASSES = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
}
#: Layers with no weights whose absence from the output changes nothing about the weights moved.
WEIGHTLESS_CLASSES = {
    "InputLayer",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Lambda",
    "Concatenate",
    "Add",
    "Multiply",
    "Average",
    "Subtract",
    "Maximum",
    "Minimum",
    "Dot",
    "Masking",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "Merge",
    "Cropping1D",
    "ZeroPadding1D",
}
#: Classes a whole-model graph can be rebuilt from.
GRAPH_CLASSES = RECURRENT_CLASSES | _DROPOUT_CLASSES | {"InputLayer", "Dense", "TimeDistributed", "Embedding", "Activation", "Concatenate"}
# Keras 1 per-gate dataset names end in _W_i, _U_f, _b_c ... (optionally with a ':0' suffix).
_KERAS1_GATE_NAME = re.compile(r"(?:^|[_/])([WUb])_([ifcozrh])(?::\d+)?$")


@dataclass(frozen=True)
class BuiltLayer:
    """A canonical layer and the Keras reference computing it from the arrays as stored (for the check)."""

    layer: Layer
    reference: ReferenceFn | None


def build_layer(entry: KerasLayerEntry, info: KerasFileInfo) -> BuiltLayer | None:
    """The canonical layer for ``entry``; ``None`` for weightless structural layers.

    Raises an :class:`~lstmconv.errors.LstmconvError` naming the layer when it cannot be read, and
    :class:`~lstmconv.errors.UnsupportedFeatureError` for layers with weights lstmconv does not convert.
    """
    try:
        return _build(entry, info)
    except LstmconvError as error:
        raise error.with_context(file=info.path, layer=entry.name) from None


def _build(entry: KerasLayerEntry, info: KerasFileInfo) -> BuiltLayer | None:
    cls = entry.class_name
    if entry.config is None:
        return _build_without_config(entry, info)
    cfg = entry.config
    if cls in RECURRENT_CLASSES:
        return _recurrent(entry, info, cls, cfg, inferred=list(entry.notes))
    if cls == "Dense":
        return _dense(entry, info, cfg, time_distributed=False)
    if cls == "TimeDistributed":
        inner = cfg.get("layer", {})
        if inner.get("class_name") != "Dense":
            raise UnsupportedFeatureError(f"TimeDistributed({inner.get('class_name')}) is not supported")
        return _dense(entry, info, inner.get("config", {}), time_distributed=True)
    if cls == "Embedding":
        return _embedding(entry, info, cfg)
    if cls == "Activation":
        activation = keras_activation(cfg.get("activation"), info.major, layer=entry.name)
        return BuiltLayer(ActivationLayer(name=entry.name, activation=activation, source=_source(info)), None)
    if cls in ("Concatenate", "Merge") and (cls == "Concatenate" or cfg.get("mode") == "concat"):
        axis = int(cfg.get("axis", cfg.get("concat_axis", -1)))
        return BuiltLayer(ConcatenateLayer(name=entry.name, axis=axis, source=_source(info)), None)
    if cls in _DROPOUT_CLASSES:
        rate = float(cfg.get("rate", cfg.get("p", 0.0)) or 0.0)
        return BuiltLayer(DropoutLayer(name=entry.name, rate=rate, source=_source(info)), None)
    if cls in WEIGHTLESS_CLASSES and not entry.array_names:
        return None
    if not entry.array_names:
        return None
    raise UnsupportedFeatureError(
        f"{cls} layers are not converted by lstmconv ({len(entry.array_names)} weight tensors left out)"
    )


def _source(info: KerasFileInfo, inferred: list[str] | None = None, layout: str | None = None) -> SourceInfo:
    return SourceInfo(
        framework=info.framework,
        layout=layout or f"keras{info.major}",
        version=info.keras_version,
        inferred=tuple(inferred or ()),
    )


def _arrays(entry: KerasLayerEntry) -> list[np.ndarray]:
    arrays = entry.load_arrays()
    for name, array in zip(entry.array_names, arrays):
        if array.dtype.kind != "f":
            raise InputFormatError(f"weights must be floating point, got dtype {array.dtype}", tensor=name)
    return arrays


# ---------------------------------------------------------------------------------------------------
# Recurrent layers


def _recurrent(
    entry: KerasLayerEntry, info: KerasFileInfo, cls: str, cfg: dict[str, Any], inferred: list[str]
) -> BuiltLayer:
    bidirectional = cls == "Bidirectional"
    if bidirectional:
        inner = cfg.get("layer") or {}
        forward_cls, forward_cfg = inner.get("class_name"), inner.get("config", {})
        backward = cfg.get("backward_layer")
        merge = cfg.get("merge_mode", "concat")
        merge_mode = "none" if merge is None else str(merge)
        if backward is not None:
            _same_cell_config(forward_cls, forward_cfg, backward.get("class_name"), backward.get("config", {}))
        if forward_cfg.get("go_backwards"):
            raise UnsupportedFeatureError("Bidirectional wrapping a go_backwards=True layer is not supported")
    else:
        forward_cls, forward_cfg, merge_mode = cls, cfg, None
    cell_cls, cell_cfg = forward_cls, forward_cfg
    if forward_cls == "RNN":
        cell = forward_cfg.get("cell", {})
        cell_cls, cell_cfg = cell.get("class_name"), cell.get("config", {})
    if cell_cls not in _CELL_OF_CLASS:
        raise UnsupportedFeatureError(f"recurrent layer {forward_cls}({cell_cls or ''}) is not supported")
    cell_kind = _CELL_OF_CLASS[cell_cls]
    arrays = _arrays(entry)
    names = entry.array_names
    halves = _split_directions(arrays, names, bidirectional)
    cudnn_class = cell_cls.startswith("CuDNN")
    cells = [_cell_arrays(cell_kind, a, n, cudnn_class) for a, n in halves]
    hidden = _hidden_size(cells[0], cell_kind, cell_cfg)
    layout = cells[0].layout
    use_bias = "bias" in cells[0].arrays or any(k.startswith("b_") for k in cells[0].arrays)
    if cell_cfg.get("use_bias", use_bias) != use_bias:
        raise ConfigError(
            f"config says use_bias={cell_cfg.get('use_bias')} but the file "
            f"{'has' if use_bias else 'has no'} bias tensors"
        )
    reset_after = None
    if cell_kind == "gru":
        reset_after = _reset_after(cells[0], cell_cfg, hidden, info, inferred)
    activations = _cell_activations(cell_kind, cell_cfg, layout, info, inferred, entry.name)
    rnn_cfg = forward_cfg  # go_backwards / return_sequences live on the layer, not on a cell
    meta = RecurrentMeta(
        name=entry.name,
        cell=cell_kind,
        input_size=_input_size(cells[0]),
        hidden_size=hidden,
        bidirectional=bidirectional,
        merge_mode=merge_mode,
        go_backwards=bool(rnn_cfg.get("go_backwards", False)) if not bidirectional else False,
        return_sequences=bool(rnn_cfg.get("return_sequences", False)),
        reset_after=reset_after,
        use_bias=use_bias,
        activations=activations,
        dtype=str(arrays[0].dtype),
        source=_source(info, inferred, layout={"keras": f"keras{info.major}"}.get(layout, layout)).model_copy(
            update={"notes": _STATEFUL_NOTE if rnn_cfg.get("stateful") else ()}
        ),
    )
    weights = KerasRecurrentArrays(forward=cells[0], backward=cells[1] if bidirectional else None)
    return BuiltLayer(recurrent_to_canonical(meta, weights), functools.partial(keras_forward, meta, weights))


_STATEFUL_NOTE = (
    "stateful=True: Keras carries each batch's final state into the next batch; the converted layer starts from "
    "the state it is given (zeros by default) on every call, so pass the previous call's final state to continue",
)


def _same_cell_config(fwd_cls: Any, fwd: dict[str, Any], bwd_cls: Any, bwd: dict[str, Any]) -> None:
    keys = ("units", "activation", "recurrent_activation", "use_bias", "reset_after")
    differing = [k for k in keys if fwd.get(k) != bwd.get(k)]
    if fwd_cls != bwd_cls or differing:
        raise UnsupportedFeatureError(
            "Bidirectional with a backward_layer that differs from the forward layer "
            f"({', '.join(differing) or 'class'}) is not supported"
        )


def _split_directions(
    arrays: list[np.ndarray], names: list[str], bidirectional: bool
) -> list[tuple[list[np.ndarray], list[str]]]:
    if not bidirectional:
        return [(arrays, names)]
    if len(arrays) % 2:
        raise ShapeMismatchError(
            "a Bidirectional layer must hold forward then backward weights, an even number of tensors",
            expected="an even count",
            actual=len(arrays),
        )
    half = len(arrays) // 2  # Keras: get_weights() = forward.get_weights() + backward.get_weights()
    return [(arrays[:half], names[:half]), (arrays[half:], names[half:])]


def _cell_arrays(cell: str, arrays: list[np.ndarray], names: list[str], cudnn_class: bool) -> KerasCellArrays:
    """Name a direction's arrays the Keras way, detecting Keras 1 per-gate and CuDNN layouts."""
    per_gate = {"lstm": 12, "gru": 9}.get(cell)
    if per_gate is not None and len(arrays) == per_gate and all(a.ndim <= 2 for a in arrays):
        matched = [_KERAS1_GATE_NAME.search(n.rsplit("/", 1)[-1]) for n in names]
        if all(matched) and len({m.group(0) for m in matched if m}) == per_gate:
            keys = [f"{m.group(1)}_{m.group(2)}" for m in matched if m]
        else:  # no usable names: Keras' own loader goes by position, W,U,b triples in Keras 1 gate order
            letters = {"input": "i", "forget": "f", "cell": "c", "output": "o", "update": "z", "reset": "r", "candidate": "h"}
            keys = [f"{w}_{letters[g]}" for g in GATE_ORDER[("keras1", cell)] for w in "WUb"]
        return KerasCellArrays(layout="keras1-per-gate", arrays=dict(zip(keys, arrays)), names=dict(zip(keys, names)))
    if len(arrays) not in (2, 3):
        raise ShapeMismatchError(
            f"a Keras {cell.upper()} layer holds kernel, recurrent_kernel and optionally bias",
            expected="2 or 3 tensors" + (f" (or {per_gate} Keras 1 per-gate tensors)" if per_gate else ""),
            actual=f"{len(arrays)}: {', '.join(names)}",
        )
    keys = ["kernel", "recurrent_kernel", "bias"][: len(arrays)]
    layout: KerasLayout = "keras"
    if len(arrays) == 3:
        recurrent, bias = arrays[1], arrays[2]
        if bias.ndim == 1 and recurrent.ndim == 2 and bias.shape[0] == 2 * recurrent.shape[1]:
            layout = "cudnn"  # (2*G*H,): input biases then recurrent biases
        elif cudnn_class:
            raise ShapeMismatchError(
                "a CuDNN layer's bias holds input and recurrent biases",
                tensor=names[2],
                expected=(2 * recurrent.shape[1],),
                actual=tuple(bias.shape),
            )
    return KerasCellArrays(layout=layout, arrays=dict(zip(keys, arrays)), names=dict(zip(keys, names)))


def _hidden_size(cell: KerasCellArrays, kind: str, cfg: dict[str, Any]) -> int:
    recurrent = cell.arrays.get("recurrent_kernel", cell.arrays.get("U_i", cell.arrays.get("U_z")))
    if recurrent is None or recurrent.ndim != 2:
        raise ShapeMismatchError("recurrent kernel must be a matrix", tensor="recurrent_kernel")
    hidden = int(recurrent.shape[0])
    units = cfg.get("units", cfg.get("output_dim"))
    if units is not None and int(units) != hidden:
        raise ShapeMismatchError(
            "recurrent kernel does not match the configured units",
            tensor=cell.names.get("recurrent_kernel", "recurrent_kernel"),
            expected=f"({units}, ...)",
            actual=tuple(recurrent.shape),
        )
    return hidden


def _input_size(cell: KerasCellArrays) -> int:
    kernel = cell.arrays.get("kernel", cell.arrays.get("W_i", cell.arrays.get("W_z")))
    if kernel is None or kernel.ndim != 2:
        raise ShapeMismatchError("kernel must be a matrix", tensor="kernel")
    return int(kernel.shape[0])


def _reset_after(
    cell: KerasCellArrays, cfg: dict[str, Any], hidden: int, info: KerasFileInfo, inferred: list[str]
) -> bool:
    if cell.layout == "cudnn":
        return True  # CuDNNGRU computes reset-after (cuDNN's GRU)
    bias = cell.arrays.get("bias")
    from_shape = None if bias is None else bias.ndim == 2
    stated = cfg.get("reset_after")
    if stated is not None:
        if from_shape is not None and bool(stated) != from_shape:
            raise ShapeMismatchError(
                f"config says reset_after={stated} but the bias shape says otherwise",
                tensor=cell.names.get("bias", "bias"),
                expected=(2, hidden * gate_count("gru")) if stated else (hidden * gate_count("gru"),),
                actual=tuple(bias.shape) if bias is not None else None,
            )
        return bool(stated)
    if from_shape is not None:
        # Keras <= 2.1.4 configs have no reset_after: the (3H,) bias says False, (2, 3H) says True.
        return from_shape
    default = info.major >= 3 or _tf_keras_v2(info)
    inferred.append(f"reset_after={default} (no bias to tell; default of Keras {info.keras_version or '1'})")
    return default


def _tf_keras_v2(info: KerasFileInfo) -> bool:
    """tf.keras (TF 2) layers default to sigmoid gates and reset_after=True."""
    version = info.keras_version or ""
    if version.endswith("-tf"):
        return True
    parts = version.split(".")
    return len(parts) >= 2 and parts[0] == "2" and parts[1].isdigit() and int(parts[1]) >= 4


def _default_gate_activation(info: KerasFileInfo) -> str:
    """Keras 1 and 2.0-2.2 default to hard_sigmoid gates; 2.3, tf.keras 2 and Keras 3 to sigmoid."""
    if info.major >= 3 or _tf_keras_v2(info):
        return "sigmoid"
    parts = (info.keras_version or "1.0").split(".")
    minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return "sigmoid" if info.major == 2 and minor >= 3 else "hard_sigmoid"


def _cell_activations(
    kind: str, cfg: dict[str, Any], layout: str, info: KerasFileInfo, inferred: list[str], name: str
) -> CellActivations:
    if layout == "cudnn":
        if cfg and (cfg.get("activation", "tanh") != "tanh" or cfg.get("recurrent_activation", "sigmoid") != "sigmoid"):
            raise ConfigError("CuDNN-layout weights are computed with sigmoid/tanh, but the config names others")
        return CellActivations(
            gate=None if kind == "rnn" else Activation(name="sigmoid"),
            candidate=Activation(name="tanh"),
            cell_output=Activation(name="tanh") if kind == "lstm" else None,
        )
    if "activation" in cfg:
        candidate = keras_activation(cfg["activation"], info.major, layer=name)
    else:
        candidate = Activation(name="tanh")
        inferred.append("activation=tanh (Keras default; not stated in the file)")
    gate = None
    if kind != "rnn":
        stated = cfg.get("recurrent_activation", cfg.get("inner_activation"))
        if stated is None:
            stated = _default_gate_activation(info)
            inferred.append(
                f"recurrent_activation={stated} (default of Keras {info.keras_version or '1.x'}; "
                "not stated in the file; pass --config (config=...) to state it)"
            )
        gate = keras_activation(stated, info.major, layer=name)
    return CellActivations(gate=gate, candidate=candidate, cell_output=candidate if kind == "lstm" else None)


# ---------------------------------------------------------------------------------------------------
# Companion layers


def _dense(
    entry: KerasLayerEntry, info: KerasFileInfo, cfg: dict[str, Any], *, time_distributed: bool
) -> BuiltLayer:
    arrays = _arrays(entry)
    if len(arrays) not in (1, 2) or arrays[0].ndim != 2:
        raise ShapeMismatchError(
            "a Dense layer holds a kernel (input, units) and optionally a bias (units,)",
            expected="kernel (in, units) [+ bias]",
            actual=[tuple(a.shape) for a in arrays],
        )
    kernel = arrays[0]
    bias = arrays[1] if len(arrays) == 2 else None
    units = int(kernel.shape[1])
    stated = cfg.get("units", cfg.get("output_dim"))
    if stated is not None and int(stated) != units:
        raise ShapeMismatchError(
            "kernel does not match the configured units",
            tensor=entry.array_names[0],
            expected=f"(..., {stated})",
            actual=tuple(kernel.shape),
        )
    activation = keras_activation(cfg.get("activation"), info.major, layer=entry.name)

    def keras_dense(x: np.ndarray, initial: object = None) -> LayerOutput:
        y = np.asarray(x) @ kernel.astype(compute_dtype(x), copy=False)
        return LayerOutput(y=apply(activation, y + bias if bias is not None else y), states=[])

    layer = DenseLayer(
        name=entry.name,
        input_size=int(kernel.shape[0]),
        units=units,
        activation=activation,
        use_bias=bias is not None,
        time_distributed=time_distributed,
        dtype=str(kernel.dtype),
        source=_source(
            info, None if cfg else ["layer class Dense from its tensor names (no config)", "activation=linear (no config)"]
        ),
        weight=dense_weight_to_canonical(kernel),
        bias=bias,
    )
    return BuiltLayer(layer, keras_dense)


def _embedding(entry: KerasLayerEntry, info: KerasFileInfo, cfg: dict[str, Any]) -> BuiltLayer:
    arrays = _arrays(entry)
    if len(arrays) != 1 or arrays[0].ndim != 2:
        raise ShapeMismatchError(
            "an Embedding layer holds one (vocabulary, size) matrix",
            expected="1 matrix",
            actual=[tuple(a.shape) for a in arrays],
        )
    table = arrays[0]
    layer = EmbeddingLayer(
        name=entry.name,
        vocabulary_size=int(table.shape[0]),
        embedding_size=int(table.shape[1]),
        mask_zero=bool(cfg.get("mask_zero", False)),
        dtype=str(table.dtype),
        source=_source(info),
        weight=table,
    )
    return BuiltLayer(layer, None)


# ---------------------------------------------------------------------------------------------------
# Files without a config: infer the class from names and shapes


def _build_without_config(entry: KerasLayerEntry, info: KerasFileInfo) -> BuiltLayer | None:
    """A layer of a weights-only file: the class comes from the Keras 3 path (``class_name``) or the shapes."""
    names, hint = entry.array_names, entry.class_name
    if hint is not None and hint not in RECURRENT_CLASSES | {"Dense", "TimeDistributed", "Embedding"}:
        if not names:
            return None
        raise UnsupportedFeatureError(f"{hint} layers are not converted by lstmconv ({len(names)} weight tensors left out)")
    if not names:
        return None
    leaf = [n.rsplit("/", 1)[-1].split(":")[0] for n in names]
    if hint == "Embedding" or (hint is None and len(names) == 1 and leaf[0] == "embeddings"):
        return _embedding(entry, info, {})
    if hint in ("Dense", "TimeDistributed"):
        return _dense(entry, info, {}, time_distributed=hint == "TimeDistributed")
    arrays = entry.load_arrays()
    kind = _infer_cell(arrays, names)
    stated = _CELL_OF_CLASS.get(hint or "")
    if stated is not None and kind != stated:
        raise ConfigError(f"the layer is said to be a {hint}, but its weights are {kind or 'no recurrent layer'}'s")
    if kind is None:
        if len(arrays) in (1, 2) and arrays[0].ndim == 2 and (len(arrays) == 1 or arrays[1].shape == (arrays[0].shape[1],)):
            if _dense_names(leaf, entry.name, info.major):
                return _dense(entry, info, {}, time_distributed=False)
        raise UnsupportedFeatureError(
            f"weights-only layer with tensors {', '.join(names)} is not a recurrent, Dense or Embedding layer "
            f"as Keras {info.major} names their weights; it is left out"
        )
    bidirectional = hint == "Bidirectional" or (
        any("forward_" in n for n in names) and any("backward_" in n for n in names)
    )
    inferred = [*entry.notes, "layer class from tensor names and shapes (weights-only file without config)"]
    inferred += ["return_sequences=True and go_backwards=False (not stated in the file)"]
    if bidirectional:
        inferred.append("merge_mode=concat (Bidirectional default; not stated in the file)")
    cls = KERAS_CLASSES[kind]
    cfg: dict[str, Any] = {"return_sequences": True}
    if bidirectional:
        return _recurrent(entry, info, "Bidirectional", {"layer": {"class_name": cls, "config": cfg}}, inferred)
    return _recurrent(entry, info, cls, cfg, inferred)


def _dense_names(leaves: list[str], layer: str, keras_major: int) -> bool:
    """Whether ``leaves`` are the names Keras ``keras_major``'s Dense gives its kernel (and bias): Keras 1
    ``<layer>_W``/``<layer>_b`` (or ``W``/``b``), Keras 2 ``kernel``/``bias``, Keras 3 ``vars/0``/``vars/1``.
    A custom layer's ``attention_W`` in a Keras 2 file is not a Dense kernel, whatever its shape."""
    kernel_names, bias_names = {
        1: ({"W", f"{layer}_W"}, {"b", f"{layer}_b"}),
        2: ({"kernel"}, {"bias"}),
        3: ({"0"}, {"1"}),
    }.get(keras_major, ({"kernel"}, {"bias"}))
    return leaves[0] in kernel_names and (len(leaves) == 1 or leaves[1] in bias_names)


def _infer_cell(arrays: list[np.ndarray], names: list[str]) -> str | None:
    leaves = {_KERAS1_GATE_NAME.search(n.rsplit("/", 1)[-1]) for n in names}
    letters = {m.group(2) for m in leaves if m}
    if {"i", "f", "c", "o"} <= letters:
        return "lstm"
    if {"z", "r", "h"} <= letters:
        return "gru"
    count = len(arrays)
    if count in (9, 12) and _per_gate_triples(arrays):
        return "lstm" if count == 12 else "gru"  # Keras 1 per-gate file whose tensor names say nothing
    for per_direction in ({count, count // 2} if count % 2 == 0 else {count}):
        if per_direction in (2, 3) and arrays[1].ndim == 2 and arrays[1].shape[0] > 0:
            hidden, cols = arrays[1].shape
            if arrays[0].ndim == 2 and arrays[0].shape[1] == cols and cols % hidden == 0:
                return {4: "lstm", 3: "gru", 1: "rnn"}.get(cols // hidden)
    return None


def _per_gate_triples(arrays: list[np.ndarray]) -> bool:
    """W (in, H), U (H, H), b (H,) repeated: the Keras 1 per-gate storage."""
    hidden = arrays[1].shape[0] if arrays[1].ndim == 2 else -1
    for w, u, b in zip(arrays[0::3], arrays[1::3], arrays[2::3]):
        if w.ndim != 2 or w.shape[1] != hidden or u.shape != (hidden, hidden) or b.shape != (hidden,):
            return False
    return True
