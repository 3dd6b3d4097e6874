"""The canonical target: lstmconv's own ``.safetensors``, every layer as it is in the canonical form (exact,
nothing refused), its gate-named tensors written as the layer is read and its description last (format:
:mod:`lstmconv.io.canonical_file`)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from lstmconv.io.canonical_file import CANONICAL_KEY, canonical_tensors
from lstmconv.io.safetensors_stream import SafetensorsStream
from lstmconv.protocols import LayerSource, Options, Planned, Refusal, TargetBase
from lstmconv.reference.canonical import canonical_forward
from lstmconv.schema import CanonicalMetadata, CanonicalModel, Layer, RecurrentLayer
from lstmconv.targets.safetensors_output import add_tensors, check_safetensors, open_safetensors

__all__ = ["TARGET"]

_RULES = "canonical"


class CanonicalTarget(TargetBase):
    def rule_sets(self) -> dict[str, str]:
        return {_RULES: "--to canonical (lstmconv's own file, exact for every layer)"}

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        return []


    def writer(self, destination: Path, layers: LayerSource, options: Options) -> CanonicalWriter:
        return CanonicalWriter(layers)


TARGET = CanonicalTarget()


class CanonicalWriter:
    what = "the canonical weights"
    label = "canonical"
    refusing = "{count} layer(s) refused"  # never: every layer has a canonical form
    all_or_nothing = False
    companions: tuple[Path, ...] = ()

    def __init__(self, layers: LayerSource) -> None:
        self.layers = layers
        self.refused: list[Exception] = []
        self.described: list[Layer] = []
        self.written: list[str] = []

    def refuse(self, layer: Layer) -> Refusal | None:
        return None

    def plan(self, layer: Layer) -> Iterator[Planned]:
        self.described.append(layer.meta())
        function = functools.partial(canonical_forward, layer) if isinstance(layer, RecurrentLayer) else None
        notes = (*layer.source.inferred, *layer.source.notes)
        yield Planned(layer, canonical_tensors(CanonicalModel(layers=(layer,))), function, "canonical", notes)

    def open(self, path: Path, *companions: Path) -> SafetensorsStream:
        return open_safetensors(path, self.layers.names)

    def write(self, stream: SafetensorsStream, planned: Planned) -> None:
        add_tensors(stream, planned.tensors)

    def finish(self, stream: SafetensorsStream) -> None:
        described = CanonicalMetadata(layers=tuple(self.described), wiring=self.layers.wiring)
        stream.finish({CANONICAL_KEY: described.model_dump_json(), "format": "lstmconv-canonical"})
        self.written = list(stream.entries)

    def check(self, path: Path) -> None:
        check_safetensors(path, self.written)

    def report(self) -> dict[str, object]:
        return {"written_tensors": len(self.written)}
