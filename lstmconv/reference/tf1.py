"""NumPy reference of TensorFlow 1's ``tf.nn.rnn_cell`` cells run by ``dynamic_rnn``, on the checkpoint's arrays.

Layout (``rnn_cell_impl.py``): ``kernel`` ``(in + H_rec, G*H)`` multiplies ``concat([x_t, h_{t-1}])`` (input rows
first; ``H_rec`` is the projection size with ``num_proj``), ``bias`` ``(G*H,)``. Equations::

    LSTMCell / BasicLSTMCell   i, j, f, o = split(concat([x, m]) @ kernel + bias)       (i, j, f, o order)
        c' = s(f + forget_bias [+ w_f_diag * c]) * c + s(i [+ w_i_diag * c]) * act(j)   (cell_clip: clip c')
        m' = s(o [+ w_o_diag * c']) * act(c');  m' = m' @ projection/kernel (num_proj)   (proj_clip: clip m')
    GRUCell   r, u = split(s(concat([x, h]) @ gates/kernel + gates/bias))
              c = act(concat([x, r * h]) @ candidate/kernel + candidate/bias);  h' = u * h + (1 - u) * c
    BasicRNNCell   h' = act(concat([x, h]) @ kernel + bias)

``forget_bias`` (1.0 by default) is added at run time and stored nowhere. The brackets are the peepholes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.gates import split_gates
from lstmconv.reference.common import (
    CellState,
    LayerOutput,
    LayerStates,
    compute_dtype,
    matmul,
    project,
    unroll,
)

__all__ = ["tf1_forward"]


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * v)


def tf1_forward(
    cell: str,
    kernels: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    x: np.ndarray,
    initial: LayerStates | None = None,
    forget_bias: float = 0.0,
    activation: Activation,
    peepholes: Mapping[str, np.ndarray] | None = None,
    projection: np.ndarray | None = None,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
) -> LayerOutput:
    """Run one TF1 cell over ``x`` (batch, time, in) from a zero (or ``initial``) state; ``cell`` is 'lstm',
    'gru' or 'rnn', ``kernels``/``biases`` its variables (GRUCell: gates, then candidate)."""
    dtype = compute_dtype(x)
    x = np.asarray(x, dtype=dtype)
    kernels = [np.asarray(k, dtype=dtype) for k in kernels]
    biases = [np.asarray(b, dtype=dtype) for b in biases]
    inputs = x.shape[-1]
    batch = x.shape[0]
    hidden = biases[-1].shape[0] // {"lstm": 4, "gru": 1, "rnn": 1}[cell]
    recurrent = kernels[0].shape[0] - inputs
    if initial is not None:
        h0, c0 = initial[0][0]
        start: CellState = (np.asarray(h0, dtype=dtype), None if c0 is None else np.asarray(c0, dtype=dtype))
    else:
        start = (np.zeros((batch, recurrent), dtype), np.zeros((batch, hidden), dtype) if cell == "lstm" else None)

    def act(v: np.ndarray) -> np.ndarray:
        return apply(activation, v)

    w_x, w_h = kernels[0][:inputs], kernels[0][inputs:]  # concat([x, h]) @ kernel, as two products
    projected = project(x, w_x) + biases[0]
    if cell == "lstm":
        peep = {name: np.asarray(value, dtype=dtype) for name, value in (peepholes or {}).items()}
        proj = None if projection is None else np.asarray(projection, dtype=dtype)

        def lstm(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            m, c = state
            assert c is not None
            g = split_gates(xg + matmul(m, w_h), "tf1", "lstm", axis=-1)
            f = g["forget"] + forget_bias + (peep["w_f_diag"] * c if "w_f_diag" in peep else 0.0)
            i = g["input"] + (peep["w_i_diag"] * c if "w_i_diag" in peep else 0.0)
            c_new = _sigmoid(f) * c + _sigmoid(i) * act(g["cell"])
            if cell_clip is not None:
                c_new = np.clip(c_new, -cell_clip, cell_clip)
            o = g["output"] + (peep["w_o_diag"] * c_new if "w_o_diag" in peep else 0.0)
            m_new = _sigmoid(o) * act(c_new)
            if proj is not None:
                m_new = matmul(m_new, proj)
                if proj_clip is not None:
                    m_new = np.clip(m_new, -proj_clip, proj_clip)
            return m_new, (m_new, c_new)

        y, final = unroll(lstm, projected, start, reverse=False)
        return LayerOutput(y=y, states=[[final]])
    if cell == "gru":
        c_x, c_h = kernels[1][:inputs], kernels[1][inputs:]
        candidate_x = project(x, c_x) + biases[1]
        both = np.concatenate([projected, candidate_x], axis=-1)
        width = projected.shape[-1]

        def gru(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h = state[0]
            value = split_gates(_sigmoid(xg[:, :width] + matmul(h, w_h)), "tf1", "gru_gates", axis=-1)
            c = act(xg[:, width:] + matmul(value["reset"] * h, c_h))
            h_new = value["update"] * h + (1 - value["update"]) * c
            return h_new, (h_new, None)

        y, final = unroll(gru, both, start, reverse=False)
        return LayerOutput(y=y, states=[[final]])

    def rnn(xg: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h_new = act(xg + matmul(state[0], w_h))
        return h_new, (h_new, None)

    y, final = unroll(rnn, projected, start, reverse=False)
    return LayerOutput(y=y, states=[[final]])
