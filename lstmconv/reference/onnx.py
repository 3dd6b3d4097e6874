"""NumPy reference of the ONNX ``LSTM`` / ``GRU`` / ``RNN`` operators, on W/R/B/P with ONNX semantics.

Equations (``onnx/defs/rnn/defs.cc`` doc strings), activations f, g, h per direction::

    LSTM  i = f(Xt Wi^T + Ht-1 Ri^T + Pi*Ct-1 + Wbi + Rbi)    o = f(... + Po*Ct + ...)   (peephole on new C)
          f = f(Xt Wf^T + Ht-1 Rf^T + Pf*Ct-1 + Wbf + Rbf)    c = g(Xt Wc^T + Ht-1 Rc^T + Wbc + Rbc)
          input_forget=1: f = 1 - i;     Ct = f*Ct-1 + i*c;     Ht = o*h(Ct)
    GRU   z = f(Xt Wz^T + Ht-1 Rz^T + Wbz + Rbz)   r = f(Xt Wr^T + Ht-1 Rr^T + Wbr + Rbr)
          linear_before_reset=0: h~ = g(Xt Wh^T + (r*Ht-1) Rh^T + Rbh + Wbh)
          linear_before_reset=1: h~ = g(Xt Wh^T + r*(Ht-1 Rh^T + Rbh) + Wbh);   Ht = (1-z)*h~ + z*Ht-1
    RNN   Ht = f(Xt Wi^T + Ht-1 Ri^T + Wbi + Rbi)

``clip`` clamps the inputs of the gate and candidate activations to [-clip, clip] (as onnxruntime does: the
cell state fed to the LSTM's ``h`` is not clipped). ``sequence_lens`` follows onnxruntime: steps past
a sequence's length output zeros, the forward state stops at the last valid step, and the reverse
direction starts at each sequence's own last valid step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.gates import gate_count, split_gates
from lstmconv.layouts.onnx import ACTIVATION_COUNT, OnnxRecurrentNode
from lstmconv.reference.common import compute_dtype, matmul, project

__all__ = ["onnx_forward"]


def onnx_forward(
    node: OnnxRecurrentNode,
    X: np.ndarray,
    *,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    initial_c: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Run ``node`` on ``X`` (in the node's ``layout``); returns ``Y``, ``Y_h``, ``Y_c`` in that layout."""
    dtype = compute_dtype(X)
    X = np.asarray(X, dtype=dtype)
    if node.layout == 1:  # [B, T, I] -> [T, B, I]
        X = X.transpose(1, 0, 2)
        initial_h = None if initial_h is None else np.asarray(initial_h).transpose(1, 0, 2)
        initial_c = None if initial_c is None else np.asarray(initial_c).transpose(1, 0, 2)
    steps, batch, _ = X.shape
    hidden, cell = node.hidden_size, node.cell
    lengths = np.full(batch, steps) if sequence_lens is None else np.asarray(sequence_lens, dtype=np.int64)
    per_direction = ACTIVATION_COUNT[cell]
    Y = np.zeros((steps, node.num_directions, batch, hidden), dtype=dtype)
    Y_h = np.zeros((node.num_directions, batch, hidden), dtype=dtype)
    Y_c = np.zeros((node.num_directions, batch, hidden), dtype=dtype) if cell == "lstm" else None
    for d in range(node.num_directions):
        reverse = node.direction == "reverse" or d == 1
        acts = node.activations[d * per_direction : (d + 1) * per_direction]
        h = np.zeros((batch, hidden), dtype=dtype) if initial_h is None else np.asarray(initial_h[d], dtype=dtype)
        c = np.zeros((batch, hidden), dtype=dtype) if initial_c is None else np.asarray(initial_c[d], dtype=dtype)
        step = _step_function(node, d, acts, dtype)
        projected = project(X, np.asarray(node.W[d], dtype=dtype).T)
        # Rows of equal length run together (one matrix product per step for the whole group; with no
        # sequence_lens that is the whole batch); a reverse direction starts at each row's own last step.
        for length in sorted(set(lengths.tolist())):  # not np.unique: it imports numpy.ma
            rows: slice | np.ndarray = slice(None) if np.all(lengths == length) else np.flatnonzero(lengths == length)
            h_rows, c_rows = h[rows], c[rows]
            order = range(length - 1, -1, -1) if reverse else range(length)
            for t in order:
                h_rows, c_rows = step(projected[t, rows], h_rows, c_rows)
                Y[t, d, rows] = h_rows
            Y_h[d, rows] = h_rows
            if Y_c is not None:
                Y_c[d, rows] = c_rows
    if node.layout == 1:
        return Y.transpose(2, 0, 1, 3), Y_h.transpose(1, 0, 2), None if Y_c is None else Y_c.transpose(1, 0, 2)
    return Y, Y_h, Y_c


def _step_function(node: OnnxRecurrentNode, d: int, acts: Sequence[Activation], dtype: type):  # type: ignore[no-untyped-def]
    cell, hidden = node.cell, node.hidden_size
    gates = gate_count(cell)
    R = np.asarray(node.R[d], dtype=dtype)
    bias = np.zeros(2 * gates * hidden, dtype=dtype) if node.B is None else np.asarray(node.B[d], dtype=dtype)
    half = bias.shape[0] // 2  # B = [Wb, Rb]
    w_bias, r_bias = bias[:half], bias[half:]
    clip = node.clip

    def act(activation: Activation, value: np.ndarray) -> np.ndarray:
        return apply(activation, np.clip(value, -clip, clip) if clip is not None else value)

    if cell == "lstm":
        f_act, g_act, h_act = acts
        peep = (
            split_gates(np.asarray(node.P[d], dtype=dtype), "onnx", "lstm_peephole", axis=0)
            if node.P is not None
            else None
        )

        def lstm(xw: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            g = split_gates(xw + matmul(h, R.T) + w_bias + r_bias, "onnx", "lstm", axis=-1)
            i_pre, f_pre = g["input"], g["forget"]
            if peep is not None:
                i_pre, f_pre = i_pre + peep["input"] * c, f_pre + peep["forget"] * c
            i = act(f_act, i_pre)
            f = 1.0 - i if node.input_forget else act(f_act, f_pre)
            c_new = f * c + i * act(g_act, g["cell"])
            o_pre = g["output"] + (peep["output"] * c_new if peep is not None else 0.0)
            # onnxruntime clips the gate and candidate inputs, not the cell state fed to h (checked in tests).
            h_new = act(f_act, o_pre) * apply(h_act, c_new)
            return h_new, c_new

        return lstm
    if cell == "gru":
        f_act, g_act = acts
        wb = split_gates(w_bias, "onnx", "gru", axis=0)
        rb = split_gates(r_bias, "onnx", "gru", axis=0)
        r_blocks = split_gates(R, "onnx", "gru", axis=0)

        def gru(xw: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = split_gates(xw, "onnx", "gru", axis=-1)
            z = act(f_act, x["update"] + matmul(h, r_blocks["update"].T) + wb["update"] + rb["update"])
            r = act(f_act, x["reset"] + matmul(h, r_blocks["reset"].T) + wb["reset"] + rb["reset"])
            if node.linear_before_reset:
                recurrent = r * (matmul(h, r_blocks["candidate"].T) + rb["candidate"])
            else:
                recurrent = matmul(r * h, r_blocks["candidate"].T) + rb["candidate"]
            candidate = act(g_act, x["candidate"] + recurrent + wb["candidate"])
            return (1 - z) * candidate + z * h, c

        return gru
    (f_act,) = acts

    def rnn(xw: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return act(f_act, xw + matmul(h, R.T) + w_bias + r_bias), c

    return rnn
