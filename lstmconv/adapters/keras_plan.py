"""The Keras target: canonical layers -> Keras layers with their arrays, and the files Keras loads.

* ``.weights.h5``: the Keras 3 weights file ``model.load_weights`` reads into a model with the same layers in
  the same order: datasets at ``layers/<snake_case class name, made unique>/...`` (``cell/vars/0..2`` for a
  recurrent layer, ``forward_layer/`` and ``backward_layer/`` for Bidirectional, ``layer/`` for
  TimeDistributed, ``vars/0..`` for Dense and Embedding), each object with a ``vars`` group named after it.
* ``.h5``: a legacy Keras 2 weights file (``layer_names``, ``weight_names``), loadable by tf.keras
  ``load_weights(..., by_name=True)`` and by Keras 3's legacy loader.

Activation names mean different numbers in Keras 2 and 3 (``hard_sigmoid``), so the target's Keras version
decides: ``.h5`` is Keras 2, ``.weights.h5`` Keras 3. A torch multi-level module becomes one Keras layer per
level (``<name>``, ``<name>_l1``...), a bidirectional one a Bidirectional wrapper. Where Keras has one bias
the two are summed (exact for LSTM, SimpleRNN and GRU gates); a GRU keeps both as ``reset_after=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstmconv.activations import Activation
from lstmconv.adapters.keras import recurrent_from_canonical
from lstmconv.layouts.keras import KERAS_CLASSES, keras_activation_for
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn
from lstmconv.reference.keras import keras_forward
from lstmconv.schema import (
    ActivationLayer,
    ConcatenateLayer,
    DenseLayer,
    DenseMeta,
    DropoutLayer,
    EmbeddingLayer,
    Layer,
    RecurrentLayer,
    StackLevel,
)

__all__ = ["KerasLayerPlan", "plan_keras_layer", "keras_layer_refusals", "keras_refusals", "keras_activation_name"]



@dataclass
class KerasLayerPlan:
    """One Keras layer to write: class, config, arrays in ``get_weights()`` order, and its check function."""

    name: str
    class_name: str
    config: dict[str, Any]
    arrays: list[np.ndarray] = field(default_factory=list)
    inner_class: str | None = None  # Bidirectional / TimeDistributed: the wrapped layer's class
    source_layer: str = ""


def keras_activation_name(activation: Activation, keras_major: int) -> str | None:
    """The Keras activation name computing ``activation`` exactly in Keras ``keras_major``, if any."""
    return keras_activation_for(activation.name, activation.alpha, activation.beta, keras_major)


def keras_refusals(layer: RecurrentLayer, keras_major: int) -> list[str]:
    """Why Keras ``keras_major`` layers cannot compute ``layer`` exactly (empty when they can)."""
    reasons = []
    if layer.projection_size is not None:
        reasons.append("Keras recurrent layers have no projection (torch proj_size)")
    if any(g.peephole is not None for _, _, d in layer.directions() for g in d.gates.values()):
        reasons.append("Keras LSTM has no peephole connections")
    if layer.cell_clip is not None:
        reasons.append(f"Keras has no pre-activation clip (clip={layer.cell_clip})")
    if layer.state_clip is not None:
        reasons.append(f"Keras LSTMs do not clamp their cell state (state_clip={layer.state_clip})")
    if layer.backward_activations is not None:
        reasons.append("the two directions use different activations; lstmconv writes Bidirectional with one layer config")
    if layer.input_forget:
        reasons.append("Keras LSTM has no coupled input/forget gate")
    if layer.time_aligned_output and layer.num_levels > 1:
        reasons.append(
            "stacked reverse-direction levels whose outputs are aligned with input time have no Keras layer "
            "(go_backwards returns each level's output in processing order)"
        )
    if layer.bidirectional and layer.num_levels > 1 and layer.merge_mode != "concat":
        reasons.append("stacked bidirectional levels merge by concatenation only")
    acts = layer.activations
    for role, activation in (("recurrent_activation", acts.gate), ("activation", acts.candidate)):
        if activation is not None and keras_activation_name(activation, keras_major) is None:
            reasons.append(f"Keras {keras_major} has no {role} computing {activation}")
    if acts.cell_output is not None and acts.cell_output != acts.candidate:
        reasons.append("Keras LSTM uses one activation for the candidate and the cell output")
    return reasons


def keras_usage_notes(layer: Layer) -> list[str]:
    """What a Keras user must do around the written layer to compute the source layer's function."""
    if isinstance(layer, RecurrentLayer) and layer.time_aligned_output and layer.return_sequences:
        return [
            "reverse direction: written as go_backwards=True, whose output sequence comes in processing order; "
            "flip it (output[:, ::-1]) to align it with input time as the source does"
        ]
    return []


def keras_layer_refusals(layer: Layer, keras_major: int) -> list[str]:
    """Why Keras ``keras_major`` cannot compute ``layer`` exactly (empty when it can)."""
    if isinstance(layer, RecurrentLayer):
        return keras_refusals(layer, keras_major)
    if isinstance(layer, (DenseMeta, ActivationLayer)) and keras_activation_name(layer.activation, keras_major) is None:
        return [f"Keras {keras_major} has no activation computing {layer.activation}"]
    return []


def plan_keras_layer(layer: Layer, keras_major: int) -> tuple[list[KerasLayerPlan], ReferenceFn | None]:
    """The Keras layers one canonical layer becomes, and the check function (recurrent layers); for a layer
    :func:`keras_layer_refusals` accepts."""
    if isinstance(layer, RecurrentLayer):
        return _recurrent(layer, keras_major)
    if isinstance(layer, DenseLayer):
        name = keras_activation_name(layer.activation, keras_major)
        config = {"name": _safe(layer.name), "units": layer.units, "activation": name, "use_bias": layer.use_bias}
        arrays = [np.ascontiguousarray(layer.weight.T)] + ([layer.bias] if layer.bias is not None else [])
        if layer.time_distributed:
            inner = {"class_name": "Dense", "config": {**config, "name": _safe(layer.name) + "_dense"}}
            wrapper = {"name": _safe(layer.name), "layer": inner}
            return [KerasLayerPlan(_safe(layer.name), "TimeDistributed", wrapper, arrays, "Dense", layer.name)], None
        return [KerasLayerPlan(_safe(layer.name), "Dense", config, arrays, source_layer=layer.name)], None
    if isinstance(layer, EmbeddingLayer):
        config = {"name": _safe(layer.name), "input_dim": layer.vocabulary_size, "output_dim": layer.embedding_size, "mask_zero": layer.mask_zero}
        return [KerasLayerPlan(_safe(layer.name), "Embedding", config, [layer.weight], source_layer=layer.name)], None
    if isinstance(layer, ActivationLayer):
        name = keras_activation_name(layer.activation, keras_major)
        return [KerasLayerPlan(_safe(layer.name), "Activation", {"name": _safe(layer.name), "activation": name}, source_layer=layer.name)], None
    if isinstance(layer, DropoutLayer):
        return [KerasLayerPlan(_safe(layer.name), "Dropout", {"name": _safe(layer.name), "rate": layer.rate}, source_layer=layer.name)], None
    if isinstance(layer, ConcatenateLayer):
        return [KerasLayerPlan(_safe(layer.name), "Concatenate", {"name": _safe(layer.name), "axis": layer.axis}, source_layer=layer.name)], None
    return [], None


def _safe(name: str) -> str:
    """A Keras layer name for ``name``: Keras names may not contain '/' (a path in its files), which becomes '.'
    ('enc/rnn' -> 'enc.rnn', not 'enc_rnn', a name another layer may have); other characters outside
    ``[0-9A-Za-z_.-]`` become '_'. The writer makes names that still collide unique."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", name.replace("/", ".")).strip("_.") or "layer"


def _recurrent(layer: RecurrentLayer, keras_major: int) -> tuple[list[KerasLayerPlan], ReferenceFn]:
    acts = layer.activations
    plans = []
    level_functions = []
    for k, level in enumerate(layer.levels):
        name = _safe(layer.name) if k == 0 else f"{_safe(layer.name)}_l{k}"
        last = k == len(layer.levels) - 1
        input_size = layer.input_size if k == 0 else layer.hidden_size * (2 if layer.bidirectional else 1)
        single = RecurrentLayer(
            **{
                **dict(layer.meta()),
                "name": name,
                "num_levels": 1,
                "input_size": input_size,
                "merge_mode": layer.merge_mode if last else ("concat" if layer.bidirectional else None),
                "return_sequences": layer.return_sequences if last else True,
            },
            levels=(StackLevel(forward=level.forward, backward=level.backward),),
        )
        arrays = recurrent_from_canonical(single)
        config: dict[str, Any] = {
            "name": name,
            "units": layer.hidden_size,
            "activation": keras_activation_name(acts.candidate, keras_major),
            "use_bias": layer.use_bias,
            "return_sequences": single.return_sequences,
            "go_backwards": layer.go_backwards,
        }
        if acts.gate is not None:
            config["recurrent_activation"] = keras_activation_name(acts.gate, keras_major)
        if layer.cell == "gru":
            config["reset_after"] = bool(layer.reset_after)
        forward = [arrays.forward.arrays[k2] for k2 in ("kernel", "recurrent_kernel", "bias") if k2 in arrays.forward.arrays]
        if layer.bidirectional:
            assert arrays.backward is not None
            backward = [arrays.backward.arrays[k2] for k2 in ("kernel", "recurrent_kernel", "bias") if k2 in arrays.backward.arrays]
            merge = single.merge_mode
            wrapper = {"name": name, "merge_mode": None if merge == "none" else merge, "layer": {"class_name": KERAS_CLASSES[layer.cell], "config": {**config, "name": f"forward_{name}"}}}
            plans.append(KerasLayerPlan(name, "Bidirectional", wrapper, forward + backward, KERAS_CLASSES[layer.cell], layer.name))
        else:
            plans.append(KerasLayerPlan(name, KERAS_CLASSES[layer.cell], config, forward, source_layer=layer.name))
        level_functions.append((single.meta(), arrays))

    def run(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        value: Any = x
        states: LayerStates = []
        for k, (meta, arrays) in enumerate(level_functions):
            out = keras_forward(meta, arrays, value, None if initial is None else [initial[k]])
            states.extend(out.states)
            value = out.y
        if layer.time_aligned_output and layer.return_sequences:
            value = value[:, ::-1]  # the flip keras_usage_notes asks of the user
        return LayerOutput(y=value, states=states)

    return plans, run

