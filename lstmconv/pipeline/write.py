"""Refuse, plan, check, write, report: a layer stream written to one target, one layer at a time.

In a background thread (:mod:`lstmconv._fast.run_ahead`) each layer read is asked of the target's writer
whether it can be written exactly (a refusal names the ways out that work, :mod:`lstmconv.pipeline.refusals`),
planned into the target's tensors, and the source half of its numeric check run while the source's arrays are
in memory. Meanwhile the writing thread writes the layer before it to the writer's stream, runs the target
half of its check on the tensors as written, records its report row and drops it. What describes the whole
file comes last; the file (and its companions) is renamed into place only once it is complete and read back
(:func:`lstmconv.io.atomic.write_atomically`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstmconv._fast.run_ahead import one_blas_thread_for, run_ahead
from lstmconv.errors import LstmconvError, RefusedConversionError, UnsupportedFeatureError
from lstmconv.io.atomic import write_atomically
from lstmconv.pipeline.check import SourceSide, check_source_side
from lstmconv.pipeline.read import refuse_without_recurrent
from lstmconv.pipeline.refusals import ways_out
from lstmconv.pipeline.report import ConversionReport, LayerReport, describe
from lstmconv.protocols import LayerSource, Options, Planned, Target, Writer
from lstmconv.schema import DenseMeta, EmbeddingMeta, Layer, RecurrentMeta

__all__ = ["write", "plan_tensors"]


class _Planning:
    """The planning half: each layer refused or planned, and the source half of its check."""

    def __init__(self, target: Target, writer: Writer, layers: LayerSource, destination: Path, options: Options) -> None:
        self.writer, self.layers, self.options = writer, layers, options
        self.rule_set = target.rule_set_for(destination)
        # filled by the planning thread; read by the writing thread only once planning has finished
        self.refused: list[LstmconvError] = list(writer.refused)
        self.seen: list[Layer] = []

    def items(self) -> Iterator[tuple[Planned, SourceSide]]:
        writer, options = self.writer, self.options
        references = {}
        for layer, reference in self.layers.layers:
            self.seen.append(layer.meta())
            refusal = writer.refuse(layer)
            if refusal is not None:
                if refusal.hint is None:
                    hint = ways_out(layer, self.rule_set, can_skip=not writer.all_or_nothing) + refusal.hint_suffix
                else:
                    hint = refusal.hint
                self.refused.append(UnsupportedFeatureError("; ".join(refusal.reasons), layer=layer.name, hint=hint))
                continue
            if self.refused and (writer.all_or_nothing or not options.skip_unsupported):
                continue  # going on only to name every refused layer
            references[layer.name] = reference
            for planned in writer.plan(layer):
                done = planned.layer
                checking = check_source_side(
                    self.layers.source, done, references.pop(done.name, None), options.verify,
                    known_finite=self.layers.known_finite,
                )
                planned.layer = done.meta()  # the report needs the description only: the weights go
                yield planned, checking
                del planned, done
            del layer, reference

    def refuse_file(self) -> None:
        """Refuse the whole file for what planning found (run once it has finished)."""
        refuse_without_recurrent(self.seen, self.layers.skipped, self.layers.source)
        if self.refused and (self.writer.all_or_nothing or not self.options.skip_unsupported):
            raise RefusedConversionError(
                self.writer.refusing.format(count=len(self.refused)) + "; nothing was written",
                refusals=self.refused,
                file=self.layers.source,
            )

    def left_out(self) -> tuple[str, ...]:
        return (*self.layers.skipped, *(f"{r.layer}: {r.message}" for r in self.refused))


def write(target: Target, layers: LayerSource, destination: Path, options: Options) -> ConversionReport:
    """Write ``layers`` to ``destination`` for ``target`` (see the module docstring)."""
    writer = target.writer(destination, layers, options)
    planning = _Planning(target, writer, layers, destination, options)
    reports: list[LayerReport] = []

    def write_files(path: Path, *companions: Path) -> None:
        stream = writer.open(path, *companions)
        written = 0
        try:
            # closing(): the background thread is stopped and joined however this block ends
            with contextlib.closing(run_ahead(planning.items(), one_blas_thread=one_blas_thread_for(layers.source))) as items:
                for planned, checking in items:
                    writer.write(stream, planned)
                    written += isinstance(planned.layer, (RecurrentMeta, DenseMeta, EmbeddingMeta))  # a layer with weights
                    error, tolerance, check_notes = checking.finish(planned.function, writer.what)
                    if planned.became is not None:
                        row = (planned.layer.name, describe(planned.layer), planned.became)
                        reports.append(LayerReport(*row, error, tolerance, (*planned.notes, *check_notes)))
                    del planned, checking
            planning.refuse_file()
            if not written:
                raise RefusedConversionError(
                    "no layer could be converted; nothing was written",
                    refusals=[],
                    file=layers.source,
                    hint="; ".join(planning.left_out()) or None,
                )
            writer.finish(stream)
        finally:
            stream.abort()

    write_atomically(destination, write_files, writer.check, companions=writer.companions, replace=options.force)
    return ConversionReport(
        source=layers.source,
        destination=str(destination),
        target=writer.label,
        layers=tuple(reports),
        skipped=planning.left_out(),
        verified=options.verify,
        **writer.report(),  # type: ignore[arg-type]
    )


def plan_tensors(target: Target, layers: LayerSource, destination: Path, options: Options) -> dict[str, np.ndarray]:
    """The tensors ``target`` would write for ``layers``, refused as :func:`write` refuses, unchecked."""
    writer = target.writer(destination, layers, options)
    planning = _Planning(target, writer, layers, destination, options)
    tensors: dict[str, np.ndarray] = {}
    for planned, _checking in planning.items():
        tensors.update(planned.tensors)
    planning.refuse_file()
    return tensors
