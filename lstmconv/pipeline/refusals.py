"""What each target refuses of a layer, and the ways out that exist for a refused one.

A refusal names the target being written and only ways out that work: the other targets that compute the
layer exactly (asked of their own refusal rules, not written out by hand), ``--emit-module`` where it applies,
and ``--skip-unsupported``.
"""

from __future__ import annotations

from lstmconv.schema import Layer, RecurrentLayer

__all__ = ["target_refusals", "ways_out"]

# Labels of the targets as a user writes them: one Keras target name covers two files with different rules.
KERAS3 = "keras (.keras, .weights.h5)"
KERAS2 = "keras (.h5)"


def target_refusals(layer: Layer) -> dict[str, list[str]]:
    """Why each target would refuse ``layer`` (targets that accept it are absent)."""
    from lstmconv.adapters.onnx import onnx_refusals
    from lstmconv.adapters.torch import torch_refusals
    from lstmconv.adapters.keras_plan import keras_refusals

    reasons: dict[str, list[str]] = {"onnx": onnx_refusals(layer)}
    if isinstance(layer, RecurrentLayer):
        reasons["torch"] = torch_refusals(layer)
        reasons[KERAS3] = keras_refusals(layer, 3)
        reasons[KERAS2] = keras_refusals(layer, 2)
    return {target: found for target, found in reasons.items() if found}


_HOW = {
    "torch": "--to torch (a .safetensors or .pt file)",
    "onnx": "--to onnx (a .onnx file)",
    KERAS3: "a Keras 3 file (.keras or .weights.h5)",
    KERAS2: "a legacy Keras .h5 (tf.keras, Keras 2 semantics)",
    "canonical": "--to canonical (lstmconv's own file, exact for every layer)",
}


def ways_out(layer: Layer, writing: str) -> str:
    """The hint for a layer the target ``writing`` (a label of :func:`target_refusals`) refuses."""
    from lstmconv.adapters.torch_emit import can_emit

    refused = target_refusals(layer)
    others = [how for target, how in _HOW.items() if target != writing and target not in refused]
    if writing == "torch" and isinstance(layer, RecurrentLayer) and can_emit(layer):
        others.insert(0, "--emit-module layers.py (emit_module='layers.py') for a small PyTorch module computing it")
    others.append("--skip-unsupported (skip_unsupported=True) to convert the other layers")
    return "instead: " + "; ".join(others)
