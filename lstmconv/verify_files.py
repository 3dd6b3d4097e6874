"""``lstmconv verify A B``: do two files compute the same function, layer by layer?

Recurrent and Dense layers are paired by name, and the rest in order; each pair runs its own source
references (A's in A's layout, B's in B's) on the same random input and initial states.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lstmconv.loading import LoadedModel, load_file
from lstmconv.reference.common import LayerOutput
from lstmconv.schema import DenseLayer, RecurrentLayer
from lstmconv.verify import max_difference, random_inputs, tolerance

__all__ = ["LayerComparison", "compare_files"]


@dataclass(frozen=True)
class LayerComparison:
    """One pair of layers and the largest difference found (``None`` when they cannot be compared)."""

    left: str
    right: str
    max_abs_error: float | None
    tolerance: float
    note: str = ""

    @property
    def same(self) -> bool:
        """Within tolerance."""
        return self.max_abs_error is not None and self.max_abs_error <= self.tolerance


@dataclass(frozen=True)
class _Unit:
    """A layer, or a chain of layers lstmconv split from one stacked module (``name``, ``name_l1``, ...)."""

    name: str
    layers: tuple[RecurrentLayer | DenseLayer, ...]

    @property
    def first(self) -> RecurrentLayer | DenseLayer:
        return self.layers[0]

    def run(self, loaded: LoadedModel, x: object, states: object) -> LayerOutput:
        if len(self.layers) == 1:
            return loaded.references[self.first.name](x, states)  # type: ignore[arg-type]
        value = x
        for layer in self.layers:
            value = loaded.references[layer.name](value, None).y  # type: ignore[arg-type]
        return LayerOutput(y=value, states=[])  # type: ignore[arg-type]


def _comparable(loaded: LoadedModel) -> list[_Unit]:
    units: list[_Unit] = []
    for layer in loaded.model.layers:
        if not isinstance(layer, (RecurrentLayer, DenseLayer)) or layer.name not in loaded.references:
            continue
        match = re.fullmatch(r"(.+)_l(\d+)", layer.name)
        if match and units and units[-1].name == match.group(1) and int(match.group(2)) == len(units[-1].layers):
            units[-1] = _Unit(units[-1].name, (*units[-1].layers, layer))
        else:
            units.append(_Unit(layer.name, (layer,)))
    return units


def compare_files(left: str | Path, right: str | Path, *, seed: int = 0) -> list[LayerComparison]:
    """Pair the layers of ``left`` and ``right`` and compare their functions."""
    a, b = load_file(left), load_file(right)
    units_a, units_b = _comparable(a), _comparable(b)
    names_b = {unit.name: unit for unit in units_b}
    pairs = [(ua, names_b[ua.name]) for ua in units_a if ua.name in names_b]
    paired = {ua.name for ua, _ in pairs}
    rest_a = [ua for ua in units_a if ua.name not in paired]
    rest_b = [ub for ub in units_b if ub.name not in paired]
    pairs += list(zip(rest_a, rest_b))
    results = []
    for ua, ub in pairs:
        la, lb = ua.first, ub.first
        tol = max(tolerance(la.dtype), tolerance(lb.dtype))
        if type(la) is not type(lb) or la.input_size != lb.input_size:
            results.append(LayerComparison(ua.name, ub.name, None, tol, "different kinds or input sizes"))
            continue
        x, states = random_inputs(la, seed)
        structure_matches = len(ua.layers) == len(ub.layers) == 1 and (
            isinstance(la, DenseLayer)
            or (la.num_levels == lb.num_levels and la.bidirectional == lb.bidirectional and la.cell == lb.cell)  # type: ignore[union-attr]
        )
        out_a = ua.run(a, x, states if structure_matches else None)
        out_b = ub.run(b, x, states if structure_matches else None)
        if not structure_matches:  # compare the output sequences only
            out_a, out_b = LayerOutput(y=out_a.y, states=[]), LayerOutput(y=out_b.y, states=[])
        error = max_difference(out_a, out_b)
        results.append(LayerComparison(ua.name, ub.name, error, tol, "" if structure_matches else "outputs only"))
    for extra, side in [(u, "first") for u in rest_a[len(rest_b) :]] + [(u, "second") for u in rest_b[len(rest_a) :]]:
        # A Dense layer the other format does not carry (ONNX sources hold recurrent nodes only) is not compared;
        # a recurrent layer missing on one side is a difference.
        recurrent = isinstance(extra.first, RecurrentLayer)
        left, right = (extra.name, "-") if side == "first" else ("-", extra.name)
        note = f"only in the {side} file" + ("" if recurrent else ", not compared")
        results.append(LayerComparison(left, right, None if recurrent else 0.0, 0.0, note))
    return results
