"""NumPy reference of ``torch.nn.LSTM`` / ``GRU`` / ``RNN``, computed on a state dict with torch semantics.

Layout (``torch/nn/modules/rnn.py``): per level ``k`` and suffix ``''`` / ``'_reverse'``:
``weight_ih_l{k}`` ``(G*H, in)``, ``weight_hh_l{k}`` ``(G*H, H_out)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
``(G*H,)``, and ``weight_hr_l{k}`` ``(P, H)`` with ``proj_size``. Gates i,f,g,o (LSTM), r,z,n (GRU).
Equations (``aten/src/ATen/native/RNN.cpp``)::

    LSTM  i,f,g,o = chunk(x W_ih^T + b_ih + h W_hh^T + b_hh)
          c' = s(f) * c + s(i) * tanh(g);  h' = s(o) * tanh(c');  h' = h' W_hr^T (projection)
    GRU   r = s(x_r + h_r);  z = s(x_z + h_z);  n = tanh(x_n + r * (h W_hn^T + b_hn));  h' = (1-z) n + z h
    RNN   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu

The reverse direction reads the sequence backwards; its outputs are aligned with input time. A level's
output is forward and reverse concatenated on the feature axis, and feeds the next level.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lstmconv.gates import gate_count, split_gates
from lstmconv.reference.common import (
    CellState,
    LayerOutput,
    LayerStates,
    Step,
    compute_dtype,
    matmul,
    project,
    unroll,
)

__all__ = ["torch_forward"]


def torch_forward(
    state_dict: Mapping[str, np.ndarray],
    *,
    mode: str,
    num_layers: int,
    bidirectional: bool,
    x: np.ndarray,
    initial: LayerStates | None = None,
    nonlinearity: str = "tanh",
    dtype: type | None = None,
) -> LayerOutput:
    """Run a torch recurrent module (batch_first=True) on ``x``; ``mode`` is 'lstm', 'gru' or 'rnn'.

    ``y`` is torch's ``output`` (directions concatenated); states follow :mod:`~lstmconv.reference.common`.
    Arithmetic follows ``x`` (see :func:`~lstmconv.reference.common.compute_dtype`) unless ``dtype`` is given.
    """
    dtype = dtype or compute_dtype(x)
    weights = {k: np.asarray(v, dtype=dtype) for k, v in state_dict.items()}
    layer_input = np.asarray(x, dtype=dtype)
    batch = layer_input.shape[0]
    states: LayerStates = []
    for level in range(num_layers):
        outputs, level_states = [], []
        for d, suffix in enumerate(["", "_reverse"] if bidirectional else [""]):
            p = {
                name: weights.get(f"{name}_l{level}{suffix}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
            }
            hidden = p["weight_hh"].shape[0] // gate_count(mode)
            out_size = p["weight_hr"].shape[0] if p["weight_hr"] is not None else hidden
            if initial is not None:
                h0, c0 = initial[level][d]
                start = (np.asarray(h0, dtype=dtype), None if c0 is None else np.asarray(c0, dtype=dtype))
            else:
                zeros_c = np.zeros((batch, hidden), dtype=dtype) if mode == "lstm" else None
                start = (np.zeros((batch, out_size), dtype=dtype), zeros_c)
            projected, step = _cell(mode, p, layer_input, nonlinearity)
            y, final = unroll(step, projected, start, reverse=d == 1)
            outputs.append(y)
            level_states.append(final)
        layer_input = np.concatenate(outputs, axis=-1)
        states.append(level_states)
    return LayerOutput(y=layer_input, states=states)


def _cell(mode: str, p: dict[str, np.ndarray | None], x: np.ndarray, nonlinearity: str) -> tuple[np.ndarray, Step]:
    w_ih, w_hh_raw, w_hr = p["weight_ih"], p["weight_hh"], p["weight_hr"]
    assert w_ih is not None and w_hh_raw is not None
    # transposed views, never copies: BLAS reads them as they are (common.matmul takes few rows in blocks)
    w_hh_t = w_hh_raw.T
    w_hr_t = None if w_hr is None else w_hr.T
    b_ih = p["bias_ih"] if p["bias_ih"] is not None else 0.0
    b_hh = p["bias_hh"] if p["bias_hh"] is not None else 0.0
    projected = project(x, w_ih.T) + b_ih

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 0.5 + 0.5 * np.tanh(0.5 * v)  # = 1 / (1 + exp(-v)), one transcendental, never overflows

    if mode == "lstm":

        def lstm(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h, c = state
            g = split_gates(xg + matmul(h, w_hh_t) + b_hh, "torch", "lstm", axis=-1)
            c_new = sigmoid(g["forget"]) * c + sigmoid(g["input"]) * np.tanh(g["cell"])
            h_new = sigmoid(g["output"]) * np.tanh(c_new)
            if w_hr_t is not None:
                h_new = matmul(h_new, w_hr_t)
            return h_new, (h_new, c_new)

        return projected, lstm
    if mode == "gru":

        def gru(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h = state[0]
            xs = split_gates(xg, "torch", "gru", axis=-1)
            hs = split_gates(matmul(h, w_hh_t) + b_hh, "torch", "gru", axis=-1)
            r = sigmoid(xs["reset"] + hs["reset"])
            z = sigmoid(xs["update"] + hs["update"])
            n = np.tanh(xs["candidate"] + r * hs["candidate"])
            h_new = (1 - z) * n + z * h
            return h_new, (h_new, None)

        return projected, gru

    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))

    def rnn(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h_new = act(xg + matmul(state[0], w_hh_t) + b_hh)
        return h_new, (h_new, None)

    return projected, rnn
