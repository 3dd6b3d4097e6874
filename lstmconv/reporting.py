"""What a conversion reports: one row per layer (what it was, what it became, the check's error)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lstmconv.schema import DenseMeta, Layer, RecurrentMeta

__all__ = ["LayerReport", "ConversionReport", "describe"]


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


def describe(layer: Layer | RecurrentMeta | DenseMeta) -> str:
    """Short human description, e.g. 'LSTM 33->200, bidirectional (concat)'."""
    if isinstance(layer, RecurrentMeta):
        kind = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}[layer.cell]
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
        return text
    if isinstance(layer, DenseMeta):
        prefix = "TimeDistributed(Dense)" if layer.time_distributed else "Dense"
        return f"{prefix} {layer.input_size}->{layer.units}, {layer.activation}"
    return type(layer).__name__.removesuffix("Layer").removesuffix("Meta")
