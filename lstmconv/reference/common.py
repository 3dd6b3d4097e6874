"""What every reference cell shares: the state convention and the time loop.

States are a list over stacked levels, each a list over directions (forward, then backward) of
``(h, c)`` tuples; ``c`` is ``None`` for GRU and SimpleRNN. This is the order of torch's ``h_n`` and of
Keras ``Bidirectional`` ``return_state`` (forward states, then backward states).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CellState",
    "LayerStates",
    "LayerOutput",
    "ReferenceFn",
    "Step",
    "unroll",
    "merge_directions",
    "compute_dtype",
    "project",
    "matmul",
]


def compute_dtype(x: np.ndarray) -> type:
    """The arithmetic precision of a reference run: float64 input runs in float64, anything else in float32.

    The numeric check feeds float32 input for float32 weights: the weights are then used as stored, with no
    widened copies (a float64 copy of a large layer costs more than the whole run).
    """
    return np.float64 if np.asarray(x).dtype == np.float64 else np.float32


def project(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``x @ weight`` over every leading axis of ``x`` (time, batch), as one 2-D matrix product (:func:`matmul`).

    NumPy runs a 3-D ``x @ w`` as one product per leading index, and with a transposed ``w`` (``w_ih.T``)
    copies it for each: an order of magnitude slower on a large weight, the check's main cost.
    """
    rows = x.reshape(-1, x.shape[-1])  # a copy only when x is not contiguous, and x is small
    return matmul(rows, weight).reshape(*x.shape[:-1], weight.shape[-1])


# The numeric check multiplies a few rows (its batch of 4, or 12 for the input projection of its 3 steps) by
# every weight matrix. For a transposed view of an (out, in) matrix (torch's and ONNX's layout) OpenBLAS first
# packs the whole matrix, then multiplies; in blocks of about 1 MiB the packed block is still in cache when it
# is used (a third faster for 4 to 12 rows; Keras's (in, out) kernel, not transposed, gains nothing); with
# hundreds of rows, as in a real forward pass, one product is faster, and below 4 MiB blocking gains nothing.
_BLOCKED_MAX_ROWS = 16
_BLOCKED_FROM_BYTES = 4 << 20
_BLOCK_BYTES = 1 << 20


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays; in blocks of ``b``'s columns when ``b`` is a large transposed view (``w.T``
    of a C-ordered ``w``) and ``a`` has few rows (see above). Each output element is one dot product over the
    whole shared axis either way."""
    if (
        a.ndim != 2
        or b.ndim != 2
        or a.shape[0] > _BLOCKED_MAX_ROWS
        or b.nbytes < _BLOCKED_FROM_BYTES
        or a.dtype != b.dtype
        or not b.T.flags.c_contiguous
    ):
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=b.dtype)
    columns = max(64, _BLOCK_BYTES // (b.shape[0] * b.itemsize))
    for start in range(0, b.shape[1], columns):
        np.matmul(a, b[:, start : start + columns], out=out[:, start : start + columns])
    return out


CellState = tuple[np.ndarray, "np.ndarray | None"]
LayerStates = list[list[CellState]]
#: One time step: (input projection at t, state) -> (output at t, new state).
Step = Callable[[np.ndarray, CellState], tuple[np.ndarray, CellState]]


@dataclass(frozen=True)
class LayerOutput:
    """A layer's full output sequence (merged as the layer merges) and its final states."""

    y: np.ndarray | tuple[np.ndarray, np.ndarray]
    states: LayerStates


#: A whole layer: (x, initial states or None) -> output. Every reference and every target check has this shape.
ReferenceFn = Callable[[np.ndarray, "LayerStates | None"], LayerOutput]


def unroll(step: Step, projected: np.ndarray, state: CellState, *, reverse: bool) -> tuple[np.ndarray, CellState]:
    """Run ``step`` over the time axis of ``projected`` (batch, time, ...).

    Returns the outputs aligned with the input's time axis (index t holds the output computed while
    reading input t, whichever direction the loop runs) and the final state.
    """
    steps = projected.shape[1]
    outputs: list[np.ndarray] = [np.empty(0)] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        out, state = step(projected[:, t], state)
        outputs[t] = out
    return np.stack(outputs, axis=1), state


def merge_directions(
    forward: np.ndarray, backward: np.ndarray, mode: str
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Merge two direction outputs the way Keras ``Bidirectional(merge_mode=...)`` does."""
    if mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    if mode == "ave":
        return (forward + backward) / 2
    if mode == "none":
        return (forward, backward)
    raise ValueError(f"unknown merge mode {mode!r}")
