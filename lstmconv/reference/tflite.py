"""NumPy reference of the TFLite kernels lstmconv writes, on the arrays in TFLite's layout (:mod:`lstmconv.layouts.tflite`).

``UNIDIRECTIONAL_SEQUENCE_LSTM`` (``kernels/lstm_eval.cc``, float path)::

    i = s(W_i x + R_i h + p_i * c + b_i)    f = s(W_f x + R_f h + p_f * c + b_f)
    g = act(W_c x + R_c h + b_c)            c' = f * c + i * g        (cell_clip > 0: clip c')
    o = s(W_o x + R_o h + p_o * c' + b_o)   h' = o * act(c')          (projection: h' = P h', proj_clip)

``UNIDIRECTIONAL_SEQUENCE_RNN``: ``h' = act(W x + R h + b)``. ``act`` is the op's ``fused_activation_function``
(``NONE``, ``RELU``, ``RELU_N1_TO_1``, ``RELU6``, ``TANH``). The GRU lstmconv writes as a ``WHILE`` loop of
builtin ops computes Keras's equations (:func:`gru_step`). Every op reads batch-first ``(batch, time, features)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.layouts.tflite import TfliteRecurrentOp
from lstmconv.reference.common import (
    CellState,
    LayerOutput,
    LayerStates,
    ReferenceFn,
    compute_dtype,
    matmul,
    merge_directions,
    project,
    unroll,
)
from lstmconv.schema import RecurrentMeta

__all__ = ["fused", "tflite_lstm", "tflite_lstm_loop", "tflite_rnn", "tflite_gru", "tflite_layer_function", "tflite_dense_function"]


def fused(activation: str, v: np.ndarray) -> np.ndarray:
    """A TFLite ``ActivationFunctionType`` applied to ``v``."""
    if activation == "NONE":
        return v
    if activation == "RELU":
        return np.maximum(v, 0.0)
    if activation == "RELU_N1_TO_1":
        return np.clip(v, -1.0, 1.0)
    if activation == "RELU6":
        return np.clip(v, 0.0, 6.0)
    if activation == "TANH":
        return np.tanh(v)
    raise ValueError(f"no fused activation {activation!r}")


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * v)


def tflite_lstm(
    x: np.ndarray, slots: Mapping[int, np.ndarray], activation: str, start: CellState, *, reverse: bool = False,
    cell_clip: float = 0.0,
) -> tuple[np.ndarray, CellState]:
    """One fused LSTM op over ``x`` (batch, time, in) from ``start`` (h, c); ``slots``: its inputs by index
    (1-16 as :mod:`lstmconv.layouts.tflite` numbers them; absent: left out). ``reverse``: the op is fed the
    time-reversed sequence (a ``REVERSE_V2`` before it); outputs stay aligned with ``x``'s time."""
    dtype = compute_dtype(x)
    w = {k: np.asarray(v, dtype=dtype) for k, v in slots.items()}
    gates = ("input", "forget", "cell", "output")
    projected = {g: project(np.asarray(x, dtype=dtype), w[1 + k].T) + w[12 + k] for k, g in enumerate(gates)}
    stacked = np.stack([projected[g] for g in gates], axis=-2)  # (batch, time, 4, units)
    recurrent = [w[5 + k].T for k in range(4)]

    def step(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h, c = state
        assert c is not None
        pre = [xg[:, k] + matmul(h, recurrent[k]) for k in range(4)]
        i = _sigmoid(pre[0] + (w[9] * c if 9 in w else 0.0))
        f = _sigmoid(pre[1] + (w[10] * c if 10 in w else 0.0))
        c_new = f * c + i * fused(activation, pre[2])
        if cell_clip > 0:
            c_new = np.clip(c_new, -cell_clip, cell_clip)
        o = _sigmoid(pre[3] + (w[11] * c_new if 11 in w else 0.0))
        h_new = o * fused(activation, c_new)
        if 16 in w:
            h_new = matmul(h_new, w[16].T)
        return h_new, (h_new, c_new)

    return unroll(step, stacked, start, reverse=reverse)


def tflite_rnn(
    x: np.ndarray, weights: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, activation: str, start: CellState,
    *, reverse: bool = False,
) -> tuple[np.ndarray, CellState]:
    """One ``UNIDIRECTIONAL_SEQUENCE_RNN`` op over ``x`` from ``start``."""
    dtype = compute_dtype(x)
    projected = project(np.asarray(x, dtype=dtype), np.asarray(weights, dtype=dtype).T) + np.asarray(bias, dtype=dtype)
    r = np.asarray(recurrent, dtype=dtype).T

    def step(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h_new = fused(activation, xg + matmul(state[0], r))
        return h_new, (h_new, None)

    return unroll(step, projected, start, reverse=reverse)


def tflite_gru(
    x: np.ndarray, arrays: Mapping[str, np.ndarray], gate: Activation, candidate: Activation, reset_after: bool, start: CellState,
    *, reverse: bool = False,
) -> tuple[np.ndarray, CellState]:
    """The GRU loop lstmconv writes: per step ``FULLY_CONNECTED`` products of ``x_t`` and ``h`` with the
    ``(units, in)`` matrices ``w_z, w_r, w_h`` / ``r_z, r_r, r_h`` and biases ``b_*`` (input) and ``rb_*``
    (recurrent); ``z = gate(...)``, ``r = gate(...)``, the candidate with the reset before (``r * h``) or after
    (``r * (R_h h + rb_h)``) the recurrent product, ``h' = z * h + (1 - z) * candidate``."""
    dtype = compute_dtype(x)
    a = {k: np.asarray(v, dtype=dtype) for k, v in arrays.items()}
    gate_fn, candidate_fn = gate, candidate
    parts = [project(np.asarray(x, dtype=dtype), a[f"w_{g}"].T) + a[f"b_{g}"] for g in ("z", "r", "h")]
    stacked = np.stack(parts, axis=-2)

    def step(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h = state[0]
        z = apply(gate_fn, xg[:, 0] + matmul(h, a["r_z"].T) + a["rb_z"])
        r = apply(gate_fn, xg[:, 1] + matmul(h, a["r_r"].T) + a["rb_r"])
        if reset_after:
            hh = apply(candidate_fn, xg[:, 2] + r * (matmul(h, a["r_h"].T) + a["rb_h"]))
        else:
            hh = apply(candidate_fn, xg[:, 2] + matmul(r * h, a["r_h"].T) + a["rb_h"])
        h_new = z * h + (1 - z) * hh
        return h_new, (h_new, None)

    return unroll(step, stacked, start, reverse=reverse)


def tflite_dense_function(activation: Activation, weight: np.ndarray, bias: np.ndarray | None) -> ReferenceFn:
    """``FULLY_CONNECTED`` (weights ``(units, in)``, over the last axis) and the activation's ops."""

    def run(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        y = project(np.asarray(x), weight.astype(compute_dtype(x), copy=False).T)
        if bias is not None:
            y = y + bias
        return LayerOutput(y=apply(activation, y), states=[])

    return run


def tflite_lstm_loop(x: np.ndarray, op: TfliteRecurrentOp, start: CellState, *, reverse: bool = False) -> tuple[np.ndarray, CellState]:
    """The LSTM loop lstmconv writes for an LSTM the fused op cannot compute: per step ``FULLY_CONNECTED``
    products of ``h`` with ``r_i, r_f, r_c, r_o`` added to the input products (``w_*``, ``b_*``), peepholes
    ``p_*`` multiplied by the cell state, each gate's activation, the cell state clamped by ``cell_clip``."""
    dtype = compute_dtype(x)
    a = {k: np.asarray(v, dtype=dtype) for k, v in op.named.items()}
    assert op.gate is not None and op.candidate is not None and op.cell_output is not None
    keys = ("i", "f", "c", "o")
    stacked = np.stack([project(np.asarray(x, dtype=dtype), a[f"w_{k}"].T) + a[f"b_{k}"] for k in keys], axis=-2)

    def step(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h, c = state
        assert c is not None
        pre = {k: xg[:, n] + matmul(h, a[f"r_{k}"].T) for n, k in enumerate(keys)}
        i = apply(op.gate, pre["i"] + (a["p_i"] * c if "p_i" in a else 0.0))  # type: ignore[arg-type]
        f = apply(op.gate, pre["f"] + (a["p_f"] * c if "p_f" in a else 0.0))  # type: ignore[arg-type]
        c_new = f * c + i * apply(op.candidate, pre["c"])  # type: ignore[arg-type]
        if op.cell_clip > 0:
            c_new = np.clip(c_new, -op.cell_clip, op.cell_clip)
        o = apply(op.gate, pre["o"] + (a["p_o"] * c_new if "p_o" in a else 0.0))  # type: ignore[arg-type]
        h_new = o * apply(op.cell_output, c_new)  # type: ignore[arg-type]
        return h_new, (h_new, c_new)

    return unroll(step, stacked, start, reverse=reverse)


def _run_op(op: TfliteRecurrentOp, x: np.ndarray, start: CellState, reverse: bool) -> tuple[np.ndarray, CellState]:
    if op.cell == "lstm" and op.looped:
        return tflite_lstm_loop(x, op, start, reverse=reverse)
    if op.cell == "lstm":
        return tflite_lstm(x, op.slots, op.activation, start, reverse=reverse, cell_clip=op.cell_clip)
    if op.cell == "rnn":
        return tflite_rnn(x, op.named["weights"], op.named["recurrent"], op.named["bias"], op.activation, start, reverse=reverse)
    assert op.gate is not None and op.candidate is not None
    return tflite_gru(x, op.named, op.gate, op.candidate, op.reset_after, start, reverse=reverse)


def tflite_layer_function(meta: RecurrentMeta, ops: list[TfliteRecurrentOp]) -> ReferenceFn:
    """``(x batch-first, initial states) -> LayerOutput`` for a layer written as ``ops``: each level's
    directions (a backward one reads the reversed sequence, its outputs put back in input time) concatenated
    into the next level; a Keras ``go_backwards`` layer's output in processing order; directions merged."""

    def run(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        dtype = compute_dtype(x)
        sequence = np.asarray(x, dtype=dtype)
        states: LayerStates = []
        outputs: list[np.ndarray] = []
        for level in range(meta.num_levels):
            outputs, level_states = [], []
            for op in [op for op in ops if op.level == level]:
                d = 1 if op.backward else 0
                if initial is not None:
                    h0, c0 = initial[level][d]
                    start: CellState = (np.asarray(h0, dtype=dtype), None if c0 is None else np.asarray(c0, dtype=dtype))
                else:
                    batch = sequence.shape[0]
                    start = (np.zeros((batch, op.outputs), dtype), np.zeros((batch, op.units), dtype) if op.cell == "lstm" else None)
                y, final = _run_op(op, sequence, start, reverse=op.backward or meta.go_backwards)
                outputs.append(y)
                level_states.append(final)
            states.append(level_states)
            sequence = np.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        if meta.bidirectional:
            assert meta.merge_mode is not None
            return LayerOutput(y=merge_directions(outputs[0], outputs[1], meta.merge_mode), states=states)
        y = outputs[0]
        if meta.go_backwards and not meta.time_aligned_output:
            y = y[:, ::-1]  # Keras go_backwards returns the sequence in processing order
        return LayerOutput(y=y, states=states)

    return run
