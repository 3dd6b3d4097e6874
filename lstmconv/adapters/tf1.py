"""TensorFlow 1 ``tf.nn.rnn_cell`` cells -> canonical form (the layout: :mod:`lstmconv.reference.tf1`).

A cell's kernel ``(in + H_rec, G*H)`` multiplies ``concat([x, h])``: its first ``in`` rows are the input
weights, the rest the recurrent ones, each transposed to canonical ``(H, in)``. The run-time ``forget_bias``
folds exactly into the forget gate's bias (TensorFlow adds it to the same pre-activation sum). Peepholes
(``w_i_diag``, ``w_f_diag``, ``w_o_diag``) are the canonical ones (input and forget read the previous cell state,
output the new one, as ONNX's), ``projection/kernel`` ``(H, P)`` is torch's ``weight_hr`` transposed, and a
``GRUCell`` applies its reset gate before the recurrent product (Keras ``reset_after=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmconv.activations import Activation
from lstmconv.errors import ShapeMismatchError
from lstmconv.gates import CELL_GATES, Gate, split_gates
from lstmconv.layouts.tf1 import Tf1CellKind
from lstmconv.schema import (
    CellActivations,
    DirectionWeights,
    GateWeights,
    RecurrentLayer,
    SourceInfo,
    StackLevel,
)

__all__ = ["Tf1Cell", "tf1_cell_to_canonical"]

_PEEPHOLES: dict[str, Gate] = {"w_i_diag": "input", "w_f_diag": "forget", "w_o_diag": "output"}


@dataclass(frozen=True)
class Tf1Cell:
    """One cell's variables, as stored, and the facts its graph (or the cell's defaults) give."""

    scope: str
    kind: Tf1CellKind
    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    input_size: int
    hidden_size: int
    activation: Activation
    forget_bias: float = 0.0
    peepholes: dict[str, np.ndarray] = field(default_factory=dict)
    projection: np.ndarray | None = None  # (H, P)
    state_clip: float | None = None  # LSTMCell's cell_clip: the cell state clamped after each update


def tf1_cell_to_canonical(cell: Tf1Cell, source: SourceInfo) -> RecurrentLayer:
    """The canonical layer computing what ``cell`` computes under ``dynamic_rnn`` from a zero state."""
    kind = cell.kind.cell
    inputs, hidden = cell.input_size, cell.hidden_size
    blocks: dict[Gate, dict[str, np.ndarray]] = {gate: {} for gate in CELL_GATES[kind]}
    for position, (kernel, bias) in enumerate(zip(cell.kernels, cell.biases, strict=True)):
        name = f"{cell.scope}/{cell.kind.kernels[position]}"
        if kernel.ndim != 2 or bias.ndim != 1 or kernel.shape[1] != bias.shape[0] or kernel.shape[0] <= inputs:
            raise ShapeMismatchError(
                "a kernel must be (input + recurrent, gates * units) with a bias of its columns",
                layer=cell.scope, tensor=name, actual=(tuple(kernel.shape), tuple(bias.shape)),
            )
        gates = {"lstm": "lstm", "rnn": "rnn", "gru": "gru_gates" if position == 0 else None}[kind]
        if gates is None:  # GRUCell's candidate kernel is one block
            parts = {"candidate": (kernel[:inputs], kernel[inputs:], bias)}
        else:
            w_x = split_gates(kernel[:inputs], "tf1", gates, axis=1, tensor=name)
            w_h = split_gates(kernel[inputs:], "tf1", gates, axis=1, tensor=name)
            b = split_gates(bias, "tf1", gates, axis=0, tensor=name.replace("kernel", "bias"))
            parts = {gate: (w_x[gate], w_h[gate], b[gate]) for gate in w_x}
        for gate, (w_input, w_recurrent, b_input) in parts.items():
            if w_input.shape[1] != hidden:
                raise ShapeMismatchError("a gate block is not as wide as the cell's units", layer=cell.scope, tensor=name,
                                         expected=hidden, actual=int(w_input.shape[1]))
            if gate == "forget" and cell.forget_bias:
                b_input = b_input + b_input.dtype.type(cell.forget_bias)  # what TensorFlow adds at every step
            blocks[gate] = {"w_input": w_input.T, "w_recurrent": w_recurrent.T, "b_input": b_input}
    for variable, gate in _PEEPHOLES.items():
        if variable in cell.peepholes:
            blocks[gate]["peephole"] = cell.peepholes[variable]
    direction = DirectionWeights(
        gates={gate: GateWeights(**parts) for gate, parts in blocks.items()},
        w_projection=None if cell.projection is None else cell.projection.T,
    )
    if kind == "rnn":
        activations = CellActivations(gate=None, candidate=cell.activation, cell_output=None)
    else:
        sigmoid = Activation(name="sigmoid")
        activations = CellActivations(gate=sigmoid, candidate=cell.activation, cell_output=cell.activation if kind == "lstm" else None)
    return RecurrentLayer(
        name=cell.scope,
        cell=kind,  # type: ignore[arg-type]
        input_size=inputs,
        hidden_size=hidden,
        projection_size=None if cell.projection is None else int(cell.projection.shape[1]),
        reset_after=False if kind == "gru" else None,
        state_clip=cell.state_clip,
        activations=activations,
        dtype=str(cell.kernels[0].dtype),
        source=source,
        levels=(StackLevel(forward=direction),),
    )
