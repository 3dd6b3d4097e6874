"""The canonical form: one frozen, gate-named description of every layer lstmconv moves.

Every framework layout converts to and from these models and nothing else (hub and spoke).

Conventions, stated once:

* Matrices are ``(out, in)``: a gate's ``w_input`` is ``(hidden, input)`` and ``w_recurrent`` is
  ``(hidden, hidden)`` (``(hidden, projection)`` for a torch LSTM with ``proj_size``). A gate's
  pre-activation is ``x @ w_input.T + b_input + h @ w_recurrent.T + b_recurrent``, except the GRU candidate
  with ``reset_after=False``, where the reset gate multiplies ``h`` before ``w_recurrent``.
* Both biases are kept. ``None`` means "absent" (zero), so a single-bias source round-trips bit-exactly.
* Activations carry their numeric parameters (see :mod:`lstmconv.activations`).
* Sequences are batch-first: ``(batch, time, features)``.

Each layer class is split in two: ``*Meta`` holds the description (what goes into file metadata and the
JSON Schema in ``schemas/``) and the full class adds the weight arrays. Arrays are stored as read-only
views: building the canonical form never copies or mutates the caller's arrays.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator

from lstmconv.activations import Activation
from lstmconv.errors import ConfigError, ShapeMismatchError
from lstmconv.gates import CELL_GATES, CellKind, Gate
from lstmconv.registry import SOURCE_NAMES

__all__ = [
    "SCHEMA_VERSION",
    "Array",
    "SourceInfo",
    "CellActivations",
    "GateWeights",
    "DirectionWeights",
    "StackLevel",
    "RecurrentMeta",
    "RecurrentLayer",
    "DenseMeta",
    "DenseLayer",
    "EmbeddingMeta",
    "EmbeddingLayer",
    "ActivationMeta",
    "ActivationLayer",
    "DropoutMeta",
    "DropoutLayer",
    "ConcatenateMeta",
    "ConcatenateLayer",
    "ModelInput",
    "Wiring",
    "LayerMeta",
    "Layer",
    "CanonicalMetadata",
    "CanonicalModel",
]

SCHEMA_VERSION = 1


def _readonly_view(value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype.kind != "f":
        raise ValueError(f"weights must be floating point, got dtype {value.dtype}")
    view = value.view()  # a new array object over the same memory: the caller's flags stay untouched
    view.flags.writeable = False
    return view


Array = Annotated[np.ndarray, PlainValidator(_readonly_view)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")


class _Described(_Frozen):
    """A layer description; subclasses that add weights get ``meta()`` returning the description alone."""

    def meta(self) -> Any:
        """The description alone, without weights (the nearest ``*Meta`` class in the hierarchy)."""
        meta_class = next(c for c in type(self).__mro__ if c.__name__.endswith("Meta"))
        if type(self) is meta_class:
            return self
        return meta_class.model_validate(self.model_dump(include=set(meta_class.model_fields)))


#: The framework a layer was read from: a source format of the registry, or arrays handed over in memory.
SourceFramework = Literal[(*SOURCE_NAMES, "arrays")]  # type: ignore[valid-type]


class SourceInfo(_Frozen):
    """Where a layer came from, and which of its facts were not stated by the source but inferred."""

    framework: SourceFramework
    layout: str = Field(description="source layout, e.g. 'keras2', 'keras1-per-gate', 'cudnn', 'keras3'")
    version: str | None = Field(default=None, description="framework version recorded in the file")
    inferred: tuple[str, ...] = Field(default=(), description="facts assumed because the source lacks them")
    notes: tuple[str, ...] = Field(default=(), description="what the source does around the layer that it does not carry")


class CellActivations(_Frozen):
    """The activations of a recurrent cell.

    ``gate`` is the gates' function (Keras ``recurrent_activation``; ONNX ``f``), ``candidate`` the cell
    candidate's (Keras ``activation``; ONNX ``g``; the only one of a SimpleRNN), ``cell_output`` the one applied
    to the LSTM cell state before the output gate (ONNX ``h``; Keras reuses ``activation``).
    """

    gate: Activation | None
    candidate: Activation
    cell_output: Activation | None


class GateWeights(_Frozen):
    """One gate of one direction: matrices ``(out, in)``, biases ``(hidden,)`` or ``None`` when absent."""

    w_input: Array
    w_recurrent: Array
    b_input: Array | None = None
    b_recurrent: Array | None = None
    peephole: Array | None = None


class DirectionWeights(_Frozen):
    """All gates of one direction, by canonical gate name, plus a torch-style projection if present."""

    gates: dict[Gate, GateWeights]
    w_projection: Array | None = Field(default=None, description="(projection, hidden), torch weight_hr")


class StackLevel(_Frozen):
    """One layer of a stack (torch ``num_layers``); Keras layers have exactly one level."""

    forward: DirectionWeights
    backward: DirectionWeights | None = None


class RecurrentMeta(_Described):
    """Description of an LSTM, GRU or SimpleRNN layer (no weights)."""

    type: Literal["recurrent"] = "recurrent"
    name: str
    cell: CellKind
    input_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    projection_size: int | None = Field(default=None, gt=0, description="torch proj_size")
    num_levels: int = Field(default=1, gt=0, description="stacked layers (torch num_layers)")
    bidirectional: bool = False
    merge_mode: Literal["concat", "sum", "mul", "ave", "none"] | None = Field(
        default=None, description="how a bidirectional layer merges directions; None when unidirectional"
    )
    go_backwards: bool = Field(
        default=False,
        description="unidirectional Keras go_backwards: reads time reversed and returns the reversed sequence",
    )
    time_aligned_output: bool = Field(
        default=False,
        description="go_backwards only: outputs aligned with input time (ONNX direction=reverse) instead of in "
        "processing order (Keras)",
    )
    return_sequences: bool = True
    reset_after: bool | None = Field(
        default=None, description="GRU only: reset applied after the recurrent matmul (torch/cuDNN style)"
    )
    use_bias: bool = True
    activations: CellActivations
    backward_activations: CellActivations | None = Field(
        default=None,
        description="bidirectional only: the backward direction's activations when they differ from the forward "
        "direction's (ONNX lists activations per direction); None: both directions use 'activations'",
    )
    cell_clip: float | None = Field(default=None, description="ONNX clip: clamp of pre-activations")
    state_clip: float | None = Field(
        default=None,
        description="LSTM only: clamp of the cell state after each update (TFLite's and TF1 LSTMCell's cell_clip)",
    )
    input_forget: bool = Field(default=False, description="ONNX input_forget: forget = 1 - input")
    runtime_inputs: tuple[Literal["initial_h", "initial_c", "sequence_lens"], ...] = Field(
        default=(),
        description="what the source model gave the layer at run time besides its input sequence (ONNX graph "
        "inputs); a per-layer ONNX model keeps them as optional inputs",
    )
    dtype: str = "float32"
    source: SourceInfo

    @model_validator(mode="after")
    def _consistent(self) -> RecurrentMeta:
        def bad(message: str) -> ConfigError:
            return ConfigError(message, layer=self.name)

        if self.cell == "gru" and self.reset_after is None:
            raise bad("a GRU layer must say reset_after (True or False)")
        if self.cell != "gru" and self.reset_after is not None:
            raise bad(f"reset_after applies to GRU only, not {self.cell}")
        if self.bidirectional != (self.merge_mode is not None):
            raise bad("merge_mode must be given exactly when the layer is bidirectional")
        if self.bidirectional and self.go_backwards:
            raise bad("go_backwards applies to unidirectional layers; a bidirectional layer has both directions")
        if self.time_aligned_output and not self.go_backwards:
            raise bad("time_aligned_output applies to go_backwards layers only")
        if self.backward_activations is not None and not self.bidirectional:
            raise bad("backward_activations applies to bidirectional layers only")
        for acts in (self.activations, self.backward_activations):
            if acts is None:
                continue
            if (self.cell == "rnn") != (acts.gate is None):
                raise bad("gate activation must be given for LSTM/GRU and omitted for SimpleRNN")
            if (self.cell == "lstm") != (acts.cell_output is not None):
                raise bad("cell_output activation must be given for LSTM only")
        if self.projection_size is not None and self.cell != "lstm":
            raise bad("projection applies to LSTM only")
        if self.cell_clip is not None and not (math.isfinite(self.cell_clip) and self.cell_clip > 0):
            raise bad(f"clip must be a positive number, not {self.cell_clip}")
        if self.state_clip is not None and not (self.cell == "lstm" and math.isfinite(self.state_clip) and self.state_clip > 0):
            raise bad(f"state_clip must be a positive number on an LSTM, not {self.state_clip}")
        if "initial_c" in self.runtime_inputs and self.cell != "lstm":
            raise bad("initial_c applies to LSTM only")
        return self

    def direction_activations(self, direction: int) -> CellActivations:
        """The activations of direction 0 (forward) or 1 (backward)."""
        return self.backward_activations if direction == 1 and self.backward_activations is not None else self.activations

    @property
    def output_size(self) -> int:
        """Width of one direction's output (projection size when projected)."""
        return self.projection_size or self.hidden_size



class RecurrentLayer(RecurrentMeta):
    """A recurrent layer with its weights: ``levels[k].forward`` / ``.backward`` per stacked level."""

    levels: tuple[StackLevel, ...] = Field(exclude=True)

    @model_validator(mode="after")
    def _shapes(self) -> RecurrentLayer:
        if len(self.levels) != self.num_levels:
            raise ConfigError(
                "number of stacked levels does not match num_levels",
                layer=self.name,
                expected=self.num_levels,
                actual=len(self.levels),
            )
        hidden, out = self.hidden_size, self.output_size
        directions = 2 if self.bidirectional else 1
        for k, level in enumerate(self.levels):
            if (level.backward is not None) != self.bidirectional:
                raise ConfigError(
                    f"level {k} must {'have' if self.bidirectional else 'not have'} a backward direction",
                    layer=self.name,
                )
            level_input = self.input_size if k == 0 else out * directions
            for side, weights in (("forward", level.forward), ("backward", level.backward)):
                if weights is not None:
                    self._check_direction(weights, f"levels[{k}].{side}", level_input, hidden, out)
        return self

    def _check_direction(
        self, weights: DirectionWeights, where: str, level_input: int, hidden: int, out: int
    ) -> None:
        expected_gates = set(CELL_GATES[self.cell])
        if set(weights.gates) != expected_gates:
            raise ConfigError(
                f"{where}: wrong gate names for {self.cell.upper()}",
                layer=self.name,
                expected=sorted(expected_gates),
                actual=sorted(weights.gates),
            )
        for gate, params in weights.gates.items():
            expected = {
                "w_input": (hidden, level_input),
                "w_recurrent": (hidden, out),
                "b_input": (hidden,),
                "b_recurrent": (hidden,),
                "peephole": (hidden,),
            }
            for field, shape in expected.items():
                array = getattr(params, field)
                if array is not None and array.shape != shape:
                    raise ShapeMismatchError(
                        "shape mismatch",
                        layer=self.name,
                        tensor=f"{where}.{gate}.{field}",
                        expected=shape,
                        actual=tuple(array.shape),
                    )
            if params.peephole is not None and (self.cell != "lstm" or gate == "cell"):
                raise ConfigError(f"{where}.{gate}: peepholes exist only on LSTM input/forget/output gates")
            has_bias = params.b_input is not None or params.b_recurrent is not None
            if has_bias and not self.use_bias:
                raise ConfigError(f"{where}.{gate}: has a bias but use_bias is False", layer=self.name)
        if weights.w_projection is not None and weights.w_projection.shape != (out, hidden):
            raise ShapeMismatchError(
                "shape mismatch",
                layer=self.name,
                tensor=f"{where}.w_projection",
                expected=(out, hidden),
                actual=tuple(weights.w_projection.shape),
            )

    def directions(self) -> list[tuple[int, str, DirectionWeights]]:
        """(level, 'forward'|'backward', weights) for every direction of every level, in torch order."""
        found: list[tuple[int, str, DirectionWeights]] = []
        for k, level in enumerate(self.levels):
            found.append((k, "forward", level.forward))
            if level.backward is not None:
                found.append((k, "backward", level.backward))
        return found


class DenseMeta(_Described):
    """A fully connected layer; ``time_distributed`` when Keras wraps it in TimeDistributed."""

    type: Literal["dense"] = "dense"
    name: str
    input_size: int = Field(gt=0)
    units: int = Field(gt=0)
    activation: Activation
    use_bias: bool = True
    time_distributed: bool = False
    dtype: str = "float32"
    source: SourceInfo



class DenseLayer(DenseMeta):
    """Dense weights: ``weight`` is ``(units, input)`` (torch ``nn.Linear`` orientation)."""

    weight: Array = Field(exclude=True)
    bias: Array | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _shapes(self) -> DenseLayer:
        _expect(self.name, "weight", self.weight, (self.units, self.input_size))
        if self.use_bias != (self.bias is not None):
            raise ConfigError("bias must be present exactly when use_bias is True", layer=self.name)
        if self.bias is not None:
            _expect(self.name, "bias", self.bias, (self.units,))
        return self


class EmbeddingMeta(_Described):
    """A lookup table from integer ids to vectors."""

    type: Literal["embedding"] = "embedding"
    name: str
    vocabulary_size: int = Field(gt=0)
    embedding_size: int = Field(gt=0)
    mask_zero: bool = False
    dtype: str = "float32"
    source: SourceInfo



class EmbeddingLayer(EmbeddingMeta):
    """Embedding weights: ``weight`` is ``(vocabulary, embedding)``."""

    weight: Array = Field(exclude=True)

    @model_validator(mode="after")
    def _shapes(self) -> EmbeddingLayer:
        _expect(self.name, "weight", self.weight, (self.vocabulary_size, self.embedding_size))
        return self


class ActivationMeta(_Described):
    """A standalone activation layer."""

    type: Literal["activation"] = "activation"
    name: str
    activation: Activation
    source: SourceInfo



class ActivationLayer(ActivationMeta):
    """Same as its description: no weights."""


class DropoutMeta(_Described):
    """Dropout (and other noise layers): the identity at inference."""

    type: Literal["dropout"] = "dropout"
    name: str
    rate: float = 0.0
    source: SourceInfo



class DropoutLayer(DropoutMeta):
    """Same as its description: no weights."""


class ConcatenateMeta(_Described):
    """Keras ``Concatenate``: joins its inputs along ``axis`` (negative: from the end)."""

    type: Literal["concatenate"] = "concatenate"
    name: str
    axis: int = -1
    source: SourceInfo


class ConcatenateLayer(ConcatenateMeta):
    """Same as its description: no weights."""


def _expect(layer: str, tensor: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ShapeMismatchError(
            "shape mismatch", layer=layer, tensor=tensor, expected=shape, actual=tuple(array.shape)
        )


LayerMeta = Annotated[
    Union[RecurrentMeta, DenseMeta, EmbeddingMeta, ActivationMeta, DropoutMeta, ConcatenateMeta],
    Field(discriminator="type"),
]
Layer = Union[RecurrentLayer, DenseLayer, EmbeddingLayer, ActivationLayer, DropoutLayer, ConcatenateLayer]


class ModelInput(_Frozen):
    """One input of a model whose wiring is known."""

    name: str
    shape: tuple[int | None, ...] = Field(description="without the batch dimension; None = any length")
    dtype: str = "float32"


class Wiring(_Frozen):
    """How the layers connect, when the source says so (Keras Sequential and functional models)."""

    inputs: tuple[ModelInput, ...]
    inbound: dict[str, tuple[str, ...]] = Field(
        description="layer -> the model inputs or layers it reads (their first output tensor), in order"
    )
    outputs: tuple[str, ...]
    initial_state: dict[str, tuple[tuple[str, int], ...]] = Field(
        default_factory=dict,
        description="recurrent layer -> the (layer, output tensor index) of each initial state it is given, in "
        "Keras order (h, c; a Bidirectional layer's forward states, then its backward states)",
    )
    output_tensors: tuple[tuple[str, int], ...] = Field(
        default=(),
        description="the model's outputs as (layer, output tensor index) when one is not a layer's first tensor "
        "(return_state states, merge_mode=None halves); empty: the first tensor of each of 'outputs'",
    )
    unsupported: tuple[str, ...] = Field(
        default=(), description="layers in the wiring that have no canonical form (the whole model cannot be rebuilt)"
    )

    def model_outputs(self) -> tuple[tuple[str, int], ...]:
        """Every output of the model as (layer, output tensor index)."""
        return self.output_tensors or tuple((name, 0) for name in self.outputs)

    def tensors_read(self, layer: str) -> set[int]:
        """Indices of ``layer``'s output tensors that other layers or the model's outputs read."""
        read = {0} if any(layer in sources for sources in self.inbound.values()) else set()
        read |= {k for states in self.initial_state.values() for source, k in states if source == layer}
        return read | {k for source, k in self.model_outputs() if source == layer}


class CanonicalMetadata(_Frozen):
    """What lstmconv writes into file metadata: the description of every layer, in order."""

    lstmconv_schema: int = SCHEMA_VERSION
    layers: tuple[LayerMeta, ...]
    wiring: Wiring | None = None


class CanonicalModel(_Frozen):
    """An ordered set of named layers with their weights, and how they connect when the source says so."""

    layers: tuple[Layer, ...]
    wiring: Wiring | None = None
    skipped: tuple[str, ...] = Field(
        default=(), description="layers of the source that carry weights lstmconv does not convert, with why"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> CanonicalModel:
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise ConfigError(f"two layers are named {layer.name!r}; layer names must be unique")
            seen.add(layer.name)
        return self

    def metadata(self) -> CanonicalMetadata:
        """The description of every layer, without weights."""
        return CanonicalMetadata(layers=tuple(layer.meta() for layer in self.layers), wiring=self.wiring)

    def recurrent_layers(self) -> list[RecurrentLayer]:
        """The recurrent layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, RecurrentLayer)]

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)
