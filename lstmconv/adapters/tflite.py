"""Canonical form -> TFLite's fused sequence operators, one per direction of each stacked level.

An LSTM is ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (matrices ``(units, in)`` per gate in their own input slots, one bias
per gate: the canonical input and recurrent biases summed, peepholes and projection in their slots), a SimpleRNN
``UNIDIRECTIONAL_SEQUENCE_RNN``; a backward direction is the same op on the time-reversed sequence. TFLite has no
GRU operator: a GRU is a ``WHILE`` loop of builtin ops over the per-gate matrices kept apart (see
:func:`lstmconv.reference.tflite.tflite_gru`). What the kernels cannot compute exactly is refused
(:func:`tflite_refusals`).
"""

from __future__ import annotations

import numpy as np

from lstmconv.activations import Activation
from lstmconv.layouts.tflite import (
    ACTIVATION_OPS,
    FUSED_ACTIVATIONS,
    LSTM_BIASES,
    LSTM_INPUT_WEIGHTS,
    LSTM_PEEPHOLES,
    LSTM_PROJECTION,
    LSTM_RECURRENT_WEIGHTS,
    TfliteRecurrentOp,
)
from lstmconv.schema import DenseLayer, DirectionWeights, Layer, RecurrentLayer

__all__ = ["tflite_refusals", "tflite_activation_refusal", "ops_from_canonical", "fusable"]

#: activations lstmconv writes with builtin ops besides ACTIVATION_OPS (composed exactly of MUL, ADD, MINIMUM...)
_COMPOSED = {"linear", "silu", "hard_sigmoid", "gelu", "gelu_tanh", "softsign"}


def tflite_activation_refusal(activation: Activation, role: str) -> str | None:
    """Why a standalone activation (Dense, Activation, a GRU's) cannot be written exactly, if it cannot."""
    name = activation.name
    if name in ACTIVATION_OPS and not (name == "elu" and activation.alpha not in (None, 1.0)):
        return None
    if name in _COMPOSED:
        return None
    return f"no builtin TFLite op computes the {role} activation '{activation}' exactly"


def tflite_refusals(layer: Layer) -> list[str]:
    """Why lstmconv's TFLite models cannot compute ``layer`` exactly (empty when they can)."""
    reasons: list[str] = []
    if getattr(layer, "dtype", "float32") == "float64":
        reasons.append("its weights are float64, and TFLite's sequence kernels compute in float32: rounding them would change the function")
    if isinstance(layer, DenseLayer) and (reason := tflite_activation_refusal(layer.activation, "Dense")):
        reasons.append(reason)
    if not isinstance(layer, RecurrentLayer):
        return reasons
    acts = layer.activations
    if layer.backward_activations is not None:
        reasons.append("its directions use different activations; lstmconv's TFLite models give both the same")
    if layer.cell_clip is not None:
        reasons.append("ONNX clip bounds the pre-activations; TFLite's cell_clip bounds the cell state, another function")
    if layer.input_forget:
        reasons.append("ONNX input_forget couples the gates as f = 1 - i; TFLite's CIFG couples them as i = 1 - f")
    if layer.cell == "lstm" and not fusable(layer):
        # written as a WHILE loop of builtin ops instead, when every activation has builtin ops
        for role, activation in (("gate", acts.gate), ("candidate", acts.candidate), ("cell output", acts.cell_output)):
            if activation is not None and (reason := tflite_activation_refusal(activation, f"LSTM {role}")):
                reasons.append(reason)
        if layer.projection_size is not None:
            reasons.append("an LSTM with a projection and activations TFLite's fused LSTM has not: lstmconv's LSTM loop has no projection")
    elif layer.cell == "rnn":
        if acts.candidate.name not in FUSED_ACTIVATIONS or acts.candidate.alpha is not None:
            reasons.append(f"TFLite's fused RNN has no '{acts.candidate}' activation (it has tanh, relu, relu6, hard_tanh, linear)")
    else:
        for role, activation in (("gate", acts.gate), ("candidate", acts.candidate)):
            if activation is not None and (reason := tflite_activation_refusal(activation, f"GRU {role}")):
                reasons.append(reason)
    return reasons


def fusable(layer: RecurrentLayer) -> bool:
    """Whether TFLite's fused LSTM computes ``layer``: sigmoid gates, one fused activation for the candidate and
    the cell state. Any other LSTM is a WHILE loop of builtin ops."""
    acts = layer.activations
    return (
        (acts.gate is None or acts.gate.name == "sigmoid")
        and acts.cell_output == acts.candidate
        and acts.candidate.name in FUSED_ACTIVATIONS
        and acts.candidate.alpha is None
    )


def ops_from_canonical(layer: RecurrentLayer) -> list[TfliteRecurrentOp]:
    """The ops of ``layer``, level by level, forward then backward (float16 widened to float32, exactly)."""
    ops = []
    for level, side, direction in layer.directions():
        ops.append(_op(layer, level, side == "backward", direction))
    return ops


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _bias(layer: RecurrentLayer, b_input: np.ndarray | None, b_recurrent: np.ndarray | None) -> np.ndarray:
    total = np.zeros(layer.hidden_size, dtype=np.float32)
    for part in (b_input, b_recurrent):
        if part is not None:
            total = total + _f32(part)
    return total


def _op(layer: RecurrentLayer, level: int, backward: bool, direction: DirectionWeights) -> TfliteRecurrentOp:
    gates = direction.gates
    common = {"cell": layer.cell, "level": level, "backward": backward, "units": layer.hidden_size, "outputs": layer.output_size}
    if layer.cell == "lstm" and not fusable(layer):
        acts = layer.activations
        named = {}
        for key, gate in (("i", "input"), ("f", "forget"), ("c", "cell"), ("o", "output")):
            weights = gates[gate]  # type: ignore[index]
            named[f"w_{key}"] = _f32(weights.w_input)
            named[f"r_{key}"] = _f32(weights.w_recurrent)
            named[f"b_{key}"] = _bias(layer, weights.b_input, weights.b_recurrent)
            if weights.peephole is not None:
                named[f"p_{key}"] = _f32(weights.peephole)
        return TfliteRecurrentOp(
            **common, named=named, gate=acts.gate or Activation(name="sigmoid"), candidate=acts.candidate,
            cell_output=acts.cell_output, looped=True, cell_clip=float(layer.state_clip or 0.0),
        )
    if layer.cell == "lstm":
        slots: dict[int, np.ndarray] = {}
        for gate, weights in gates.items():
            slots[LSTM_INPUT_WEIGHTS[gate]] = _f32(weights.w_input)
            slots[LSTM_RECURRENT_WEIGHTS[gate]] = _f32(weights.w_recurrent)
            slots[LSTM_BIASES[gate]] = _bias(layer, weights.b_input, weights.b_recurrent)
            if weights.peephole is not None:
                slots[LSTM_PEEPHOLES[gate]] = _f32(weights.peephole)
        if direction.w_projection is not None:
            slots[LSTM_PROJECTION] = _f32(direction.w_projection)
        return TfliteRecurrentOp(**common, slots=slots, activation=FUSED_ACTIVATIONS[layer.activations.candidate.name],
                                 cell_clip=float(layer.state_clip or 0.0))
    if layer.cell == "rnn":
        hidden = gates["hidden"]
        named = {"weights": _f32(hidden.w_input), "recurrent": _f32(hidden.w_recurrent), "bias": _bias(layer, hidden.b_input, hidden.b_recurrent)}
        return TfliteRecurrentOp(**common, named=named, activation=FUSED_ACTIVATIONS[layer.activations.candidate.name])
    named = {}
    zeros = np.zeros(layer.hidden_size, dtype=np.float32)
    for key, gate in (("z", "update"), ("r", "reset"), ("h", "candidate")):
        weights = gates[gate]  # type: ignore[index]
        named[f"w_{key}"] = _f32(weights.w_input)
        named[f"r_{key}"] = _f32(weights.w_recurrent)
        named[f"b_{key}"] = zeros if weights.b_input is None else _f32(weights.b_input)
        named[f"rb_{key}"] = zeros if weights.b_recurrent is None else _f32(weights.b_recurrent)
    acts = layer.activations
    return TfliteRecurrentOp(
        **common, named=named, gate=acts.gate or Activation(name="sigmoid"), candidate=acts.candidate,
        reset_after=bool(layer.reset_after),
    )
