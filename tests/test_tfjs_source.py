"""TensorFlow.js layers models (``model.json`` + shards) as a source: read as tfjs reads them, converted exactly.

Judges: the corpus's tfjs models with outputs recorded by real ``@tensorflow/tfjs`` 4.22 in Node
(``../shared/corpus``, skipped without it), and tfjs models written here from the committed tf_keras fixtures
(their weights and config as the tfjs converter lays them out, shards cut across weights) against the outputs
tf_keras recorded for those fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from tests.conftest import DATA, assert_close, corpus_file
from tests.tfjs_helpers import tfjs_predict
from tests.tfjs_helpers import write_tfjs as _write_tfjs

onnxruntime = pytest.importorskip("onnxruntime")

CORPUS = ["colorbot-lstm-tfjs/model_js/model.json", "nietzsche-lstm-tfjs/lstm/model.json"]
FIXTURES = ["sine_lstm", "stacked_lstm", "bidirectional_concat", "embedding_lstm_dense", "go_backwards_lstm",
            "lstm_hard_sigmoid", "gru_reset_before", "simplernn_relu", "functional_two_branches"]


def _session(path: Path):  # type: ignore[no-untyped-def]
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _feeds(session, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    feeds = {}
    for item, x in zip(session.get_inputs(), inputs, strict=True):
        feeds[item.name] = x.astype(np.int64 if "int64" in item.type else np.int32 if "int32" in item.type else np.float32)
    return feeds


def _scaled(actual: np.ndarray, expected: np.ndarray, what: str, sensitivity: float = 0.0) -> None:
    """Within 1e-5 of the output's scale (float32 rounding of two runtimes), or within twice what float32
    rounding alone changes in this very computation (``sensitivity``: the reference in float32 against float64;
    a hard_sigmoid LSTM near its clip points turns one rounding into 1e-4), whichever is larger."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, atol=max(1e-5 * scale, 2 * sensitivity), rtol=1e-5, err_msg=what)


@pytest.mark.parametrize("relative", CORPUS)
def test_corpus_tfjs_layer_reads_as_tfjs_computes_it(relative: str) -> None:
    source = corpus_file(relative)
    expected = np.load(str(source) + ".expected.npz")
    loaded = lstmconv.load(source)
    (name,) = {key.split("/")[0] for key in expected.files if not key.startswith("@")}
    x = expected[f"{name}/x"]
    out = loaded.references[name](x.astype(np.float64), None)
    rounding = float(np.abs(loaded.references[name](x.astype(np.float32), None).y - out.y).max())
    _scaled(out.y, expected[f"{name}/y"], f"{name} y", rounding)
    (h, c), = out.states[0]
    _scaled(h, expected[f"{name}/h"], f"{name} h", rounding)
    _scaled(c, expected[f"{name}/c"], f"{name} c", rounding)


@pytest.mark.parametrize("relative", CORPUS)
def test_corpus_tfjs_model_to_onnx_predicts_what_tfjs_predicted(relative: str, tmp_path: Path) -> None:
    source = corpus_file(relative)
    expected = np.load(str(source) + ".expected.npz")
    out = tmp_path / "m.onnx"
    report = lstmconv.convert(source, out)
    assert "whole model" in report.target
    session = _session(out)
    (y,) = session.run(None, _feeds(session, [expected["@model/x"]]))
    loaded = lstmconv.load(source)
    rounding = float(np.abs(_chain(loaded, expected["@model/x"], np.float32) - _chain(loaded, expected["@model/x"], np.float64)).max())
    _scaled(y, expected["@model/y"], f"{relative} whole model in onnxruntime", rounding)


def _chain(loaded, x: np.ndarray, dtype: type) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A Sequential model's output from the source references, layer after layer, in ``dtype``."""
    value = x
    for layer in loaded.model.layers:
        if layer.name in loaded.references:
            value = loaded.references[layer.name](np.asarray(value, dtype=dtype), None).y
        elif hasattr(layer, "weight"):  # Embedding: the table looked up
            value = np.asarray(layer.weight, dtype=dtype)[np.asarray(value)]
    return np.asarray(value)


@pytest.mark.parametrize("relative", CORPUS)
def test_corpus_tfjs_lstm_to_torch_matches_tfjs(relative: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    source = corpus_file(relative)
    expected = np.load(str(source) + ".expected.npz")
    out = tmp_path / "m.safetensors"
    (name,) = {key.split("/")[0] for key in expected.files if not key.startswith("@")}
    if "hard_sigmoid" in lstmconv.inspect(source).summaries[name]:
        with pytest.raises(lstmconv.LstmconvError, match="hard-codes sigmoid gates"):
            lstmconv.convert(source, out)
        return
    lstmconv.convert(source, out)
    module = load_torch_modules(out)[name]
    with torch.no_grad():
        y, (h, c) = module(torch.from_numpy(expected[f"{name}/x"]))
    _scaled(y.numpy(), expected[f"{name}/y"], "torch y")
    _scaled(h[-1].numpy(), expected[f"{name}/h"], "torch h")
    _scaled(c[-1].numpy(), expected[f"{name}/c"], "torch c")


# ---------------------------------------------------------------------------------------------------
# tfjs models written from the tf_keras fixtures


@pytest.mark.parametrize("case", FIXTURES)
def test_a_tfjs_export_of_a_fixture_converts_to_what_tf_keras_predicted(case: str, tmp_path: Path) -> None:
    model = _write_tfjs(DATA / "keras2" / f"{case}.h5", tmp_path)
    out = tmp_path / "m.onnx"
    lstmconv.convert(model, out)
    expected = np.load(DATA / "keras2" / f"{case}.outputs.npz")
    session = _session(out)
    inputs = [expected[f"__model__/x{k}"] for k in range(len(session.get_inputs()))]
    assert_close(session.run(None, _feeds(session, inputs))[0], expected["__model__/y"], f"{case} from tfjs")
    assert lstmconv.verify(DATA / "keras2" / f"{case}.h5", model).same


def test_quantized_weights_are_decoded_as_tfjs_decodes_them(tmp_path: Path) -> None:
    """uint8: ``q * scale + min`` in double precision, then float32 (tfjs-core io_utils.decodeWeight);
    float16: widened exactly."""
    model = _write_tfjs(DATA / "keras2" / "sine_lstm.h5", tmp_path, shard_bytes=10**9)
    manifest = json.loads(model.read_text())
    kernel = manifest["weightsManifest"][0]["weights"][0]
    assert kernel["name"].endswith("kernel")
    count = int(np.prod(kernel["shape"]))
    shard = tmp_path / manifest["weightsManifest"][0]["paths"][0]
    data = shard.read_bytes()
    codes = np.arange(count, dtype=np.uint8) * 7
    kernel["quantization"] = {"dtype": "uint8", "min": -0.731, "scale": 0.0123}
    shard.write_bytes(codes.tobytes() + data[4 * count :])
    model.write_text(json.dumps(manifest))
    layer = lstmconv.load(model).model.layers[0]
    expected_kernel = np.float32(codes.astype(np.float64) * 0.0123 - 0.731)  # JS numbers are doubles
    w_input = np.concatenate([layer.levels[0].forward.gates[g].w_input for g in ("input", "forget", "cell", "output")])
    assert np.array_equal(w_input.T, expected_kernel.reshape(kernel["shape"]))
    halves = np.linspace(-2, 2, count).astype(np.float16)
    kernel["quantization"] = {"dtype": "float16"}
    shard.write_bytes(halves.tobytes() + data[4 * count :])
    model.write_text(json.dumps(manifest))
    layer = lstmconv.load(model).model.layers[0]
    w_input = np.concatenate([layer.levels[0].forward.gates[g].w_input for g in ("input", "forget", "cell", "output")])
    assert np.array_equal(w_input.T, halves.astype(np.float32).reshape(kernel["shape"]))
    _predicts_as_tfjs(model, tmp_path)
    kernel["quantization"] = {"dtype": "uint8", "min": -0.731, "scale": 0.0123}
    shard.write_bytes(codes.tobytes() + data[4 * count :])
    model.write_text(json.dumps(manifest))
    _predicts_as_tfjs(model, tmp_path)


def _predicts_as_tfjs(model: Path, work: Path) -> None:
    """The judge: real tfjs loads the quantized model.json, and lstmconv's ONNX of it predicts the same."""
    x = np.load(DATA / "keras2" / "sine_lstm.outputs.npz")["__model__/x0"]
    (expected,) = tfjs_predict(model, [x], work)
    out = work / "quantized.onnx"
    lstmconv.convert(model, out, force=True)
    assert_close(_session(out).run(None, _feeds(_session(out), [x]))[0], expected, "quantized model, tfjs vs lstmconv")


def test_what_tfjs_cannot_load_is_refused(tmp_path: Path) -> None:
    model = _write_tfjs(DATA / "keras2" / "gru_reset_after.h5", tmp_path)
    with pytest.raises(UnsupportedFeatureError, match="reset_after=True: tfjs 4.22 cannot build"):
        lstmconv.load(model)
    manifest = json.loads(model.read_text())
    manifest["modelTopology"]["keras_version"] = "3.6.0"
    model.write_text(json.dumps(manifest))
    with pytest.raises(UnsupportedFeatureError, match="Keras 3 model config"):
        lstmconv.load(model)


def test_damaged_manifests_are_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    model = _write_tfjs(DATA / "keras2" / "sine_lstm.h5", tmp_path)
    good = json.loads(model.read_text())
    cases = {
        "leaves the model's folder": lambda m: m["weightsManifest"][0]["paths"].__setitem__(0, "../x"),
        "fewer bytes than the weights": lambda m: m["weightsManifest"][0]["weights"][0].__setitem__("shape", [10**6]),
        "unknown quantization": lambda m: m["weightsManifest"][0]["weights"][0].__setitem__("quantization", {"dtype": "int4"}),
        "weights of no layer": lambda m: m["weightsManifest"][0]["weights"][0].__setitem__("name", "nothing/kernel"),
        "not a list of sizes": lambda m: m["weightsManifest"][0]["weights"][0].__setitem__("shape", [-1]),
    }
    for message, damage in cases.items():
        manifest = json.loads(json.dumps(good))
        damage(manifest)
        model.write_text(json.dumps(manifest))
        with pytest.raises(InputFormatError, match=message):
            lstmconv.load(model)
    model.write_text("{not json")
    with pytest.raises(InputFormatError):
        lstmconv.load(model, source_format="tfjs")
