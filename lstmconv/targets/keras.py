"""The Keras target: ``.weights.h5`` (Keras 3), legacy ``.h5`` (Keras 2, loaded by name; a whole tf.keras model
when the source's wiring is known) or a whole ``.keras`` model (the wiring is needed).

Each canonical layer becomes one or more Keras layers (:func:`lstmconv.adapters.keras_plan.plan_keras_layer`),
hashed as it is planned and written (:class:`~lstmconv.targets.keras_writers.KerasWeightsWriter`); only a digest
of every array is kept, so the finished file is read back and compared one layer at a time without holding the
model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstmconv.adapters.keras_plan import (
    KerasLayerPlan,
    keras_layer_refusals,
    keras_usage_notes,
    plan_keras_layer,
)
from lstmconv.errors import RefusedConversionError, UnsupportedFeatureError, VerificationError
from lstmconv.protocols import LayerSource, Options, Planned, Refusal, TargetBase
from lstmconv.schema import Layer
from lstmconv.targets.keras_writers import KerasWeightsWriter, write_keras_archive

__all__ = ["TARGET", "KERAS3", "KERAS2"]

# The rule sets as a user knows them: one Keras target writes two kinds of file with different rules.
KERAS3 = "keras (.keras, .weights.h5)"
KERAS2 = "keras (.h5)"
_MAJOR = {KERAS3: 3, KERAS2: 2}

#: An array's shape, dtype and a hash of its bytes
ArrayDigest = tuple[tuple[int, ...], str, bytes]


class KerasTarget(TargetBase):
    def rule_sets(self) -> dict[str, str]:
        return {
            KERAS3: "a Keras 3 file (.keras or .weights.h5)",
            KERAS2: "a legacy Keras .h5 (tf.keras, Keras 2 semantics)",
        }

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        return keras_layer_refusals(layer, _MAJOR[rule_set])

    def rule_set_for(self, destination: Path) -> str:
        return KERAS3 if destination.suffix == ".keras" or destination.name.endswith(".weights.h5") else KERAS2


    def writer(self, destination: Path, layers: LayerSource, options: Options) -> KerasWriter:
        return KerasWriter(destination, layers, _MAJOR[self.rule_set_for(destination)])


TARGET = KerasTarget()


class KerasWriter:
    what = "the Keras arrays"
    companions: tuple[Path, ...] = ()

    def __init__(self, destination: Path, layers: LayerSource, major: int) -> None:
        self.destination, self.major, self.wiring = destination, major, layers.wiring
        self.archive = destination.suffix == ".keras"
        self.label = f"keras {major}"
        self.refusing = f"Keras {major} cannot compute {{count}} layer(s) exactly"
        self.all_or_nothing = self.archive
        self.refused: list[Exception] = []
        if self.archive and self.wiring is None:
            raise UnsupportedFeatureError(
                "a complete .keras model needs to know how the layers connect, and this source does not say",
                file=layers.source,
                hint="write .weights.h5 and load it into a Keras model you build with the same layers",
            )
        if self.archive and self.wiring is not None and self.wiring.unsupported:
            raise RefusedConversionError(
                "the whole model cannot be rebuilt in Keras 3; nothing was written",
                refusals=[UnsupportedFeatureError(r, hint="write .weights.h5 instead") for r in self.wiring.unsupported],
                file=layers.source,
            )
        self.taken: set[str] = set()  # Keras names given so far: two source names may make one Keras-safe name
        self.written: list[KerasLayerPlan] = []  # the plans written, without their arrays
        self.digests: dict[str, list[ArrayDigest]] = {}  # plan name -> (shape, dtype, digest) per array

    def refuse(self, layer: Layer) -> Refusal | None:
        reasons = keras_layer_refusals(layer, self.major)
        return Refusal(reasons) if reasons else None

    def plan(self, layer: Layer) -> Iterator[Planned]:
        plans, function = plan_keras_layer(layer, self.major)
        if not plans:
            return
        plans = [_unique(plan, self.taken) for plan in plans]
        for plan in plans:
            if plan.arrays:
                self.digests[plan.name] = [_digest(array) for array in plan.arrays]
        tensors = {f"{plan.name}/{k}": array for plan in plans for k, array in enumerate(plan.arrays)}
        notes = (*layer.source.inferred, *layer.source.notes, *keras_usage_notes(layer))
        yield Planned(layer, tensors, function, _became(plans), notes, payload=plans)

    def open(self, path: Path, *companions: Path) -> _KerasStream:
        self.path = path
        # a .keras archive holds a Keras 3 weights file, written beside the temporary file first (same cleanup)
        weights = path.with_name(path.name + ".weights.h5") if self.archive else path
        return _KerasStream(KerasWeightsWriter(weights, self.major == 3, self.wiring), weights if self.archive else None)

    def write(self, stream: _KerasStream, planned: Planned) -> None:
        for plan in planned.payload:  # type: ignore[attr-defined]
            stream.weights.add(plan)
            self.written.append(dataclasses.replace(plan, arrays=[]))

    def finish(self, stream: _KerasStream) -> None:
        stream.weights.close()
        if stream.inner is not None:
            assert self.wiring is not None
            write_keras_archive(self.path, self.written, self.wiring, "3.0.0", stream.inner)

    def check(self, path: Path) -> None:
        """Every planned layer's arrays read back identical (by digest), one layer's arrays at a time."""
        from lstmconv.sources.keras_files import open_keras

        with open_keras(path) as (_, entries, _wiring):
            found = {entry.name: entry for entry in entries if entry.array_names}
            for name, meant in self.digests.items():
                entry = found.get(name)
                back = [_digest(array) for array in entry.load_arrays()] if entry is not None else []
                if back != meant:
                    raise VerificationError("arrays read back differ from what was written", file=self.destination, layer=name)

    def report(self) -> dict[str, object]:
        return {"written_tensors": sum(len(d) for d in self.digests.values())}


class _KerasStream:
    """The weights file being written, and for a ``.keras`` archive the temporary weights file inside it."""

    def __init__(self, weights: KerasWeightsWriter, inner: Path | None) -> None:
        self.weights, self.inner = weights, inner

    def abort(self) -> None:
        self.weights.abort()
        if self.inner is not None:
            self.inner.unlink(missing_ok=True)


def _unique(plan: KerasLayerPlan, taken: set[str]) -> KerasLayerPlan:
    """``plan`` under a Keras name no earlier plan has (``enc/rnn`` and ``enc_rnn`` both become ``enc_rnn``)."""
    name, k = plan.name, 1
    while name in taken:
        k += 1
        name = f"{plan.name}_{k}"
    taken.add(name)
    if name == plan.name:
        return plan
    return dataclasses.replace(plan, name=name, config={**plan.config, "name": name})


def _became(plans: list[KerasLayerPlan]) -> str:
    """What a canonical layer became, e.g. "Bidirectional(LSTM(64)) 'lstm'"."""

    def units(plan: KerasLayerPlan) -> object:
        return plan.config.get("units", plan.config.get("layer", {}).get("config", {}).get("units", ""))

    return ", ".join(
        f"{p.class_name}({p.inner_class + '(' if p.inner_class else ''}{units(p)}{')' if p.inner_class else ''}) '{p.name}'"
        for p in plans
    )


def _digest(array: np.ndarray) -> ArrayDigest:
    """Shape, dtype and a hash of the bytes: enough to compare a read-back array without keeping the original.
    SHA-256 releases the GIL on large buffers, so hashing in the planning thread overlaps the writing."""
    contiguous = np.ascontiguousarray(array)
    return tuple(contiguous.shape), contiguous.dtype.str, hashlib.sha256(memoryview(contiguous).cast("B")).digest()
