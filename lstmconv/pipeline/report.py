"""What a conversion reports: one row per layer (what it was, what it became, the check's error)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lstmconv.layouts.keras import KERAS_CLASSES
from lstmconv.protocols import LeftOut
from lstmconv.schema import DenseMeta, EmbeddingMeta, Layer, RecurrentMeta

__all__ = ["LayerReport", "ConversionReport", "LeftOut", "describe", "left_out_record", "non_default_facts"]


def left_out_record(item: str) -> dict[str, str | None]:
    """A left-out item as data: ``{"layer", "kind", "reason"}`` (a plain text is split at its first ': ')."""
    if isinstance(item, LeftOut):
        return {"layer": item.layer, "kind": item.kind, "reason": item.reason}
    layer, _, reason = item.partition(": ")
    return {"layer": layer, "kind": None, "reason": reason or item}


@dataclass(frozen=True)
class LayerReport:
    """What happened to one layer."""

    name: str
    kind: str
    became: str
    max_abs_error: float | None
    tolerance: float | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConversionReport:
    """The outcome of a conversion, layer by layer."""

    source: str
    destination: str
    target: str
    layers: tuple[LayerReport, ...]
    skipped: tuple[str, ...] = ()
    verified: bool = True
    written_tensors: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    external_data: str | None = None  # the file holding the weights of an ONNX destination, if not itself

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data (``convert --json``)."""
        return {
            "source": self.source,
            "destination": self.destination,
            "target": self.target,
            "external_data": self.external_data,
            "verified": self.verified,
            "written_tensors": self.written_tensors,
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "became": layer.became,
                    "max_abs_error": layer.max_abs_error,
                    "tolerance": layer.tolerance,
                    "notes": list(layer.notes),
                }
                for layer in self.layers
            ],
            "left_out": [left_out_record(item) for item in self.skipped],
            "warnings": list(self.warnings),
        }


def non_default_facts(layer: Layer | RecurrentMeta) -> list[str]:
    """What a recurrent layer does beyond the plain cell: peepholes, clip, projection, coupled gates,
    an output aligned with input time (``inspect`` shows each)."""
    if not isinstance(layer, RecurrentMeta):
        return []
    facts = []
    if layer.projection_size is not None:
        facts.append(f"projection {layer.projection_size}")
    levels = getattr(layer, "levels", ())
    if any(gate.peephole is not None for level in levels for d in (level.forward, level.backward) if d for gate in d.gates.values()):
        facts.append("peepholes")
    if layer.cell_clip is not None:
        facts.append(f"clip {layer.cell_clip}")
    if layer.state_clip is not None:
        facts.append(f"state clip {layer.state_clip}")
    if layer.input_forget:
        facts.append("input_forget")
    if layer.time_aligned_output:
        facts.append("reverse direction, output aligned with input time")
    return facts


def describe(layer: Layer | RecurrentMeta | DenseMeta) -> str:
    """Short human description, e.g. 'LSTM 33->200, bidirectional (concat)'."""
    if isinstance(layer, EmbeddingMeta):
        return f"Embedding {layer.vocabulary_size}x{layer.embedding_size}" + (", mask_zero" if layer.mask_zero else "")
    if isinstance(layer, RecurrentMeta):
        kind = KERAS_CLASSES[layer.cell]
        text = f"{kind} {layer.input_size}->{layer.hidden_size}"
        if layer.num_levels > 1:
            text += f" x{layer.num_levels} levels"
        if layer.bidirectional:
            text += f", bidirectional ({layer.merge_mode})"
        if layer.go_backwards:
            text += ", go_backwards"
        if layer.cell == "gru":
            text += f", reset_after={layer.reset_after}"
        acts = layer.activations
        text += f", {acts.gate or ''}{'/' if acts.gate else ''}{acts.candidate}"
        if acts.cell_output is not None and acts.cell_output != acts.candidate:
            text += f"/{acts.cell_output}"
        if (back := layer.backward_activations) is not None:
            text += f" (backward {back.gate or ''}{'/' if back.gate else ''}{back.candidate}"
            text += f"/{back.cell_output})" if back.cell_output is not None and back.cell_output != back.candidate else ")"
        return ", ".join([text, *non_default_facts(layer)])
    if isinstance(layer, DenseMeta):
        prefix = "TimeDistributed(Dense)" if layer.time_distributed else "Dense"
        return f"{prefix} {layer.input_size}->{layer.units}, {layer.activation}"
    return type(layer).__name__.removesuffix("Layer").removesuffix("Meta")
