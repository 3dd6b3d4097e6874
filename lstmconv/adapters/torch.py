"""Canonical form <-> PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` / ``nn.Linear`` / ``nn.Embedding`` parameters.

torch stores matrices ``(out, in)`` with gates stacked along axis 0 (LSTM i,f,g,o; GRU r,z,n) and two biases
per direction: ``weight_ih_l{k}{_reverse}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, plus
``weight_hr_l{k}`` with ``proj_size``. Its cells hard-code sigmoid gates and tanh candidates (RNN: tanh or
relu), and its GRU applies the reset gate after the recurrent matmul (Keras ``reset_after=True``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from lstmconv.activations import Activation
from lstmconv.errors import InputFormatError, ShapeMismatchError, UnsupportedFeatureError
from lstmconv.gates import CELL_GATES, split_gates, stack_gates
from lstmconv.layouts.torch import TORCH_MODULES
from lstmconv.schema import (
    CellActivations,
    DenseLayer,
    DenseMeta,
    DirectionWeights,
    EmbeddingLayer,
    EmbeddingMeta,
    GateWeights,
    Layer,
    RecurrentLayer,
    RecurrentMeta,
    SourceInfo,
    StackLevel,
)

_RECURRENT_KEY = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<level>\d+)(?P<reverse>_reverse)?$")

__all__ = [
    "torch_refusals",
    "recurrent_from_canonical",
    "torch_layout_state",
    "layer_from_canonical",
    "torch_module_spec",
    "TorchModule",
    "find_torch_modules",
    "recurrent_to_canonical",
]


def torch_refusals(layer: RecurrentLayer) -> list[str]:
    """Why ``torch.nn`` cannot compute ``layer`` exactly (empty when it can)."""
    reasons: list[str] = []
    if layer.backward_activations is not None:
        reasons.append(f"nn.{TORCH_MODULES[layer.cell]} uses the same activations in both directions, this layer does not")
    acts = layer.activations
    if layer.cell == "rnn":
        if acts.candidate.name not in ("tanh", "relu"):
            reasons.append(f"nn.RNN supports only tanh or relu, this layer uses activation {acts.candidate}")
    else:
        if acts.gate is not None and acts.gate.name != "sigmoid":
            reasons.append(
                f"nn.{TORCH_MODULES[layer.cell]} hard-codes sigmoid gates, this layer uses recurrent_activation "
                f"{acts.gate}"
            )
        if acts.candidate.name != "tanh":
            reasons.append(
                f"nn.{TORCH_MODULES[layer.cell]} hard-codes tanh for the candidate, this layer uses activation "
                f"{acts.candidate}"
            )
        if acts.cell_output is not None and acts.cell_output.name != "tanh":
            reasons.append(f"nn.LSTM hard-codes tanh on the cell state, this layer uses {acts.cell_output}")
    if layer.cell == "gru" and not layer.reset_after:
        reasons.append(
            "GRU(reset_after=False) applies the reset gate before the recurrent matmul; nn.GRU applies it "
            "after (reset_after=True), so no weights make them equal"
        )
    if layer.cell_clip is not None:
        reasons.append(f"nn.{TORCH_MODULES[layer.cell]} has no pre-activation clip (clip={layer.cell_clip})")
    if layer.state_clip is not None:
        reasons.append(f"nn.LSTM does not clamp its cell state (state_clip={layer.state_clip})")
    if layer.input_forget:
        reasons.append("nn.LSTM has no coupled input/forget gate (input_forget=1)")
    if any(g.peephole is not None for _, _, d in layer.directions() for g in d.gates.values()):
        reasons.append("nn.LSTM has no peephole connections")
    return reasons


def recurrent_from_canonical(layer: RecurrentLayer) -> dict[str, np.ndarray]:
    """The ``state_dict`` of the matching torch module (keys without a module prefix)."""
    refusals = torch_refusals(layer)
    if refusals:
        raise UnsupportedFeatureError("; ".join(refusals), layer=layer.name)
    return torch_layout_state(layer)


def torch_layout_state(layer: RecurrentLayer) -> dict[str, np.ndarray]:
    """Parameters in torch's layout for any layer (the emitted modules add ``peephole_l{k}``: input, forget, output)."""
    state: dict[str, np.ndarray] = {}
    for level, side, direction in layer.directions():
        suffix = f"_l{level}" + ("_reverse" if side == "backward" else "")
        gates = direction.gates
        state[f"weight_ih{suffix}"] = stack_gates({g: p.w_input for g, p in gates.items()}, "torch", layer.cell, axis=0)
        state[f"weight_hh{suffix}"] = stack_gates(
            {g: p.w_recurrent for g, p in gates.items()}, "torch", layer.cell, axis=0
        )
        if layer.use_bias:
            dtype = next(iter(gates.values())).w_input.dtype
            zeros = np.zeros(layer.hidden_size, dtype=dtype)

            def bias_or_zero(b: np.ndarray | None) -> np.ndarray:
                return zeros if b is None else b

            state[f"bias_ih{suffix}"] = stack_gates(
                {g: bias_or_zero(p.b_input) for g, p in gates.items()}, "torch", layer.cell, axis=0
            )
            state[f"bias_hh{suffix}"] = stack_gates(
                {g: bias_or_zero(p.b_recurrent) for g, p in gates.items()}, "torch", layer.cell, axis=0
            )
        if direction.w_projection is not None:
            state[f"weight_hr{suffix}"] = np.ascontiguousarray(direction.w_projection)
        if any(p.peephole is not None for p in gates.values()):
            zeros = np.zeros(layer.hidden_size, dtype=next(iter(gates.values())).w_input.dtype)
            rows = [gates[g].peephole if gates[g].peephole is not None else zeros for g in ("input", "forget", "output")]
            state[f"peephole{suffix}"] = np.stack(rows)
    return state


def layer_from_canonical(layer: Layer) -> dict[str, np.ndarray]:
    """torch parameters of any canonical layer (empty for weightless layers)."""
    if isinstance(layer, RecurrentLayer):
        return recurrent_from_canonical(layer)
    if isinstance(layer, DenseLayer):
        params = {"weight": np.ascontiguousarray(layer.weight)}
        if layer.bias is not None:
            params["bias"] = np.ascontiguousarray(layer.bias)
        return params
    if isinstance(layer, EmbeddingLayer):
        return {"weight": np.ascontiguousarray(layer.weight)}
    return {}


def torch_module_spec(layer: Layer | RecurrentMeta | DenseMeta | EmbeddingMeta) -> str | None:
    """The torch module that holds ``layer``'s parameters, as Python source (for reports and docs)."""
    if isinstance(layer, RecurrentMeta):
        cls = TORCH_MODULES[layer.cell]
        args = [f"{layer.input_size}", f"{layer.hidden_size}"]
        if layer.num_levels > 1:
            args.append(f"num_layers={layer.num_levels}")
        if not layer.use_bias:
            args.append("bias=False")
        args.append("batch_first=True")
        if layer.bidirectional:
            args.append("bidirectional=True")
        if layer.projection_size:
            args.append(f"proj_size={layer.projection_size}")
        if layer.cell == "rnn" and layer.activations.candidate.name == "relu":
            args.append("nonlinearity='relu'")
        return f"nn.{cls}({', '.join(args)})"
    if isinstance(layer, DenseMeta):
        return f"nn.Linear({layer.input_size}, {layer.units}{'' if layer.use_bias else ', bias=False'})"
    if isinstance(layer, EmbeddingMeta):
        return f"nn.Embedding({layer.vocabulary_size}, {layer.embedding_size})"
    return None


@dataclass
class TorchModule:
    """The parameters of one torch module found in a state dict, keyed without the module prefix."""

    prefix: str
    kind: str  # 'recurrent' | 'linear'
    params: dict[str, np.ndarray] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # parameter -> its key in the state dict


def find_torch_modules(state: dict[str, np.ndarray]) -> tuple[list[TorchModule], list[str]]:
    """Group a state dict into recurrent modules (``*_l{k}`` keys) and Linear layers; the rest is listed."""
    modules: dict[str, TorchModule] = {}
    leftover: list[str] = []
    for key, value in state.items():
        match = _RECURRENT_KEY.match(key)
        if match:
            prefix = match.group("prefix") or "rnn"
            module = modules.setdefault(prefix, TorchModule(prefix, "recurrent"))
            param = key[len(match.group("prefix")) + 1 :] if match.group("prefix") else key
            if param in module.keys:  # e.g. 'weight_ih_l0' (a bare nn.LSTM is named 'rnn') and 'rnn.weight_ih_l0'
                raise InputFormatError(
                    f"two keys give module {prefix!r} its {param}: lstmconv would have to pick one",
                    tensor=key,
                    expected="one key per parameter",
                    actual=[module.keys[param], key],
                    hint="rename one module's keys in the state dict",
                )
            module.params[param], module.keys[param] = value, key
            continue
        prefix, _, leaf = key.rpartition(".")
        if leaf in ("weight", "bias") and prefix:
            module = modules.setdefault(prefix, TorchModule(prefix, "linear"))
            if module.kind == "linear":
                module.params[leaf], module.keys[leaf] = value, key
                continue
        leftover.append(key)
    found = []
    for module in modules.values():
        if module.kind == "linear" and not (module.params.get("weight") is not None and module.params["weight"].ndim == 2 and "bias" in module.params):
            leftover.extend(f"{module.prefix}.{k}" for k in module.params)  # Embedding or bias-free Linear: ambiguous
            continue
        found.append(module)
    return found, leftover


def recurrent_to_canonical(
    module: TorchModule, source: SourceInfo, *, nonlinearity: str | None = None, name: str | None = None
) -> RecurrentLayer:
    """Canonical form of an ``nn.LSTM``/``GRU``/``RNN`` from its parameters (kind and sizes from shapes)."""
    params = module.params
    levels = sorted({int(k.rsplit("_l", 1)[1].split("_")[0]) for k in params})
    if levels != list(range(len(levels))):
        raise ShapeMismatchError("levels are not numbered 0..N-1", layer=module.prefix, actual=levels)
    bidirectional = any(k.endswith("_reverse") for k in params)
    w_hh = params.get("weight_hh_l0")
    w_ih = params.get("weight_ih_l0")
    if w_hh is None or w_ih is None or w_hh.ndim != 2 or w_ih.ndim != 2:
        raise ShapeMismatchError("weight_ih_l0 and weight_hh_l0 must be matrices", layer=module.prefix)
    projection = params.get("weight_hr_l0")
    hidden = int(projection.shape[1]) if projection is not None else int(w_hh.shape[1])
    gates = w_hh.shape[0] // hidden if hidden else 0
    cell = {4: "lstm", 3: "gru", 1: "rnn"}.get(gates) if w_hh.shape[0] % max(hidden, 1) == 0 else None
    if cell is None:
        raise ShapeMismatchError(
            "weight_hh rows are not 4, 3 or 1 times the hidden size", layer=module.prefix, tensor="weight_hh_l0",
            actual=tuple(w_hh.shape),
        )
    inferred = list(source.inferred)
    if cell == "rnn":
        if nonlinearity is None:
            nonlinearity = "tanh"
            inferred.append("nonlinearity=tanh (nn.RNN default; a state dict does not record it)")
        candidate = Activation(name=nonlinearity)  # type: ignore[arg-type]
        activations = CellActivations(gate=None, candidate=candidate, cell_output=None)
    else:
        tanh = Activation(name="tanh")
        activations = CellActivations(gate=Activation(name="sigmoid"), candidate=tanh, cell_output=tanh if cell == "lstm" else None)
    use_bias = "bias_ih_l0" in params
    stack = []
    for k in levels:
        sides = [_direction(module, cell, k, "")] + ([_direction(module, cell, k, "_reverse")] if bidirectional else [])
        stack.append(StackLevel(forward=sides[0], backward=sides[1] if bidirectional else None))
    meta = RecurrentMeta(
        name=name or module.prefix,
        cell=cell,  # type: ignore[arg-type]
        input_size=int(w_ih.shape[1]),
        hidden_size=hidden,
        projection_size=int(projection.shape[0]) if projection is not None else None,
        num_levels=len(levels),
        bidirectional=bidirectional,
        merge_mode="concat" if bidirectional else None,
        return_sequences=True,
        reset_after=True if cell == "gru" else None,
        use_bias=use_bias,
        activations=activations,
        dtype=str(w_ih.dtype),
        source=source.model_copy(update={"inferred": tuple(inferred)}),
    )
    return RecurrentLayer(**dict(meta), levels=tuple(stack))


def _direction(module: TorchModule, cell: str, level: int, suffix: str) -> DirectionWeights:
    def get(name: str) -> np.ndarray | None:
        return module.params.get(f"{name}_l{level}{suffix}")

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    if w_ih is None or w_hh is None:
        raise ShapeMismatchError(f"missing weight_ih/weight_hh for level {level}{suffix}", layer=module.prefix)
    blocks = {
        "w_input": split_gates(w_ih, "torch", cell, axis=0, tensor=f"weight_ih_l{level}{suffix}"),
        "w_recurrent": split_gates(w_hh, "torch", cell, axis=0, tensor=f"weight_hh_l{level}{suffix}"),
    }
    for field_name, key in (("b_input", "bias_ih"), ("b_recurrent", "bias_hh")):
        array = get(key)
        if array is not None:
            blocks[field_name] = split_gates(array, "torch", cell, axis=0, tensor=f"{key}_l{level}{suffix}")
    return DirectionWeights(
        gates={g: GateWeights(**{f: b[g] for f, b in blocks.items()}) for g in CELL_GATES[cell]},
        w_projection=get("weight_hr"),
    )
