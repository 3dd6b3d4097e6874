"""The TensorFlow.js target: a layers model, ``model.json`` and its weights file ``<name>.bin`` beside it, that
``tf.loadLayersModel`` of ``@tensorflow/tfjs`` 4.22 loads.

The model is the source's whole model (its wiring is needed, as for ``.keras``), written in the Keras 2 config
dialect that tfjs reads (``modelTopology.model_config``, as tf.keras saves it in a legacy ``.h5``; Keras 3
sources too). Each layer is planned as for a Keras 2 file (:func:`lstmconv.adapters.keras_plan.plan_keras_layer`),
its arrays written as little-endian float32 to the weights file as the layer is read, under the names tfjs
matches them by (``lstm/lstm_cell/kernel``: tfjs drops the cell level). What tfjs 4.22 cannot compute is refused:
a GRU with ``reset_after=True`` (its ``GRUCell`` throws), and activations it has no class for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstmconv.adapters.keras_plan import (
    KerasLayerPlan,
    keras_activation_name,
    keras_layer_refusals,
    plan_keras_layer,
)
from lstmconv.errors import RefusedConversionError, UnsupportedFeatureError, VerificationError
from lstmconv.io.checked_file import CheckedFile
from lstmconv.layouts.tfjs import TFJS_ACTIVATIONS
from lstmconv.protocols import LayerSource, Options, Planned, Refusal, TargetBase
from lstmconv.schema import ActivationLayer, DenseLayer, Layer, RecurrentLayer
from lstmconv.targets.keras_writers import KERAS2_VERSION, keras2_model_config, keras2_weight_names

__all__ = ["TARGET"]

_RULES = "tfjs"


class TfjsTarget(TargetBase):
    def rule_sets(self) -> dict[str, str]:
        return {_RULES: "--to tfjs (a TensorFlow.js model.json)"}

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        reasons = keras_layer_refusals(layer, 2)
        if reasons:
            return reasons
        if isinstance(layer, RecurrentLayer) and layer.cell == "gru" and layer.reset_after:
            reasons.append("GRU reset_after=True: tfjs 4.22's GRUCell throws 'does not support reset_after parameter set to true'")
        for activation in _activations(layer):
            name = keras_activation_name(activation, 2)
            if name is not None and name not in TFJS_ACTIVATIONS:
                reasons.append(f"tfjs has no '{name}' activation")
        return reasons


    def companions(self, destination: Path, options: Options) -> dict[Path, tuple[tuple[str, ...], str]]:
        return {weights_path(destination): ((".bin",), "the tfjs weights file")}


    def writer(self, destination: Path, layers: LayerSource, options: Options) -> TfjsWriter:
        return TfjsWriter(destination, layers)


TARGET = TfjsTarget()


def weights_path(model: Path) -> Path:
    """The weights file of ``model``: ``<model name without .json>.bin`` beside it."""
    return model.with_name(model.name.removesuffix(".json") + ".bin")


def _tfjs_names(plan: KerasLayerPlan) -> list[str]:
    """The names tfjs gives the plan's weights (``Container.loadWeights`` matches them): ``<layer>/<weight>``,
    a Bidirectional's ``<layer>/forward_<inner>/<weight>`` and ``backward_``."""
    if plan.class_name == "Bidirectional":
        inner = plan.config["layer"]["config"]["name"]
        half = len(plan.arrays) // 2
        leaves = [name.rsplit("/", 1)[-1].removesuffix(":0") for name in keras2_weight_names(plan)[:half]]
        return [f"{plan.name}/{side}_{inner}/{leaf}" for side in ("forward", "backward") for leaf in leaves]
    return [f"{plan.name}/{name.rsplit('/', 1)[-1].removesuffix(':0')}" for name in keras2_weight_names(plan)]


def _activations(layer: Layer) -> list[object]:
    if isinstance(layer, RecurrentLayer):
        return [a for a in (layer.activations.gate, layer.activations.candidate) if a is not None]
    if isinstance(layer, (DenseLayer, ActivationLayer)):
        return [layer.activation]
    return []


class TfjsWriter:
    what = "the tfjs arrays"
    label = "tfjs"
    refusing = "tfjs cannot compute {count} layer(s) exactly"
    all_or_nothing = True  # a layers model is the whole model

    def __init__(self, destination: Path, layers: LayerSource) -> None:
        self.destination, self.wiring = destination, layers.wiring
        self.companions = (weights_path(destination),)
        self.refused: list[Exception] = []
        if self.wiring is None:
            raise UnsupportedFeatureError(
                "a tfjs layers model needs to know how the layers connect, and this source does not say",
                file=layers.source,
                hint="convert a source that holds its model config (a Keras .h5 or .keras model, an ONNX graph)",
            )
        if self.wiring.unsupported:
            raise RefusedConversionError(
                "the whole model cannot be rebuilt for tfjs; nothing was written",
                refusals=[UnsupportedFeatureError(reason) for reason in self.wiring.unsupported],
                file=layers.source,
            )
        self.plans: list[KerasLayerPlan] = []  # without their arrays
        self.specs: list[dict[str, object]] = []
        self.written = 0  # bytes

    def refuse(self, layer: Layer) -> Refusal | None:
        reasons = TARGET.refusals(layer, _RULES)
        return Refusal(reasons) if reasons else None

    def plan(self, layer: Layer) -> Iterator[Planned]:
        plans, function = plan_keras_layer(layer, 2)
        tensors: dict[str, np.ndarray] = {}
        for plan in plans:
            for name, array in zip(_tfjs_names(plan), plan.arrays, strict=True):
                tensors[name] = np.ascontiguousarray(array, dtype="<f4")
            self.plans.append(KerasLayerPlan(plan.name, plan.class_name, plan.config, [], plan.inner_class, plan.source_layer))
        if plans:
            became = ", ".join(f"{plan.class_name} '{plan.name}'" for plan in plans)
            yield Planned(layer, tensors, function, became, (*layer.source.inferred, *layer.source.notes))

    def open(self, path: Path, weights: Path) -> CheckedFile:
        self.path = path
        return CheckedFile(weights)

    def write(self, stream: CheckedFile, planned: Planned) -> None:
        for name, array in planned.tensors.items():
            stream.append(array, tensor=name)  # read back and compared as it is written
            stream.flush_behind()
            self.written += array.nbytes
            self.specs.append({"name": name, "shape": list(array.shape), "dtype": "float32"})

    def finish(self, stream: CheckedFile) -> None:
        from lstmconv._version import __version__

        stream.close()
        assert self.wiring is not None
        topology = {"keras_version": KERAS2_VERSION, "backend": "tensorflow", "model_config": keras2_model_config(self.plans, self.wiring)}
        model = {
            "format": "layers-model",
            "generatedBy": f"lstmconv {__version__}",
            "convertedBy": f"lstmconv {__version__}",
            "modelTopology": topology,
            "weightsManifest": [{"paths": [weights_path(self.destination).name], "weights": self.specs}],
        }
        self.path.write_text(json.dumps(model))

    def check(self, path: Path, weights: Path) -> None:
        """model.json lists every weight written, and the weights file holds exactly their bytes (each was
        compared with the file as it was written)."""
        listed = json.loads(path.read_text())["weightsManifest"][0]["weights"]
        if [spec["name"] for spec in listed] != [spec["name"] for spec in self.specs]:
            raise VerificationError("model.json does not list the weights written", file=self.destination)
        if (size := weights.stat().st_size) != self.written:
            raise VerificationError(
                "the weights file does not hold the bytes written", file=weights_path(self.destination), expected=self.written, actual=size
            )

    def report(self) -> dict[str, object]:
        return {"written_tensors": len(self.specs)}
