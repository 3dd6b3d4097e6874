"""ONNX files where tf2onnx wrote a Keras SimpleRNN or GRU as a ``Loop``: read as the fused node they compute.

Judges: tf_keras 2.21's own outputs of each layer, recorded by ``scripts/make_tf2onnx_fixtures.py`` (tf2onnx 1.17),
reproduced by the layers lstmconv reads, written as fused ONNX nodes (onnxruntime), torch.nn and TFLite (LiteRT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import UnsupportedFeatureError
from tests.conftest import DATA, assert_close

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

FIXTURES = DATA / "tf2onnx"
CASES = {  # case -> the targets that compute it
    "rnn_relu_loop": ("onnx", "torch", "tflite"),
    "rnn_stacked_loop": ("onnx", "torch", "tflite"),
    "gru_reset_before_loop": ("onnx", "tflite"),  # reset before the product: not nn.GRU
    "gru_hard_sigmoid_loop": ("onnx", "tflite"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tf2onnx_loops_read_as_the_layers_tf_keras_ran(case: str, tmp_path: Path) -> None:
    source = FIXTURES / f"{case}.onnx"
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    loaded = lstmconv.load(source)
    layers = loaded.model.recurrent_layers()
    assert layers and all(any("Loop" in note for note in layer.source.notes) for layer in layers)
    for index, layer in enumerate(layers):
        x, y = expected[f"{index}/x"], expected[f"{index}/y"]
        assert_close(loaded.references[layer.name](x, None).y, y, f"{case} {layer.name} reference")
        if "onnx" in CASES[case]:
            lstmconv.convert(source, tmp_path / "m.onnx", force=True)
            session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
            feeds = {i.name: (x if i.name == f"{layer.name}.x" else np.zeros((2, 6, int(i.shape[2])), np.float32)) for i in session.get_inputs()}
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
            assert_close(outputs[f"{layer.name}.y"], y, f"{case} {layer.name} as a fused ONNX node")
        if "torch" in CASES[case]:
            torch = pytest.importorskip("torch")
            from lstmconv.torch_modules import load_torch_modules

            lstmconv.convert(source, tmp_path / "m.safetensors", force=True)
            with torch.no_grad():
                torch_y, _ = load_torch_modules(tmp_path / "m.safetensors")[layer.name](torch.from_numpy(x))
            assert_close(torch_y.numpy(), y, f"{case} {layer.name} in torch.nn")
        if "tflite" in CASES[case]:
            pytest.importorskip("ai_edge_litert.interpreter")
            from tests.tflite_helpers import run_examples

            lstmconv.convert(source, tmp_path / "m.tflite", force=True)
            litert = pytest.importorskip("ai_edge_litert.interpreter")
            widths = {d["name"]: int(d["shape"][-1]) for d in litert.Interpreter(model_path=str(tmp_path / "m.tflite")).get_input_details()}
            feeds = {n: (x if n == f"{layer.name}.x" else np.zeros((2, 6, w), np.float32)) for n, w in widths.items()}
            for out in run_examples(tmp_path / "m.tflite", feeds):
                assert_close(out[f"{layer.name}.y"], y, f"{case} {layer.name} in LiteRT")


def test_a_loop_no_reading_reproduces_is_refused_saying_why(tmp_path: Path) -> None:
    """The same Loop with its relu made a softplus: no SimpleRNN or GRU the evaluator runs computes it."""
    model = onnx.load(FIXTURES / "rnn_relu_loop.onnx")
    loop = next(node for node in model.graph.node if node.op_type == "Loop")
    body = next(a.g for a in loop.attribute if a.name == "body")
    next(node for node in body.node if node.op_type == "Relu").op_type = "Softplus"
    onnx.save(model, tmp_path / "softplus.onnx")
    with pytest.raises(UnsupportedFeatureError, match="no Loop lstmconv reads as one.*Softplus"):
        lstmconv.load(tmp_path / "softplus.onnx")
    next(node for node in body.node if node.op_type == "Softplus").op_type = "Sigmoid"  # runs, but is another cell
    for node in body.node:
        if node.op_type == "Add" and len(node.output) == 1 and "BiasAdd" in node.output[0]:
            node.op_type = "Sub"  # x W - b: no reading of these weights
    onnx.save(model, tmp_path / "other.onnx")
    with pytest.raises(UnsupportedFeatureError, match="no SimpleRNN or GRU reading"):
        lstmconv.load(tmp_path / "other.onnx")
