"""``lstmconv verify A B``: do two files compute the same function, layer by layer?

Recurrent, Dense and Embedding layers are paired by name, and the rest in order; each recurrent or Dense pair
runs its own source references (A's in A's layout, B's in B's) on the same random input and initial states;
an Embedding's function is its table, compared entry by entry. Files are read one
layer at a time where their format allows (Keras, ONNX, torch ``.safetensors``), so memory stays at a layer.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmconv.pipeline.numeric_check import max_difference, random_inputs, tolerance
from lstmconv.pipeline.read import describe_file, open_layers
from lstmconv.protocols import Options
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn
from lstmconv.schema import DenseMeta, EmbeddingLayer, EmbeddingMeta, Layer, RecurrentMeta

__all__ = ["LayerComparison", "Verification", "compare_files", "verify"]


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

    @property
    def compared(self) -> bool:
        """Both sides were run and compared (else the pair is no evidence either way)."""
        return self.max_abs_error is not None


@dataclass(frozen=True)
class Verification:
    """The outcome of ``lstmconv verify``: every pair of layers, and whether the files are the same function.

    ``same`` holds only when every layer of both files was compared and matched; with ``common_only``, layers
    found in one file only are listed but do not count."""

    first: str
    second: str
    layers: tuple[LayerComparison, ...]
    common_only: bool = False

    @property
    def same(self) -> bool:
        counted = [r for r in self.layers if not (self.common_only and "-" in (r.left, r.right))]
        return bool(counted) and all(r.same for r in counted)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data (``verify --json``)."""
        return {
            "first": self.first,
            "second": self.second,
            "same": self.same,
            "common_only": self.common_only,
            "layers": [
                {
                    "first": r.left if r.left != "-" else None,
                    "second": r.right if r.right != "-" else None,
                    "compared": r.compared,
                    "max_abs_error": r.max_abs_error,
                    "tolerance": r.tolerance,
                    "same": r.same,
                    "note": r.note or None,
                }
                for r in self.layers
            ],
        }


@dataclass(frozen=True)
class _Unit:
    """A layer, or a chain of layers lstmconv split from one stacked module (``name``, ``name_l1``, ...)."""

    name: str
    layers: tuple[RecurrentMeta | DenseMeta | EmbeddingMeta, ...]

    @property
    def first(self) -> RecurrentMeta | DenseMeta | EmbeddingMeta:
        return self.layers[0]


def _comparable(described: list[Layer]) -> list[_Unit]:
    units: list[_Unit] = []
    for layer in described:
        if not isinstance(layer, (RecurrentMeta, DenseMeta, EmbeddingMeta)):
            continue
        match = re.fullmatch(r"(.+)_l(\d+)", layer.name)
        if match and units and units[-1].name == match.group(1) and int(match.group(2)) == len(units[-1].layers):
            units[-1] = _Unit(units[-1].name, (*units[-1].layers, layer))
        else:
            units.append(_Unit(layer.name, (layer,)))
    return units


class _File:
    """One side of the comparison, read one layer at a time (memory stays at one layer whatever the file size)."""

    def __init__(self, path: Path, config: str | Path | None = None, source_format: str | None = None) -> None:
        self.path = path
        self.options = Options(config=Path(config) if config is not None else None, source_format=source_format)

    def describe(self) -> list[Layer]:
        return describe_file(self.path, self.options)[0]

    @contextlib.contextmanager
    def layers(self) -> Iterator[Iterator[tuple[Layer, ReferenceFn | None]]]:
        """The layers with their source references."""
        with open_layers(self.path, self.options) as opened:
            yield opened.layers


def _outputs(file: _File, units: list[_Unit], inputs: dict[str, tuple[np.ndarray, LayerStates | None]]) -> dict[str, LayerOutput]:
    """Each unit's output on its input, reading the file one layer at a time (a chain feeds each layer's output
    sequence to the next)."""
    unit_of = {layer.name: unit for unit in units if unit.name in inputs for layer in unit.layers}
    running: dict[str, np.ndarray] = {}
    outputs: dict[str, LayerOutput] = {}
    with file.layers() as layers:
        for layer, reference in layers:
            unit = unit_of.get(layer.name)
            if isinstance(layer, EmbeddingLayer) and unit is not None:  # the table is the function
                outputs[unit.name] = LayerOutput(y=np.asarray(layer.weight), states=[])
                continue
            if unit is None or reference is None:
                continue
            x, states = inputs[unit.name]
            if len(unit.layers) == 1:
                outputs[unit.name] = reference(x, states)
                continue
            value = reference(running.get(unit.name, x), None).y
            running[unit.name] = value  # type: ignore[assignment]
            if layer.name == unit.layers[-1].name:
                outputs[unit.name] = LayerOutput(y=running.pop(unit.name), states=[])
            del layer, reference
    return outputs


def verify(
    first: str | Path,
    second: str | Path,
    *,
    config: str | Path | None = None,
    source_format: str | None = None,
    common_only: bool = False,
    seed: int = 0,
) -> Verification:
    """Do ``first`` and ``second`` compute the same function, layer by layer (``lstmconv verify``)?
    ``config`` and ``source_format`` apply to ``first``, as ``convert``'s do to its source."""
    layers = compare_files(first, second, seed=seed, config=config, source_format=source_format)
    return Verification(str(first), str(second), tuple(layers), common_only)


def compare_files(
    left: str | Path,
    right: str | Path,
    *,
    seed: int = 0,
    config: str | Path | None = None,
    source_format: str | None = None,
) -> list[LayerComparison]:
    """Pair the layers of ``left`` and ``right`` and compare their functions.

    Each file is read twice, one layer at a time where its format allows (else it is loaded once): once for
    the layers' descriptions (to pair them and choose each pair's input), once to run each layer's source
    reference on that input. Only the outputs (a few steps of a small batch) are kept between the two files.
    """
    file_a, file_b = _File(Path(left), config, source_format), _File(Path(right))
    units_a, units_b = _comparable(file_a.describe()), _comparable(file_b.describe())
    names_b = {unit.name: unit for unit in units_b}
    pairs = [(ua, names_b[ua.name]) for ua in units_a if ua.name in names_b]
    paired = {ua.name for ua, _ in pairs}
    rest_a = [ua for ua in units_a if ua.name not in paired]
    rest_b = [ub for ub in units_b if ub.name not in paired]
    pairs += list(zip(rest_a, rest_b))
    inputs_a: dict[str, tuple[np.ndarray, LayerStates | None]] = {}
    inputs_b: dict[str, tuple[np.ndarray, LayerStates | None]] = {}
    structure_matches: dict[str, bool] = {}  # per unit of the first file, for the pairs that can be compared
    for ua, ub in pairs:
        la, lb = ua.first, ub.first
        if isinstance(la, EmbeddingMeta) and isinstance(lb, EmbeddingMeta):
            if (la.vocabulary_size, la.embedding_size) == (lb.vocabulary_size, lb.embedding_size):
                inputs_a[ua.name] = inputs_b[ub.name] = (np.empty(0), None)
                structure_matches[ua.name] = True
            continue
        if type(la) is not type(lb) or la.input_size != lb.input_size:  # type: ignore[union-attr]
            continue
        x, states = random_inputs(la, seed)
        matches = len(ua.layers) == len(ub.layers) == 1 and (
            isinstance(la, DenseMeta)
            or (  # both recurrent
                la.num_levels == lb.num_levels  # type: ignore[union-attr]
                and la.bidirectional == lb.bidirectional  # type: ignore[union-attr]
                and la.cell == lb.cell  # type: ignore[union-attr]
            )
        )
        inputs_a[ua.name] = inputs_b[ub.name] = (x, states if matches else None)
        structure_matches[ua.name] = matches
    out_a, out_b = _outputs(file_a, units_a, inputs_a), _outputs(file_b, units_b, inputs_b)
    results = []
    for ua, ub in pairs:
        tol = max(tolerance(ua.first.dtype), tolerance(ub.first.dtype))
        if ua.name not in structure_matches:
            results.append(LayerComparison(ua.name, ub.name, None, tol, "different kinds or input sizes"))
            continue
        a, b = out_a.get(ua.name), out_b.get(ub.name)
        if a is None or b is None:
            results.append(LayerComparison(ua.name, ub.name, None, tol, "no source function to run"))
            continue
        if not structure_matches[ua.name]:  # compare the output sequences only
            a, b = LayerOutput(y=a.y, states=[]), LayerOutput(y=b.y, states=[])
        error = max_difference(a, b)
        results.append(LayerComparison(ua.name, ub.name, error, tol, "" if structure_matches[ua.name] else "outputs only"))
    for extra, side in [(u, "first") for u in rest_a[len(rest_b) :]] + [(u, "second") for u in rest_b[len(rest_a) :]]:
        # A layer found in one file only was not compared: no evidence that the files agree there.
        left_name, right_name = (extra.name, "-") if side == "first" else ("-", extra.name)
        results.append(LayerComparison(left_name, right_name, None, 0.0, f"only in the {side} file, not compared"))
    return results
