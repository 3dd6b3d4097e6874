"""``lstmconv inspect``: the layers of a file, what each does beyond the plain cell, what is left out, and what
each target would refuse, without converting anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lstmconv.pipeline.refusals import target_refusals
from lstmconv.pipeline.report import describe, left_out_record, non_default_facts
from lstmconv.schema import Layer

__all__ = ["Inspection", "inspect"]


@dataclass(frozen=True)
class Inspection:
    """A file's layers (descriptions, no weights), facts, left-out layers and per-target refusals."""

    file: str
    layers: tuple[Layer, ...]
    left_out: tuple[str, ...]
    facts: dict[str, list[str]] = field(default_factory=dict)  # layer -> non-default facts
    refusals: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # target -> [{layer, reason}]
    # layer -> its one-line description, made from the whole layer: a description without weights cannot say
    # whether a layer has peepholes
    summaries: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data (``inspect --json``)."""
        return {
            "file": self.file,
            "layers": [
                {**layer.model_dump(mode="json"), "summary": self.summaries[layer.name], "facts": self.facts.get(layer.name, [])}
                for layer in self.layers
            ],
            "left_out": [left_out_record(item) for item in self.left_out],
            "refusals": self.refusals,
        }


def inspect(
    path: str | Path, *, config: str | Path | None = None, source_format: str | None = None
) -> Inspection:
    """Read ``path`` one layer at a time and describe it (see :class:`Inspection`)."""
    from lstmconv.pipeline.read import describe_file
    from lstmconv.protocols import Options

    facts: dict[str, list[str]] = {}
    refusals: dict[str, list[dict[str, str]]] = {}
    summaries: dict[str, str] = {}

    def note(layer: Layer) -> None:
        summaries[layer.name] = describe(layer)
        if found := non_default_facts(layer):
            facts[layer.name] = found
        for target, reasons in target_refusals(layer).items():
            refusals.setdefault(target, []).extend({"layer": layer.name, "reason": r} for r in reasons)

    options = Options(config=Path(config) if config is not None else None, source_format=source_format)
    described, skipped = describe_file(path, options, each=note)
    return Inspection(str(path), tuple(described), tuple(skipped), facts, refusals, summaries)
