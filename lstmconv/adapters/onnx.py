"""ONNX layout <-> canonical form, one recurrent node per stacked level.

ONNX stores ``W [D, G*H, in]``, ``R [D, G*H, H]`` (``(out, in)`` per direction), ``B [D, 2*G*H] = [Wb, Rb]``
and LSTM peepholes ``P [D, 3H]`` (i, o, f); gates LSTM i,o,f,c, GRU z,r,h (see :mod:`lstmconv.layouts.onnx`).
Both biases and the peepholes map one to one, so nothing is summed or lost in either direction. A
``direction=reverse`` node is a ``go_backwards`` layer whose outputs are aligned with input time.
"""

from __future__ import annotations

import numpy as np

from lstmconv._fast import buffers
from lstmconv.activations import Activation
from lstmconv.errors import UnsupportedFeatureError
from lstmconv.gates import CELL_GATES, split_gates, stack_gates
from lstmconv.layouts.onnx import ACTIVATION_COUNT, ONNX_OPS, OnnxRecurrentNode, activation_to_onnx
from lstmconv.schema import (
    CellActivations,
    DirectionWeights,
    EmbeddingLayer,
    GateWeights,
    Layer,
    RecurrentLayer,
    RecurrentMeta,
    SourceInfo,
    StackLevel,
)

__all__ = ["node_to_canonical", "nodes_from_canonical", "onnx_refusals", "onnx_whole_model_refusals"]


def node_to_canonical(node: OnnxRecurrentNode, source: SourceInfo) -> RecurrentLayer:
    """The canonical layer of one ONNX recurrent node (views of its arrays, no copies)."""
    cell, per_direction = node.cell, ACTIVATION_COUNT[node.cell]

    def named(listed: tuple[Activation, ...]) -> CellActivations:
        if cell == "lstm":
            return CellActivations(gate=listed[0], candidate=listed[1], cell_output=listed[2])
        if cell == "gru":
            return CellActivations(gate=listed[0], candidate=listed[1], cell_output=None)
        return CellActivations(gate=None, candidate=listed[0], cell_output=None)

    activations = named(tuple(node.activations[:per_direction]))
    backward = named(tuple(node.activations[per_direction:])) if node.num_directions == 2 else None
    directions = [_direction(node, d) for d in range(node.num_directions)]
    meta = RecurrentMeta(
        name=node.name,
        cell=cell,  # type: ignore[arg-type]
        input_size=int(node.W.shape[2]),
        hidden_size=node.hidden_size,
        bidirectional=node.num_directions == 2,
        merge_mode="concat" if node.num_directions == 2 else None,
        go_backwards=node.direction == "reverse",
        time_aligned_output=node.direction == "reverse",
        return_sequences=True,
        reset_after=node.linear_before_reset if cell == "gru" else None,
        use_bias=node.B is not None,
        activations=activations,
        backward_activations=backward if backward != activations else None,
        cell_clip=node.clip,
        input_forget=node.input_forget,
        dtype=str(node.W.dtype),
        source=source,
    )
    level = StackLevel(forward=directions[0], backward=directions[1] if len(directions) == 2 else None)
    return RecurrentLayer(**dict(meta), levels=(level,))


def _direction(node: OnnxRecurrentNode, d: int) -> DirectionWeights:
    cell = node.cell
    w = split_gates(node.W[d], "onnx", cell, axis=0)
    r = split_gates(node.R[d], "onnx", cell, axis=0)
    wb = rb = None
    if node.B is not None:
        half = node.B.shape[1] // 2  # [Wb, Rb]
        wb = split_gates(node.B[d][:half], "onnx", cell, axis=0)
        rb = split_gates(node.B[d][half:], "onnx", cell, axis=0)
    peepholes = split_gates(node.P[d], "onnx", "lstm_peephole", axis=0) if node.P is not None else {}
    return DirectionWeights(
        gates={
            g: GateWeights(
                w_input=w[g],
                w_recurrent=r[g],
                b_input=None if wb is None else wb[g],
                b_recurrent=None if rb is None else rb[g],
                peephole=peepholes.get(g),
            )
            for g in CELL_GATES[cell]
        }
    )


def onnx_refusals(layer: Layer) -> list[str]:
    """Why lstmconv's ONNX models cannot compute ``layer`` exactly (empty when they can).

    The models compute in float32: onnxruntime has no float64 LSTM, GRU or RNN kernel ("does not support double
    yet", onnxruntime 1.31), and rounding float64 weights to float32 would change the function. float16 weights
    are widened to float32, which is exact."""
    reasons = []
    if getattr(layer, "dtype", "float32") == "float64":
        reasons.append(
            "its weights are float64, and lstmconv's ONNX models compute in float32 (onnxruntime runs no float64 "
            "LSTM, GRU or RNN): rounding the weights would change the function. torch, keras and canonical "
            "targets keep float64"
        )
    if not isinstance(layer, RecurrentLayer):
        return reasons
    acts = [layer.activations] + ([layer.backward_activations] if layer.backward_activations is not None else [])
    roles = [(role, getattr(a, role)) for a in acts for role in ("gate", "candidate", "cell_output")]
    for role, activation in roles:
        if activation is not None and activation_to_onnx(activation) is None:
            reasons.append(
                f"the ONNX {layer.cell.upper()} operator has no '{activation}' activation ({role}); it offers "
                "Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, "
                "Softsign, Softplus"
            )
    if layer.projection_size is not None:
        reasons.append("ONNX LSTM has no projection (torch proj_size)")
    if layer.state_clip is not None:
        reasons.append(f"ONNX LSTM's clip bounds the pre-activations, not the cell state (state_clip={layer.state_clip})")
    return reasons


def onnx_whole_model_refusals(layer: Layer) -> list[str]:
    """Why a whole-model ONNX graph cannot hold ``layer`` as the source wires it (per layer it can)."""
    if isinstance(layer, EmbeddingLayer) and layer.mask_zero:
        return [
            "Embedding mask_zero=True: Keras skips the masked steps in the layers after it, which the fused ONNX "
            "ops cannot express"
        ]
    return []


def nodes_from_canonical(layer: RecurrentLayer) -> list[OnnxRecurrentNode]:
    """One ONNX node per stacked level, named ``<layer>`` (``<layer>_l<k>`` for levels after the first)."""
    reasons = onnx_refusals(layer)
    if reasons:
        raise UnsupportedFeatureError("; ".join(reasons), layer=layer.name)
    def listed(acts: CellActivations) -> tuple[Activation, ...]:
        if layer.cell == "lstm":
            return (acts.gate, acts.candidate, acts.cell_output)  # type: ignore[return-value]
        if layer.cell == "gru":
            return (acts.gate, acts.candidate)  # type: ignore[return-value]
        return (acts.candidate,)

    if layer.bidirectional:
        direction = "bidirectional"
    elif layer.go_backwards:
        direction = "reverse"
    else:
        direction = "forward"
    nodes = []
    for k, level in enumerate(layer.levels):
        sides = [level.forward] + ([level.backward] if level.backward is not None else [])
        nodes.append(
            OnnxRecurrentNode(
                op=ONNX_OPS[layer.cell],
                name=layer.name if k == 0 else f"{layer.name}_l{k}",
                hidden_size=layer.hidden_size,
                direction=direction,
                activations=tuple(a for d in range(len(sides)) for a in listed(layer.direction_activations(d))),
                clip=layer.cell_clip,
                input_forget=layer.input_forget,
                linear_before_reset=bool(layer.reset_after),
                W=_stack_directions(layer, sides, "w_input"),
                R=_stack_directions(layer, sides, "w_recurrent"),
                B=np.stack([_biases(layer, s) for s in sides]) if layer.use_bias else None,
                P=_peepholes(layer, sides),
            )
        )
    return nodes


def _stack_directions(layer: RecurrentLayer, sides: list[DirectionWeights], field: str) -> np.ndarray:
    """``[directions, gates*hidden, in]``, each direction's gates stacked straight into its slot (no copy)."""
    blocks = [{g: getattr(p, field) for g, p in side.gates.items()} for side in sides]
    first = next(iter(blocks[0].values()))
    rows = sum(block.shape[0] for block in blocks[0].values())
    out = buffers.empty((len(sides), rows, *first.shape[1:]), first.dtype)
    for slot, gates in zip(out, blocks):
        stack_gates(gates, "onnx", layer.cell, axis=0, out=slot)
    return out


def _biases(layer: RecurrentLayer, direction: DirectionWeights) -> np.ndarray:
    dtype = next(iter(direction.gates.values())).w_input.dtype
    zeros = np.zeros(layer.hidden_size, dtype=dtype)
    wb = {g: zeros if p.b_input is None else p.b_input for g, p in direction.gates.items()}
    rb = {g: zeros if p.b_recurrent is None else p.b_recurrent for g, p in direction.gates.items()}
    return np.concatenate([stack_gates(wb, "onnx", layer.cell, axis=0), stack_gates(rb, "onnx", layer.cell, axis=0)])


def _peepholes(layer: RecurrentLayer, sides: list[DirectionWeights]) -> np.ndarray | None:
    if not any(p.peephole is not None for s in sides for p in s.gates.values()):
        return None
    dtype = next(iter(sides[0].gates.values())).w_input.dtype
    zeros = np.zeros(layer.hidden_size, dtype=dtype)
    return np.stack(
        [
            stack_gates(
                {g: zeros if s.gates[g].peephole is None else s.gates[g].peephole for g in ("input", "output", "forget")},
                "onnx",
                "lstm_peephole",
                axis=0,
            )
            for s in sides
        ]
    )
