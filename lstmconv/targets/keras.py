"""Write Keras weights layer by layer: ``.weights.h5`` (Keras 3), legacy ``.h5`` (Keras 2, by name) or a whole
``.keras`` model when the source's wiring is known.

Each canonical layer is planned (:func:`lstmconv.adapters.keras_plan.plan_keras_layer`), checked against its source
and hashed in a background thread (:mod:`lstmconv._fast.run_ahead`) while the layer before it is written
(:class:`~lstmconv.targets.keras_writers.KerasWeightsWriter`) and dropped; only a digest of every array is
kept, so the finished file is read back and compared one layer at a time without holding the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstmconv.pipeline.check import check_source_side
from lstmconv.errors import RefusedConversionError, UnsupportedFeatureError, VerificationError
from lstmconv.targets.keras_writers import KerasWeightsWriter, write_keras_archive
from lstmconv.pipeline.load import LayerSource, refuse_without_recurrent
from lstmconv.pipeline.refusals import KERAS2, KERAS3, ways_out
from lstmconv.pipeline.report import ConversionReport, LayerReport, describe
from lstmconv._fast.run_ahead import one_blas_thread_for, run_ahead
from lstmconv.schema import Layer
from lstmconv.adapters.keras_plan import KerasLayerPlan, keras_usage_notes, plan_keras_layer
from lstmconv.io.atomic import check_suffix, write_atomically

__all__ = ["write_keras"]

#: An array's shape, dtype and a hash of its bytes
ArrayDigest = tuple[tuple[int, ...], str, bytes]


def write_keras(
    layers: LayerSource,
    destination: str | Path,
    *,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    known_finite: bool = False,
) -> ConversionReport:
    """Write ``layers`` as Keras weights; see the module docstring. ``known_finite``: non-finite weights were
    refused already."""
    source, skipped, wiring = layers.source, layers.skipped, layers.wiring  # skipped grows while the layers are read
    destination = Path(destination)
    check_suffix(destination, "keras", force)
    archive = destination.suffix == ".keras"
    keras3 = archive or destination.name.endswith(".weights.h5")
    major = 3 if keras3 else 2
    if archive and wiring is None:
        raise UnsupportedFeatureError(
            "a complete .keras model needs to know how the layers connect, and this source does not say",
            file=source,
            hint="write .weights.h5 and load it into a Keras model you build with the same layers",
        )
    if archive and wiring is not None and wiring.unsupported:
        raise RefusedConversionError(
            "the whole model cannot be rebuilt in Keras 3; nothing was written",
            refusals=[UnsupportedFeatureError(r, hint="write .weights.h5 instead") for r in wiring.unsupported],
            file=source,
        )
    reports: list[LayerReport] = []
    refused: list[tuple[str, str, str]] = []  # layer, reason, ways out
    written: list[KerasLayerPlan] = []  # the plans written, without their arrays
    seen: list[Layer] = []  # descriptions of every layer read
    digests: dict[str, list[ArrayDigest]] = {}  # plan name -> (shape, dtype, digest) per array

    taken: set[str] = set()  # Keras names given so far: two source names may make one Keras-safe name

    def planned() -> Iterator[tuple[list[KerasLayerPlan], list[list[ArrayDigest]], LayerReport]]:
        """Each layer read, planned, checked and hashed (in the run-ahead thread); refusals are collected."""
        for layer, reference in layers.layers:
            seen.append(layer.meta())
            plans, function, refusal = plan_keras_layer(layer, major)
            if refusal is not None:
                refused.append((layer.name, refusal, ways_out(layer, KERAS3 if keras3 else KERAS2)))
                continue
            if refused and (archive or not skip_unsupported):
                continue  # going on only to name every refused layer
            if not plans:
                continue
            plans = [_unique(plan, taken) for plan in plans]
            checking = check_source_side(source, layer, reference, verify, known_finite=known_finite)
            error, tol, check_notes = checking.finish(function, "the Keras arrays") if function else (None, None, ())
            hashed = [[_digest(array) for array in plan.arrays] for plan in plans]
            notes = (*layer.source.inferred, *layer.source.notes, *keras_usage_notes(layer), *check_notes)
            yield plans, hashed, LayerReport(layer.name, describe(layer), _became(plans), error, tol, notes)
            del plans, layer, reference, function

    def write_weights(path: Path) -> None:
        writer = KerasWeightsWriter(path, keras3, wiring)
        try:
            # closing(): the background thread is stopped and joined however this block ends
            with contextlib.closing(run_ahead(planned(), one_blas_thread=one_blas_thread_for(source))) as items:
                for plans, hashed, report in items:
                    for plan, plan_digests in zip(plans, hashed, strict=True):
                        writer.add(plan)
                        if plan.arrays:
                            digests[plan.name] = plan_digests
                        written.append(dataclasses.replace(plan, arrays=[]))
                    reports.append(report)
                    del plans
            # the planning thread is done: what it collected (seen, refused, skipped) is complete
            refuse_without_recurrent(seen, skipped, source)  # as load_file does, whatever the target refuses
            if refused and (archive or not skip_unsupported):
                refusals = [UnsupportedFeatureError(reason, layer=name, hint=hint) for name, reason, hint in refused]
                raise RefusedConversionError(
                    f"Keras {major} cannot compute {len(refusals)} layer(s) exactly; nothing was written",
                    refusals=refusals,
                    file=source,
                )
            if not written:
                raise RefusedConversionError("no layer could be converted; nothing was written", refusals=[], file=source)
            writer.close()
        finally:
            writer.abort()

    def write(path: Path) -> None:
        if not archive:
            write_weights(path)
            return
        weights = path.with_name(path.name + ".weights.h5")  # beside the temporary file: same folder, same cleanup
        try:
            write_weights(weights)
            assert wiring is not None
            write_keras_archive(path, written, wiring, "3.0.0", weights)
        finally:
            weights.unlink(missing_ok=True)

    def check_written(path: Path) -> None:
        """Every planned layer's arrays read back identical (by digest), one layer's arrays at a time."""
        from lstmconv.sources.keras_files import open_keras

        with open_keras(path) as (_, entries, _wiring):
            found = {entry.name: entry for entry in entries if entry.array_names}
            for name, meant in digests.items():
                entry = found.get(name)
                back = [_digest(array) for array in entry.load_arrays()] if entry is not None else []
                if back != meant:
                    raise VerificationError("arrays read back differ from what was written", file=destination, layer=name)

    write_atomically(destination, write, check_written, replace=force)
    return ConversionReport(
        source=str(source),
        destination=str(destination),
        target=f"keras {major}",
        layers=tuple(reports),
        skipped=(*skipped, *(f"{n}: {r}" for n, r, _ in refused)),
        verified=verify,
        written_tensors=sum(len(d) for d in digests.values()),
    )


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

    SHA-256: twice as fast as BLAKE2b where the CPU computes it (1.5 against 0.8 GB/s on this project's
    machine), and it releases the GIL on large buffers, so hashing overlaps the writing."""
    contiguous = np.ascontiguousarray(array)
    return tuple(contiguous.shape), contiguous.dtype.str, hashlib.sha256(memoryview(contiguous).cast("B")).digest()
