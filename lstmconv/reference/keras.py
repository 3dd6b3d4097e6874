"""NumPy reference of Keras recurrent layers, computed on Keras-layout arrays with Keras semantics.

Equations (Keras 2/3 ``LSTMCell.call``, ``GRUCell.call``, ``SimpleRNNCell.call``; Keras 1 ``step``)::

    LSTM      i = ga(x K_i + b_i + h R_i)   f = ga(x K_f + b_f + h R_f)   o = ga(x K_o + b_o + h R_o)
              c' = f * c + i * act(x K_c + b_c + h R_c)                    h' = o * act(c')
    GRU       z = ga(x K_z + h R_z + b)     r = ga(x K_r + h R_r + b)
      reset_after=False  hh = act(x K_h + b_h + (r * h) R_h)
      reset_after=True   hh = act(x K_h + bi_h + r * (h R_h + br_h))
              h' = z * h + (1 - z) * hh
    SimpleRNN h' = act(x K + b + h R)

``go_backwards`` reads the input reversed and returns the outputs in that (reversed) order.
``Bidirectional`` runs a forward copy and a ``go_backwards`` copy, re-reverses the backward outputs and
merges them. CuDNN-layout arrays are read the way cuDNN reads them (row-major ``(H, in)`` per gate,
two biases), with cuDNN's fixed sigmoid/tanh and reset-after GRU.
"""

from __future__ import annotations

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.gates import split_gates
from lstmconv.layouts.keras import KerasCellArrays, KerasRecurrentArrays
from lstmconv.reference.common import (
    CellState,
    LayerOutput,
    LayerStates,
    Step,
    compute_dtype,
    matmul,
    merge_directions,
    project,
    unroll,
)
from lstmconv.schema import RecurrentMeta

__all__ = ["keras_forward"]


def keras_forward(
    meta: RecurrentMeta,
    weights: KerasRecurrentArrays,
    x: np.ndarray,
    initial: LayerStates | None = None,
) -> LayerOutput:
    """Run a Keras recurrent layer (or Bidirectional wrapper) on ``x`` (batch, time, features)."""
    dtype = compute_dtype(x)
    x = np.asarray(x, dtype=dtype)
    batch = x.shape[0]
    zeros = np.zeros((batch, meta.hidden_size), dtype=dtype)
    lstm = meta.cell == "lstm"
    start = initial[0] if initial is not None else [(zeros, zeros if lstm else None)] * 2

    y_forward, state_forward = _run_direction(meta, weights.forward, x, start[0], go_backwards=meta.go_backwards)
    if weights.backward is None:
        return LayerOutput(y=y_forward, states=[[state_forward]])
    y_backward, state_backward = _run_direction(meta, weights.backward, x, start[1], go_backwards=True)
    # Bidirectional re-reverses the backward sequence so that index t holds bwd(t).
    y_backward = y_backward[:, ::-1]
    assert meta.merge_mode is not None
    return LayerOutput(
        y=merge_directions(y_forward, y_backward, meta.merge_mode), states=[[state_forward, state_backward]]
    )


def _run_direction(
    meta: RecurrentMeta, cell: KerasCellArrays, x: np.ndarray, state: CellState, *, go_backwards: bool
) -> tuple[np.ndarray, CellState]:
    arrays = {name: np.asarray(a, dtype=x.dtype) for name, a in cell.arrays.items()}
    state = tuple(None if s is None else np.asarray(s, dtype=x.dtype) for s in state)  # type: ignore[assignment]
    if cell.layout == "keras":
        projected, step = _keras_cell(meta, arrays, x)
    elif cell.layout == "keras1-per-gate":
        projected, step = _keras1_cell(meta, arrays, x)
    else:
        projected, step = _cudnn_cell(meta, arrays, x)
    y, final = unroll(step, projected, state, reverse=go_backwards)
    # Keras returns a go_backwards sequence in processing order: output k is the k-th step taken.
    return (y[:, ::-1] if go_backwards else y), final


def _activations(meta: RecurrentMeta) -> tuple[Activation, Activation]:
    gate = meta.activations.gate
    return (gate if gate is not None else meta.activations.candidate), meta.activations.candidate


def _keras_cell(meta: RecurrentMeta, a: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, Step]:
    kernel, recurrent = a["kernel"], a["recurrent_kernel"]
    bias = a.get("bias")
    gate_act, act = _activations(meta)
    cell_output = meta.activations.cell_output
    projected = project(x, kernel)
    if meta.cell == "gru" and meta.reset_after:
        input_bias, recurrent_bias = (bias[0], bias[1]) if bias is not None else (0.0, 0.0)
        projected = projected + input_bias

        def gru_after(xz: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h = state[0]
            xg = split_gates(xz, "keras", "gru", axis=-1)
            hg = split_gates(h @ recurrent + recurrent_bias, "keras", "gru", axis=-1)
            z = apply(gate_act, xg["update"] + hg["update"])
            r = apply(gate_act, xg["reset"] + hg["reset"])
            hh = apply(act, xg["candidate"] + r * hg["candidate"])
            h_new = z * h + (1 - z) * hh
            return h_new, (h_new, None)

        return projected, gru_after
    if bias is not None:
        projected = projected + bias
    if meta.cell == "lstm":
        assert cell_output is not None

        def lstm(xz: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h, c = state
            g = split_gates(xz + h @ recurrent, "keras", "lstm", axis=-1)
            c_new = apply(gate_act, g["forget"]) * c + apply(gate_act, g["input"]) * apply(act, g["cell"])
            h_new = apply(gate_act, g["output"]) * apply(cell_output, c_new)
            return h_new, (h_new, c_new)

        return projected, lstm
    if meta.cell == "gru":
        r_blocks = split_gates(recurrent, "keras", "gru", axis=1)

        def gru_before(xz: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h = state[0]
            xg = split_gates(xz, "keras", "gru", axis=-1)
            z = apply(gate_act, xg["update"] + h @ r_blocks["update"])
            r = apply(gate_act, xg["reset"] + h @ r_blocks["reset"])
            hh = apply(act, xg["candidate"] + (r * h) @ r_blocks["candidate"])
            h_new = z * h + (1 - z) * hh
            return h_new, (h_new, None)

        return projected, gru_before

    def simple(xz: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h_new = apply(act, xz + state[0] @ recurrent)
        return h_new, (h_new, None)

    return projected, simple


def _keras1_cell(meta: RecurrentMeta, a: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, Step]:
    """Keras 1 per-gate arrays: W_<g> (in, H), U_<g> (H, H), b_<g> (H,), gate letters as in Keras 1."""
    gate_act, act = _activations(meta)
    cell_output = meta.activations.cell_output
    letters = "ifco" if meta.cell == "lstm" else "zrh"
    # Project the input for every gate at once: (batch, time, gates, H), gates in `letters` order.
    projected = np.stack([project(x, a[f"W_{g}"]) + a.get(f"b_{g}", 0.0) for g in letters], axis=2)

    if meta.cell == "lstm":
        assert cell_output is not None

        def lstm(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h, c = state
            i, f, cc, o = (xg[:, n] + h @ a[f"U_{g}"] for n, g in enumerate(letters))
            c_new = apply(gate_act, f) * c + apply(gate_act, i) * apply(act, cc)
            h_new = apply(gate_act, o) * apply(cell_output, c_new)
            return h_new, (h_new, c_new)

        return projected, lstm

    def gru(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h = state[0]
        z = apply(gate_act, xg[:, 0] + h @ a["U_z"])
        r = apply(gate_act, xg[:, 1] + h @ a["U_r"])
        hh = apply(act, xg[:, 2] + (r * h) @ a["U_h"])
        h_new = z * h + (1 - z) * hh
        return h_new, (h_new, None)

    return projected, gru


def _cudnn_cell(meta: RecurrentMeta, a: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, Step]:
    """cuDNN reading of CuDNNLSTM/CuDNNGRU arrays: each gate block is a flattened row-major (H, in) matrix."""
    hidden = meta.hidden_size
    cell = meta.cell
    kernel_blocks = split_gates(a["kernel"], "keras", cell, axis=1)
    recurrent_blocks = split_gates(a["recurrent_kernel"], "keras", cell, axis=1)
    w_in = {g: block.reshape(hidden, -1) for g, block in kernel_blocks.items()}  # C-order flatten, (H, in)
    w_rec = {g: block.reshape(hidden, hidden) for g, block in recurrent_blocks.items()}
    half = a["bias"].shape[0] // 2  # CuDNN bias: all input biases, then all recurrent biases
    input_bias, recurrent_bias = a["bias"][:half], a["bias"][half:]
    b_in = split_gates(input_bias, "keras", cell, axis=0)
    b_rec = split_gates(recurrent_bias, "keras", cell, axis=0)
    gates = list(kernel_blocks)
    projected = np.stack([project(x, w_in[g].T) + b_in[g] for g in gates], axis=2)
    sigmoid, tanh = Activation(name="sigmoid"), Activation(name="tanh")

    def recurrent_part(h: np.ndarray) -> dict[str, np.ndarray]:
        return {g: matmul(h, w_rec[g].T) + b_rec[g] for g in gates}

    if cell == "lstm":

        def lstm(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h, c = state
            hg = recurrent_part(h)
            pre = {g: xg[:, n] + hg[g] for n, g in enumerate(gates)}
            c_new = apply(sigmoid, pre["forget"]) * c + apply(sigmoid, pre["input"]) * np.tanh(pre["cell"])
            h_new = apply(sigmoid, pre["output"]) * apply(tanh, c_new)
            return h_new, (h_new, c_new)

        return projected, lstm

    def gru(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h = state[0]
        hg = recurrent_part(h)
        x_parts = {g: xg[:, n] for n, g in enumerate(gates)}
        z = apply(sigmoid, x_parts["update"] + hg["update"])
        r = apply(sigmoid, x_parts["reset"] + hg["reset"])
        hh = np.tanh(x_parts["candidate"] + r * hg["candidate"])
        h_new = z * h + (1 - z) * hh
        return h_new, (h_new, None)

    return projected, gru
