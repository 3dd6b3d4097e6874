"""``--emit-module``: a dependency-free PyTorch module file for layers torch.nn cannot compute.

The file is :mod:`lstmconv.templates.lstmconv_modules` (plain torch code, torch.nn's parameter layout) plus a
``LAYERS`` table describing each converted layer and ``build_modules()``. The numeric check imports the
emitted text itself and runs it against the source's reference cell.
"""

from __future__ import annotations

import importlib.resources
import math
import types
from typing import Any

import numpy as np

from lstmconv.errors import UnsupportedFeatureError
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn, compute_dtype
from lstmconv.schema import RecurrentLayer

__all__ = ["MODULE_CLASS", "EmittedLayer", "can_emit", "emitted_layer", "module_source", "module_spec", "emitted_function"]

MODULE_CLASS = {"lstm": "LstmconvLSTM", "gru": "LstmconvGRU", "rnn": "LstmconvRNN"}


def can_emit(layer: RecurrentLayer) -> bool:
    """Whether the emitted modules compute ``layer`` (no projection; one activation set for both directions)."""
    return layer.projection_size is None and layer.backward_activations is None


def module_spec(layer: RecurrentLayer) -> dict[str, Any]:
    """Constructor arguments of the emitted class for ``layer``."""
    if layer.projection_size is not None:
        raise UnsupportedFeatureError("the emitted modules have no projection; nn.LSTM(proj_size=...) does", layer=layer.name)
    if layer.backward_activations is not None:
        raise UnsupportedFeatureError("the emitted modules use one activation set for both directions", layer=layer.name)
    acts = {"candidate": layer.activations.candidate}
    if layer.activations.gate is not None:
        acts["gate"] = layer.activations.gate
    if layer.activations.cell_output is not None:
        acts["cell_output"] = layer.activations.cell_output
    return {
        "input_size": layer.input_size,
        "hidden_size": layer.hidden_size,
        "num_layers": layer.num_levels,
        "bias": layer.use_bias,
        "bidirectional": layer.bidirectional,
        "merge_mode": layer.merge_mode or "concat",
        "go_backwards": layer.go_backwards,
        "time_aligned_output": layer.time_aligned_output,
        "activations": {role: (a.name, a.alpha, a.beta) for role, a in acts.items()},
        "clip": layer.cell_clip,
        "state_clip": layer.state_clip,
        "peepholes": any(g.peephole is not None for _, _, d in layer.directions() for g in d.gates.values()),
        "input_forget": layer.input_forget,
        "reset_after": bool(layer.reset_after) if layer.cell == "gru" else True,
    }


#: one emitted layer: its name, its class and its constructor arguments (:func:`module_spec`)
EmittedLayer = tuple[str, str, dict[str, Any]]


def emitted_layer(layer: RecurrentLayer) -> EmittedLayer:
    """What the module file says of ``layer``."""
    return layer.name, MODULE_CLASS[layer.cell], module_spec(layer)


def module_source(layers: list[EmittedLayer]) -> str:
    """The text of the module file for ``layers``."""
    template = importlib.resources.files("lstmconv.templates").joinpath("lstmconv_modules.py").read_text()
    lines = ["", "", "# The layers lstmconv converted: name -> (class, constructor arguments).", "LAYERS = {"]
    for name, class_name, spec in layers:
        lines.append(f"    {name!r}: ({class_name!r}, {_literal(spec)}),")
    lines += [
        "}",
        "",
        "",
        "def build_modules() -> dict:",
        '    """One module per converted layer (untrained; see load_state)."""',
        "    return {name: globals()[cls](**kwargs) for name, (cls, kwargs) in LAYERS.items()}",
        "",
    ]
    return template + "\n".join(lines)


def _literal(value: Any) -> str:
    """Python source for ``value`` (dicts, tuples, lists, strings, numbers, booleans, None) that evaluates to it
    for every value: ``repr`` writes ``nan`` and ``inf``, which are not Python literals."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        items = ", ".join(_literal(item) for item in value)
        return f"({items},)" if isinstance(value, tuple) and len(value) == 1 else (f"({items})" if isinstance(value, tuple) else f"[{items}]")
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"  # float('nan'), float('inf'), float('-inf')
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError(f"no literal for {type(value).__name__}")


def emitted_function(source: str, layer: EmittedLayer, params: dict[str, np.ndarray]) -> ReferenceFn:
    """Run the emitted text's module for ``layer`` as a reference-style function (precision follows x)."""
    _, class_name, spec = layer
    import torch

    namespace = types.ModuleType("lstmconv_emitted_check")
    exec(compile(source, "<emitted module>", "exec"), namespace.__dict__)  # noqa: S102 - our own generated text
    modules = {}
    for np_dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        module = getattr(namespace, class_name)(**spec).to(torch_dtype)
        module.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np_dtype)) for k, v in params.items()}, strict=True)
        modules[np_dtype] = module
    directions = 2 if spec["bidirectional"] else 1

    def run(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        dtype = compute_dtype(x)
        x = np.asarray(x, dtype=dtype)
        module = modules[dtype]
        state = None
        if initial is not None:
            h0 = torch.from_numpy(np.stack([h for level in initial for h, _ in level]).astype(dtype))
            if class_name == MODULE_CLASS["lstm"]:
                state = (h0, torch.from_numpy(np.stack([c for level in initial for _, c in level]).astype(dtype)))
            else:
                state = h0
        with torch.no_grad():
            y, final = module(torch.from_numpy(np.ascontiguousarray(x)), state)
        h_n, c_n = (final if isinstance(final, tuple) else (final, None))
        states = [
            [
                (h_n[k * directions + d].numpy(), None if c_n is None else c_n[k * directions + d].numpy())
                for d in range(directions)
            ]
            for k in range(spec["num_layers"])
        ]
        return LayerOutput(y=y.numpy(), states=states)

    return run
