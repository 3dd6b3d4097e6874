"""NumPy reference computed straight from the canonical, gate-named form (no framework layout involved).

Per gate ``pre = x @ w_input.T + b_input + h @ w_recurrent.T + b_recurrent`` (missing biases are zero), with
the canonical semantics of :mod:`lstmconv.schema`: LSTM peepholes on the previous cell (input, forget) and
on the new cell (output), ``cell_clip`` on the activation inputs of gates and candidate, ``input_forget``;
GRU ``reset_after``; ``go_backwards`` with outputs in processing order unless ``time_aligned_output``;
bidirectional merge; stacked levels fed with the directions concatenated.
"""

from __future__ import annotations

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.reference.common import CellState, LayerOutput, LayerStates, Step, compute_dtype, matmul, merge_directions, unroll
from lstmconv.schema import CellActivations, DirectionWeights, RecurrentLayer

__all__ = ["canonical_forward"]


def canonical_forward(layer: RecurrentLayer, x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
    """Run ``layer`` on ``x`` (batch, time, features) from its gate-named weights."""
    dtype = compute_dtype(x)
    values = np.asarray(x, dtype=dtype)
    batch = values.shape[0]
    states: LayerStates = []
    outputs: list[np.ndarray] = []
    for k, level in enumerate(layer.levels):
        sides = [level.forward] + ([level.backward] if level.backward is not None else [])
        outputs, level_states = [], []
        for d, direction in enumerate(sides):
            if initial is not None:
                start = initial[k][d]
            else:
                zeros_c = np.zeros((batch, layer.hidden_size), dtype=dtype) if layer.cell == "lstm" else None
                start = (np.zeros((batch, layer.output_size), dtype=dtype), zeros_c)
            reverse = d == 1 or layer.go_backwards
            y, final = unroll(_step(layer, direction, dtype, layer.direction_activations(d)), values, start, reverse=reverse)
            outputs.append(y)
            level_states.append(final)
        states.append(level_states)
        values = np.concatenate(outputs, axis=-1)
    if layer.bidirectional:
        assert layer.merge_mode is not None
        return LayerOutput(y=merge_directions(outputs[0], outputs[1], layer.merge_mode), states=states)
    y = outputs[0]
    if layer.go_backwards and not layer.time_aligned_output:
        y = y[:, ::-1]
    return LayerOutput(y=y, states=states)


def _step(layer: RecurrentLayer, direction: DirectionWeights, dtype: type, acts: CellActivations) -> Step:
    gates = {
        g: (
            p.w_input.astype(dtype, copy=False),
            p.w_recurrent.astype(dtype, copy=False),
            (0.0 if p.b_input is None else p.b_input.astype(dtype, copy=False))
            + (0.0 if p.b_recurrent is None else p.b_recurrent.astype(dtype, copy=False)),
            0.0 if p.b_recurrent is None else p.b_recurrent.astype(dtype, copy=False),
            None if p.peephole is None else p.peephole.astype(dtype, copy=False),
        )
        for g, p in direction.gates.items()
    }
    clip = layer.cell_clip
    projection = None if direction.w_projection is None else direction.w_projection.astype(dtype, copy=False)

    def act(activation: Activation, value: np.ndarray) -> np.ndarray:
        return apply(activation, np.clip(value, -clip, clip) if clip is not None else value)

    def pre(gate: str, x_t: np.ndarray, h: np.ndarray) -> np.ndarray:
        w_in, w_rec, bias, _, _ = gates[gate]
        return matmul(x_t, w_in.T) + matmul(h, w_rec.T) + bias

    if layer.cell == "lstm":
        gate_act, candidate_act, output_act = acts.gate, acts.candidate, acts.cell_output
        assert gate_act is not None and output_act is not None

        def lstm(x_t: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h, c = state
            assert c is not None
            peep = {g: gates[g][4] for g in ("input", "forget", "output")}
            i_pre = pre("input", x_t, h) + (0.0 if peep["input"] is None else peep["input"] * c)
            i = act(gate_act, i_pre)
            if layer.input_forget:
                f = 1.0 - i
            else:
                f = act(gate_act, pre("forget", x_t, h) + (0.0 if peep["forget"] is None else peep["forget"] * c))
            c_new = f * c + i * act(candidate_act, pre("cell", x_t, h))
            if layer.state_clip is not None:
                c_new = np.clip(c_new, -layer.state_clip, layer.state_clip)
            o = act(gate_act, pre("output", x_t, h) + (0.0 if peep["output"] is None else peep["output"] * c_new))
            h_new = o * apply(output_act, c_new)  # the cell state fed to the output activation is not clipped
            if projection is not None:
                h_new = matmul(h_new, projection.T)
            return h_new, (h_new, c_new)

        return lstm
    if layer.cell == "gru":
        gate_act, candidate_act = acts.gate, acts.candidate
        assert gate_act is not None

        def gru(x_t: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
            h = state[0]
            z = act(gate_act, pre("update", x_t, h))
            r = act(gate_act, pre("reset", x_t, h))
            w_in, w_rec, _, b_rec, _ = gates["candidate"]
            b_in = gates["candidate"][2] - b_rec
            if layer.reset_after:
                candidate = matmul(x_t, w_in.T) + b_in + r * (matmul(h, w_rec.T) + b_rec)
            else:
                candidate = matmul(x_t, w_in.T) + b_in + matmul(r * h, w_rec.T) + b_rec
            h_new = z * h + (1 - z) * act(candidate_act, candidate)
            return h_new, (h_new, None)

        return gru

    def rnn(x_t: np.ndarray, state: CellState) -> tuple[np.ndarray, CellState]:
        h_new = act(acts.candidate, pre("hidden", x_t, state[0]))
        return h_new, (h_new, None)

    return rnn
