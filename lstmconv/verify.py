"""The numeric check: does the target compute the source's function?

Both sides are reference cells in their own framework's layout (e.g. the Keras reference on the arrays
as the Keras file stores them, the torch reference on the state dict about to be written), run in float64
on the same random input (batch 3, 7 time steps) and the same random initial states. The largest
absolute difference over the output sequence and every final state is compared with a tolerance
scaled to the weights' dtype.
"""

from __future__ import annotations

import numpy as np

from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn
from lstmconv.schema import DenseMeta, RecurrentMeta

__all__ = ["tolerance", "random_inputs", "max_difference", "check_layer"]

_BATCH, _STEPS = 3, 7


def tolerance(dtype: str) -> float:
    """Largest accepted difference for weights of ``dtype`` (computation itself is float64)."""
    return {"float16": 1e-2, "bfloat16": 1e-2, "float32": 1e-5}.get(dtype, 1e-10)


def random_inputs(meta: RecurrentMeta | DenseMeta, seed: int = 0) -> tuple[np.ndarray, LayerStates | None]:
    """A random batch for ``meta`` and, for recurrent layers, random initial states for every direction."""
    rng = np.random.default_rng(seed)
    if isinstance(meta, DenseMeta):
        return rng.standard_normal((_BATCH, _STEPS, meta.input_size)), None
    x = rng.standard_normal((_BATCH, _STEPS, meta.input_size))
    directions = 2 if meta.bidirectional else 1
    states: LayerStates = []
    for _ in range(meta.num_levels):
        level = []
        for _ in range(directions):
            h = rng.standard_normal((_BATCH, meta.output_size))
            c = rng.standard_normal((_BATCH, meta.hidden_size)) if meta.cell == "lstm" else None
            level.append((h, c))
        states.append(level)
    return x, states


def max_difference(a: LayerOutput, b: LayerOutput) -> float:
    """Largest absolute difference between two layer outputs (sequence and every final state)."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    ya = a.y if isinstance(a.y, tuple) else (a.y,)
    yb = b.y if isinstance(b.y, tuple) else (b.y,)
    if len(ya) != len(yb):
        return float("inf")
    pairs.extend(zip(ya, yb))
    if len(a.states) != len(b.states):
        return float("inf")
    for level_a, level_b in zip(a.states, b.states):
        if len(level_a) != len(level_b):
            return float("inf")
        for (ha, ca), (hb, cb) in zip(level_a, level_b):
            pairs.append((ha, hb))
            if (ca is None) != (cb is None):
                return float("inf")
            if ca is not None and cb is not None:
                pairs.append((ca, cb))
    worst = 0.0
    for left, right in pairs:
        if left.shape != right.shape:
            return float("inf")
        if left.size:
            both_nan = np.isnan(left) & np.isnan(right)
            same_inf = np.isinf(left) & (left == right)
            gap = np.where(both_nan | same_inf, 0.0, np.abs(left - right))
            difference = float(np.max(gap))
            if not np.isfinite(difference):
                return float("inf")
            worst = max(worst, difference)
    return worst


def check_layer(meta: RecurrentMeta | DenseMeta, source: ReferenceFn, target: ReferenceFn, seed: int = 0) -> float:
    """Max abs difference between ``source`` and ``target`` on random inputs (zero and random states).

    NaN where both sides have NaN (weights allowed to be non-finite) counts as equal.
    """
    x, states = random_inputs(meta, seed)
    worst = max_difference(source(x, states), target(x, states))
    if states is not None:  # zero initial state: the case every framework supports
        worst = max(worst, max_difference(source(x, None), target(x, None)))
    return worst
