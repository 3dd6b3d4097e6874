"""Keras layout <-> canonical form.

Keras stores matrices ``(in, out)`` with gates stacked along the last axis (LSTM i,f,c,o; GRU z,r,h) and
one bias, except GRU ``reset_after=True`` (``(2, 3H)``: input row, recurrent row) and the CuDNN classes
(``(2*G*H,)``: input biases then recurrent biases). See :mod:`lstmconv.layouts.keras` for the three storage
layouts and ``../shared/reference/layouts.md`` sections 1-3 for sources.

Activation names are resolved by Keras major version: ``hard_sigmoid`` is ``clip(0.2x + 0.5)`` in
Keras 1/2 and ``clip(x/6 + 0.5)`` in Keras 3.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstmconv.activations import Activation
from lstmconv.errors import ConfigError, MissingTensorError, ShapeMismatchError, UnsupportedFeatureError
from lstmconv.gates import CELL_GATES, GATE_ORDER, Gate, gate_count, split_gates, stack_gates
from lstmconv.layouts.keras import KERAS_ACTIVATIONS, KerasCellArrays, KerasRecurrentArrays, keras_activation_numbers
from lstmconv.schema import DirectionWeights, GateWeights, RecurrentLayer, RecurrentMeta, StackLevel

__all__ = ["keras_activation", "recurrent_to_canonical", "recurrent_from_canonical", "dense_weight_to_canonical"]



def keras_activation(spec: Any, keras_major: int, *, layer: str | None = None) -> Activation:
    """Translate a Keras activation (name or Keras 3 serialized dict) into numbers.

    ``keras_major`` is the Keras major version that wrote the file: Keras 1 and 2 define
    ``hard_sigmoid(x) = clip(0.2x + 0.5, 0, 1)``, Keras 3 ``relu6(x + 3) / 6``.
    """
    name = spec
    if isinstance(spec, dict):  # Keras 3: {"module": "keras.activations", "class_name": "function", "config": "tanh"}
        name = spec.get("config") if isinstance(spec.get("config"), str) else spec.get("class_name")
    if name is None:
        return Activation(name="linear")
    if not isinstance(name, str):
        raise UnsupportedFeatureError(f"activation {spec!r} is not a Keras activation name", layer=layer)
    numbers = keras_activation_numbers(name, keras_major)
    if numbers is None:
        raise UnsupportedFeatureError(
            f"activation {name!r} is not supported", layer=layer, hint="supported: " + ", ".join(sorted(KERAS_ACTIVATIONS))
        )
    canonical, alpha, beta = numbers
    return Activation(name=canonical, alpha=alpha, beta=beta)  # type: ignore[arg-type]


def recurrent_to_canonical(meta: RecurrentMeta, weights: KerasRecurrentArrays) -> RecurrentLayer:
    """Build the canonical layer from a Keras layer's description and its arrays (views, no copies)."""
    forward = _direction(meta, weights.forward)
    backward = _direction(meta, weights.backward) if weights.backward is not None else None
    return RecurrentLayer(**dict(meta), levels=(StackLevel(forward=forward, backward=backward),))


def recurrent_from_canonical(layer: RecurrentLayer) -> KerasRecurrentArrays:
    """Keras 2/3 arrays (kernel, recurrent_kernel[, bias]) of a single-level canonical layer.

    Keras has one bias where the canonical form may hold two: they are summed (exact for LSTM, SimpleRNN
    and the GRU gates); a GRU with reset_after=True keeps both as its (2, 3H) bias rows.
    """
    if layer.num_levels != 1 or layer.projection_size is not None:
        raise UnsupportedFeatureError("Keras layers have one level and no projection", layer=layer.name)
    forward, backward = layer.levels[0].forward, layer.levels[0].backward
    cells = [_keras_cell(layer, forward)] + ([_keras_cell(layer, backward)] if backward is not None else [])
    return KerasRecurrentArrays(forward=cells[0], backward=cells[1] if len(cells) > 1 else None)


def _keras_cell(layer: RecurrentLayer, direction: DirectionWeights) -> KerasCellArrays:
    gates = direction.gates
    arrays = {
        "kernel": stack_gates({g: p.w_input.T for g, p in gates.items()}, "keras", layer.cell, axis=1),
        "recurrent_kernel": stack_gates({g: p.w_recurrent.T for g, p in gates.items()}, "keras", layer.cell, axis=1),
    }
    if layer.use_bias:
        zeros = np.zeros(layer.hidden_size, dtype=next(iter(gates.values())).w_input.dtype)
        b_input = {g: zeros if p.b_input is None else p.b_input for g, p in gates.items()}
        b_recurrent = {g: p.b_recurrent for g, p in gates.items()}
        if layer.cell == "gru" and layer.reset_after:
            rows = [b_input, {g: zeros if b is None else b for g, b in b_recurrent.items()}]
            arrays["bias"] = np.stack([stack_gates(row, "keras", "gru", axis=0) for row in rows])
        else:
            summed = {g: b_input[g] if b_recurrent[g] is None else b_input[g] + b_recurrent[g] for g in gates}
            arrays["bias"] = stack_gates(summed, "keras", layer.cell, axis=0)
    return KerasCellArrays(layout="keras", arrays=arrays)


def dense_weight_to_canonical(kernel: np.ndarray) -> np.ndarray:
    """Keras Dense kernel ``(in, units)`` -> canonical ``(units, in)`` (a transposed view)."""
    return kernel.T


def _direction(meta: RecurrentMeta, cell: KerasCellArrays) -> DirectionWeights:
    if cell.layout == "keras":
        return _from_fused(meta, cell)
    if cell.layout == "keras1-per-gate":
        return _from_keras1(meta, cell)
    return _from_cudnn(meta, cell)


def _array(meta: RecurrentMeta, cell: KerasCellArrays, name: str) -> np.ndarray:
    try:
        return cell.arrays[name]
    except KeyError:
        raise MissingTensorError(
            "missing weight", layer=meta.name, tensor=name, hint=f"found: {', '.join(sorted(cell.arrays))}"
        ) from None


def _check(meta: RecurrentMeta, cell: KerasCellArrays, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = _array(meta, cell, name)
    if array.shape != shape:
        raise ShapeMismatchError(
            "shape mismatch",
            layer=meta.name,
            tensor=cell.names.get(name, name),
            expected=shape,
            actual=tuple(array.shape),
            hint=_shape_hint(meta),
        )
    return array


def _shape_hint(meta: RecurrentMeta) -> str:
    g = gate_count(meta.cell)
    return (
        f"a Keras {meta.cell.upper()} with {meta.hidden_size} units and input {meta.input_size} has kernel "
        f"(input, {g}*units), recurrent_kernel (units, {g}*units)"
    )


def _from_fused(meta: RecurrentMeta, cell: KerasCellArrays) -> DirectionWeights:
    hidden, cols = meta.hidden_size, gate_count(meta.cell) * meta.hidden_size
    kernel = _check(meta, cell, "kernel", (meta.input_size, cols))
    recurrent = _check(meta, cell, "recurrent_kernel", (hidden, cols))
    w_input = split_gates(kernel, "keras", meta.cell, axis=1)
    w_recurrent = split_gates(recurrent, "keras", meta.cell, axis=1)
    b_input: dict[Gate, np.ndarray | None] = dict.fromkeys(w_input)
    b_recurrent: dict[Gate, np.ndarray | None] = dict.fromkeys(w_input)
    if meta.use_bias:
        if meta.cell == "gru" and meta.reset_after:
            bias = _check(meta, cell, "bias", (2, cols))
            b_input.update(split_gates(bias[0], "keras", "gru", axis=0))
            b_recurrent.update(split_gates(bias[1], "keras", "gru", axis=0))
        else:
            b_input.update(split_gates(_check(meta, cell, "bias", (cols,)), "keras", meta.cell, axis=0))
    elif "bias" in cell.arrays:
        raise ConfigError("layer has a bias tensor but its config says use_bias=False", layer=meta.name)
    return DirectionWeights(
        gates={
            g: GateWeights(
                w_input=w_input[g].T, w_recurrent=w_recurrent[g].T, b_input=b_input[g], b_recurrent=b_recurrent[g]
            )
            for g in CELL_GATES[meta.cell]
        }
    )


def _from_keras1(meta: RecurrentMeta, cell: KerasCellArrays) -> DirectionWeights:
    letters = dict(zip(GATE_ORDER[("keras1", meta.cell)], "icfo" if meta.cell == "lstm" else "zrh"))
    hidden = meta.hidden_size
    gates: dict[Gate, GateWeights] = {}
    for gate, letter in letters.items():
        bias = _check(meta, cell, f"b_{letter}", (hidden,)) if meta.use_bias else None
        gates[gate] = GateWeights(
            w_input=_check(meta, cell, f"W_{letter}", (meta.input_size, hidden)).T,
            w_recurrent=_check(meta, cell, f"U_{letter}", (hidden, hidden)).T,
            b_input=bias,
        )
    return DirectionWeights(gates=gates)


def _from_cudnn(meta: RecurrentMeta, cell: KerasCellArrays) -> DirectionWeights:
    # cuDNN reads each flattened gate block as a row-major (H, in) matrix: that is already (out, in).
    hidden, cols = meta.hidden_size, gate_count(meta.cell) * meta.hidden_size
    kernel = _check(meta, cell, "kernel", (meta.input_size, cols))
    recurrent = _check(meta, cell, "recurrent_kernel", (hidden, cols))
    bias = _check(meta, cell, "bias", (2 * cols,))
    w_input = split_gates(kernel, "keras", meta.cell, axis=1)
    w_recurrent = split_gates(recurrent, "keras", meta.cell, axis=1)
    b_input = split_gates(bias[:cols], "keras", meta.cell, axis=0)
    b_recurrent = split_gates(bias[cols:], "keras", meta.cell, axis=0)
    return DirectionWeights(
        gates={
            g: GateWeights(
                w_input=w_input[g].reshape(hidden, meta.input_size),
                w_recurrent=w_recurrent[g].reshape(hidden, hidden),
                b_input=b_input[g],
                b_recurrent=b_recurrent[g],
            )
            for g in CELL_GATES[meta.cell]
        }
    )
