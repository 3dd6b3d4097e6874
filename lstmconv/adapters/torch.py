"""Canonical form <-> PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` / ``nn.Linear`` / ``nn.Embedding`` parameters.

torch stores matrices ``(out, in)`` with gates stacked along axis 0 (LSTM i,f,g,o; GRU r,z,n) and two biases
per direction: ``weight_ih_l{k}{_reverse}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, plus
``weight_hr_l{k}`` with ``proj_size``. Its cells hard-code sigmoid gates and tanh candidates (RNN: tanh or
relu), and its GRU applies the reset gate after the recurrent matmul (Keras ``reset_after=True``).
"""

from __future__ import annotations

import numpy as np

from lstmconv.errors import UnsupportedFeatureError
from lstmconv.gates import stack_gates
from lstmconv.schema import DenseLayer, EmbeddingLayer, Layer, RecurrentLayer

__all__ = ["torch_refusals", "recurrent_from_canonical", "layer_from_canonical", "torch_module_spec"]


def torch_refusals(layer: RecurrentLayer) -> list[str]:
    """Why ``torch.nn`` cannot compute ``layer`` exactly (empty when it can)."""
    reasons: list[str] = []
    acts = layer.activations
    if layer.cell == "rnn":
        if acts.candidate.name not in ("tanh", "relu"):
            reasons.append(f"nn.RNN supports only tanh or relu, this layer uses activation {acts.candidate}")
    else:
        if acts.gate is not None and acts.gate.name != "sigmoid":
            reasons.append(
                f"nn.{layer.cell.upper()} hard-codes sigmoid gates, this layer uses recurrent_activation "
                f"{acts.gate}"
            )
        if acts.candidate.name != "tanh":
            reasons.append(
                f"nn.{layer.cell.upper()} hard-codes tanh for the candidate, this layer uses activation "
                f"{acts.candidate}"
            )
        if acts.cell_output is not None and acts.cell_output.name != "tanh":
            reasons.append(f"nn.LSTM hard-codes tanh on the cell state, this layer uses {acts.cell_output}")
    if layer.cell == "gru" and not layer.reset_after:
        reasons.append(
            "GRU(reset_after=False) applies the reset gate before the recurrent matmul; nn.GRU applies it "
            "after (reset_after=True), so no weights make them equal"
        )
    if layer.cell_clip is not None:
        reasons.append(f"nn.{layer.cell.upper()} has no pre-activation clip (clip={layer.cell_clip})")
    if layer.input_forget:
        reasons.append("nn.LSTM has no coupled input/forget gate (input_forget=1)")
    if any(g.peephole is not None for _, _, d in layer.directions() for g in d.gates.values()):
        reasons.append("nn.LSTM has no peephole connections")
    return reasons


def recurrent_from_canonical(layer: RecurrentLayer) -> dict[str, np.ndarray]:
    """The ``state_dict`` of the matching torch module (keys without a module prefix)."""
    refusals = torch_refusals(layer)
    if refusals:
        raise UnsupportedFeatureError("; ".join(refusals), layer=layer.name)
    state: dict[str, np.ndarray] = {}
    for level, side, direction in layer.directions():
        suffix = f"_l{level}" + ("_reverse" if side == "backward" else "")
        gates = direction.gates
        state[f"weight_ih{suffix}"] = stack_gates({g: p.w_input for g, p in gates.items()}, "torch", layer.cell, axis=0)
        state[f"weight_hh{suffix}"] = stack_gates(
            {g: p.w_recurrent for g, p in gates.items()}, "torch", layer.cell, axis=0
        )
        if layer.use_bias:
            dtype = next(iter(gates.values())).w_input.dtype
            zeros = np.zeros(layer.hidden_size, dtype=dtype)

            def bias_or_zero(b: np.ndarray | None) -> np.ndarray:
                return zeros if b is None else b

            state[f"bias_ih{suffix}"] = stack_gates(
                {g: bias_or_zero(p.b_input) for g, p in gates.items()}, "torch", layer.cell, axis=0
            )
            state[f"bias_hh{suffix}"] = stack_gates(
                {g: bias_or_zero(p.b_recurrent) for g, p in gates.items()}, "torch", layer.cell, axis=0
            )
        if direction.w_projection is not None:
            state[f"weight_hr{suffix}"] = np.ascontiguousarray(direction.w_projection)
    return state


def layer_from_canonical(layer: Layer) -> dict[str, np.ndarray]:
    """torch parameters of any canonical layer (empty for weightless layers)."""
    if isinstance(layer, RecurrentLayer):
        return recurrent_from_canonical(layer)
    if isinstance(layer, DenseLayer):
        params = {"weight": np.ascontiguousarray(layer.weight)}
        if layer.bias is not None:
            params["bias"] = np.ascontiguousarray(layer.bias)
        return params
    if isinstance(layer, EmbeddingLayer):
        return {"weight": np.ascontiguousarray(layer.weight)}
    return {}


def torch_module_spec(layer: Layer) -> str | None:
    """The torch module that holds ``layer``'s parameters, as Python source (for reports and docs)."""
    if isinstance(layer, RecurrentLayer):
        cls = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[layer.cell]
        args = [f"{layer.input_size}", f"{layer.hidden_size}"]
        if layer.num_levels > 1:
            args.append(f"num_layers={layer.num_levels}")
        if not layer.use_bias:
            args.append("bias=False")
        args.append("batch_first=True")
        if layer.bidirectional:
            args.append("bidirectional=True")
        if layer.projection_size:
            args.append(f"proj_size={layer.projection_size}")
        if layer.cell == "rnn" and layer.activations.candidate.name == "relu":
            args.append("nonlinearity='relu'")
        return f"nn.{cls}({', '.join(args)})"
    if isinstance(layer, DenseLayer):
        return f"nn.Linear({layer.input_size}, {layer.units}{'' if layer.use_bias else ', bias=False'})"
    if isinstance(layer, EmbeddingLayer):
        return f"nn.Embedding({layer.vocabulary_size}, {layer.embedding_size})"
    return None
