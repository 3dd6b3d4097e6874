"""The gate-order table, and the only two functions that slice or stack gates.

Frameworks store the per-gate blocks of a recurrent cell stacked along one axis, each in its own order.
This module states every order exactly once (sources: ``../shared/reference/layouts.md`` sections 1-6,
checked against each framework's source) and gives two helpers that use the table:

* :func:`split_gates` turns a stacked array into ``{gate: view}`` (views, no copies);
* :func:`stack_gates` turns ``{gate: array}`` into one stacked array in a layout's order.

No other code in lstmconv slices ``[:, H:2H]`` or writes an index permutation such as ``[0, 3, 1, 2]``.

Canonical gate names:

* LSTM: ``input``, ``forget``, ``cell`` (candidate, a.k.a. g/c/j/z), ``output``
* GRU: ``update`` (z; torch's "input gate"), ``reset`` (r), ``candidate`` (h/n)
* SimpleRNN / Elman RNN: ``hidden`` (the single block)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from lstmconv._fast import buffers
from lstmconv._fast.copying import copy_into
from lstmconv.errors import ShapeMismatchError

__all__ = [
    "CellKind",
    "Gate",
    "CELL_GATES",
    "GATE_ORDER",
    "gate_count",
    "split_gates",
    "stack_gates",
]

CellKind = Literal["lstm", "gru", "rnn"]
Gate = Literal["input", "forget", "cell", "output", "update", "reset", "candidate", "hidden"]

#: The gates of each cell kind, in canonical order (the order used in canonical files and reports).
CELL_GATES: dict[str, tuple[Gate, ...]] = {
    "lstm": ("input", "forget", "cell", "output"),
    "gru": ("update", "reset", "candidate"),
    "rnn": ("hidden",),
}

#: (layout, cell) -> order of the gate blocks along the stacking axis.
GATE_ORDER: dict[tuple[str, str], tuple[Gate, ...]] = {
    # Keras 1 (consume_less='gpu'), Keras 2, tf.keras, Keras 3, CuDNNLSTM/CuDNNGRU: kernel (in, G*H).
    ("keras", "lstm"): ("input", "forget", "cell", "output"),
    ("keras", "gru"): ("update", "reset", "candidate"),
    ("keras", "rnn"): ("hidden",),
    # Keras 1 per-gate files list W_x, U_x, b_x triples in this order: LSTM.build overrides
    # trainable_weights to i, c, f, o (not the creation order); GRU keeps z, r, h.
    ("keras1", "lstm"): ("input", "cell", "forget", "output"),
    ("keras1", "gru"): ("update", "reset", "candidate"),
    # torch.nn.LSTM/GRU/RNN: weight_ih (G*H, in).
    ("torch", "lstm"): ("input", "forget", "cell", "output"),
    ("torch", "gru"): ("reset", "update", "candidate"),
    ("torch", "rnn"): ("hidden",),
    # ONNX LSTM/GRU/RNN: W [D, G*H, in]; peepholes P [D, 3H] in i, o, f.
    ("onnx", "lstm"): ("input", "output", "forget", "cell"),
    ("onnx", "gru"): ("update", "reset", "candidate"),
    ("onnx", "rnn"): ("hidden",),
    ("onnx", "lstm_peephole"): ("input", "output", "forget"),
    # TF1 tf.nn.rnn_cell: kernel (in+H, G*H) multiplying concat([x, h]); LSTMCell/BasicLSTMCell/LSTMBlockCell
    # i, j, f, o; GRUCell's gates/kernel (in+H, 2H) r, u (its candidate/kernel is the third block, alone).
    ("tf1", "lstm"): ("input", "cell", "forget", "output"),
    ("tf1", "gru_gates"): ("reset", "update"),
    ("tf1", "rnn"): ("hidden",),
}


def gate_count(cell: str) -> int:
    """Number of gate blocks of a cell kind (LSTM 4, GRU 3, RNN 1)."""
    return len(CELL_GATES[cell])


def _order(layout: str, cell: str) -> tuple[Gate, ...]:
    try:
        return GATE_ORDER[(layout, cell)]
    except KeyError:
        known = ", ".join(f"{a}/{b}" for a, b in GATE_ORDER)
        raise KeyError(f"no gate order for layout {layout!r} and cell {cell!r}; known: {known}") from None


def split_gates(
    stacked: np.ndarray, layout: str, cell: str, *, axis: int, tensor: str = "weights"
) -> dict[Gate, np.ndarray]:
    """Split ``stacked`` along ``axis`` into named gate blocks (views) in ``layout``'s order."""
    order = _order(layout, cell)
    length = stacked.shape[axis]
    if length % len(order):
        raise ShapeMismatchError(
            f"axis {axis} of length {length} is not a multiple of the {len(order)} {cell.upper()} gates",
            tensor=tensor,
            expected=f"a multiple of {len(order)}",
            actual=tuple(stacked.shape),
        )
    size = length // len(order)
    index: list[slice] = [slice(None)] * stacked.ndim
    blocks: dict[Gate, np.ndarray] = {}
    for position, gate in enumerate(order):
        index[axis] = slice(position * size, (position + 1) * size)
        blocks[gate] = stacked[tuple(index)]
    return blocks


def stack_gates(
    gates: Mapping[str, np.ndarray], layout: str, cell: str, *, axis: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Stack named gate blocks along ``axis`` in ``layout``'s order, into ``out`` if given (else one new array)."""
    order = _order(layout, cell)
    blocks = [gates[gate] for gate in order]
    # Write straight into a C-ordered result: blocks are often transposed views, and letting concatenate pick
    # their (Fortran) order would cost a second full copy when the result is serialised.
    shape = list(blocks[0].shape)
    shape[axis] = sum(block.shape[axis] for block in blocks)
    if out is None:
        out = buffers.empty(shape, np.result_type(*blocks))
    elif list(out.shape) != shape:
        raise ShapeMismatchError(f"gates stack to {tuple(shape)}, not into an array of {out.shape}")
    index: list[slice] = [slice(None)] * out.ndim
    start = 0
    for block in blocks:
        index[axis] = slice(start, start + block.shape[axis])
        copy_into(out[tuple(index)], block)
        start += block.shape[axis]
    return out
