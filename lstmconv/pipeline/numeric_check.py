"""The numeric check: does the target compute the source's function?

Both sides are reference cells in their own framework's layout (e.g. the Keras reference on the arrays
as the Keras file stores them, the torch reference on the state dict about to be written), run on the same
random input from the same initial states: half the batch starts from random states, half from zeros.
Three time steps, each with its own random input, give a first, a middle and a last step: enough to tell
every time-order mistake (input or output reversed, a backward direction misaligned, a step handled
differently at either end) from the right answer, and every other mapping mistake shows at the first step;
more steps would cost more (each reads every recurrent matrix again), not find more. The arithmetic runs in float64 (``../shared/DESIGN.md``) except for layers whose weights take more
than 32 MiB as float64: those run at their own precision, float32 for float32 weights, because widened
copies of a large layer would cost more memory and time than the rest of the conversion (the streaming
paths hold about three layers). The largest difference over the output sequence and every final state is
compared with a tolerance for the weights' dtype.
"""

from __future__ import annotations

import numpy as np

from lstmconv.gates import gate_count
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn
from lstmconv.schema import DenseMeta, RecurrentMeta

__all__ = ["tolerance", "check_dtype", "random_inputs", "max_difference", "check_layer", "source_output", "difference_from"]

_BATCH, _STEPS = 4, 3
_WIDEN_BYTES = 32 << 20  # float64 weights up to this size: the check runs in float64


def tolerance(dtype: str) -> float:
    """Largest accepted difference for weights of ``dtype`` (loose enough for float32 arithmetic on large layers)."""
    return {"float16": 1e-3, "bfloat16": 1e-3, "float32": 1e-5}.get(dtype, 1e-10)


def check_dtype(meta: RecurrentMeta | DenseMeta) -> type:
    """The precision the check runs in for ``meta`` (see the module docstring); the references follow the input's."""
    if meta.dtype == "float64" or 8 * _weight_count(meta) <= _WIDEN_BYTES:
        return np.float64
    return np.float32


def _weight_count(meta: RecurrentMeta | DenseMeta) -> int:
    if isinstance(meta, DenseMeta):
        return meta.input_size * meta.units
    directions = 2 if meta.bidirectional else 1
    per_gate = gate_count(meta.cell) * meta.hidden_size
    count = 0
    for level in range(meta.num_levels):
        width = meta.input_size if level == 0 else directions * meta.output_size
        count += directions * per_gate * (width + meta.output_size)
    return count


def random_inputs(meta: RecurrentMeta | DenseMeta, seed: int = 0) -> tuple[np.ndarray, LayerStates | None]:
    """A random batch for ``meta`` and, for recurrent layers, initial states: random for the first half of
    the batch, zero for the second."""
    rng = np.random.default_rng(seed)
    dtype = check_dtype(meta)
    x = rng.standard_normal((_BATCH, _STEPS, meta.input_size)).astype(dtype)
    if isinstance(meta, DenseMeta):
        return x, None
    directions = 2 if meta.bidirectional else 1
    half = _BATCH // 2
    states: LayerStates = []
    for _ in range(meta.num_levels):
        level = []
        for _ in range(directions):
            h = rng.standard_normal((_BATCH, meta.output_size)).astype(dtype)
            h[half:] = 0
            c = None
            if meta.cell == "lstm":
                c = rng.standard_normal((_BATCH, meta.hidden_size)).astype(dtype)
                c[half:] = 0
            level.append((h, c))
        states.append(level)
    return x, states


def max_difference(a: LayerOutput, b: LayerOutput, *, relative_above_one: bool = False) -> float:
    """Largest difference between two layer outputs (sequence and every final state).

    Absolute by default; with ``relative_above_one`` each difference is divided by ``1 + |b|``, i.e. absolute
    for values up to about 1 (outputs, gates) and relative for larger ones (LSTM cell states), which is how
    float32 rounding grows.
    """
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
            if relative_above_one:
                gap = gap / (1.0 + np.abs(right))
            difference = float(np.max(gap))
            if not np.isfinite(difference):
                return float("inf")
            worst = max(worst, difference)
    return worst


def check_layer(meta: RecurrentMeta | DenseMeta, source: ReferenceFn, target: ReferenceFn, seed: int = 0) -> float:
    """Max difference between ``source`` and ``target`` on random inputs (zero and random states), relative
    above 1 (see :func:`max_difference`).

    NaN where both sides have NaN (weights allowed to be non-finite) counts as equal.
    """
    return difference_from(meta, source_output(meta, source, seed), target, seed)


def source_output(meta: RecurrentMeta | DenseMeta, source: ReferenceFn, seed: int = 0) -> LayerOutput:
    """The first half of :func:`check_layer`: the source side's output on the check's inputs.

    Split out so that a streaming conversion can run it before the source arrays are dropped and the target
    side later, holding only the converted arrays.
    """
    x, states = random_inputs(meta, seed)
    return source(x, states)


def difference_from(meta: RecurrentMeta | DenseMeta, expected: LayerOutput, target: ReferenceFn, seed: int = 0) -> float:
    """The second half of :func:`check_layer`: how far ``target`` is from :func:`source_output`'s result."""
    x, states = random_inputs(meta, seed)
    return max_difference(expected, target(x, states), relative_above_one=True)
