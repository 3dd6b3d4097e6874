"""SavedModel directories written by tf.keras 2 (``model.save(dir)``) as a source, read without TensorFlow.

Judges: fixtures written by real tf_keras 2.21 (``scripts/make_saved_model_fixtures.py``) with their recorded
``predict`` outputs, and the corpus's six SavedModels (TF 2.4 without ``keras_metadata.pb``, 2.6, 2.7, 2.11 with a
subclassed model) with outputs recorded by tf_keras (``../shared/corpus``, skipped without it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import ConfigError, InputFormatError, UnsupportedFeatureError
from tests.conftest import DATA, assert_close, corpus_file

onnxruntime = pytest.importorskip("onnxruntime")

FIXTURES = DATA / "saved_model"
CORPUS = {
    "genre-savedmodel/lstm_model": ["lstm", "lstm_1"],
    "genre-savedmodel/gru_model": ["gru", "gru_1"],
    "msft-rnn-savedmodel/lstm_model": ["lstm_5"],
    "msft-rnn-savedmodel/gru_model": ["gru_3"],
    "rongorongo-lstm-savedmodel/lstm": ["bidirectional"],  # TF 2.4: the configs only in saved_model.pb
    "lstm-autoencoder-savedmodel/lstm_model": ["lstm_8", "lstm_9", "lstm_10", "lstm_11"],  # subclassed
}


def _predict(model: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _layer_y(loaded: lstmconv.Loaded, name: str, x: np.ndarray, recorded: np.ndarray) -> np.ndarray:
    y = loaded.references[name](x, None).y
    return y if y.ndim == recorded.ndim else y[:, -1]


def test_a_functional_savedmodel_converts_whole_to_what_tf_keras_predicted(tmp_path: Path) -> None:
    expected = np.load(FIXTURES / "functional_bigru.outputs.npz")
    report = lstmconv.convert(FIXTURES / "functional_bigru", tmp_path / "m.onnx")
    assert "whole model" in report.target and report.source.endswith("saved_model.pb")
    assert_close(_predict(tmp_path / "m.onnx", expected["__model__/x"]), expected["__model__/y"], "whole model")
    loaded = lstmconv.load(FIXTURES / "functional_bigru" / "saved_model.pb")
    for name in ("bi", "lstm"):
        layer = next(layer for layer in loaded.model.layers if layer.name == name)
        assert not layer.source.inferred and layer.source.framework == "saved-model"
        assert_close(_layer_y(loaded, name, expected[f"{name}/x"], expected[f"{name}/y"]), expected[f"{name}/y"], name)


def test_a_subclassed_model_converts_layer_by_layer_and_whole_from_a_stated_architecture(tmp_path: Path) -> None:
    """Its config is ``{}`` and its wiring is Python code: each layer converts with its own stored config (the
    SimpleRNN's relu included); the whole model converts when ``--config`` states the architecture."""
    expected = np.load(FIXTURES / "subclassed.outputs.npz")
    report = lstmconv.convert(FIXTURES / "subclassed", tmp_path / "layers.onnx")
    assert "per layer" in report.target
    loaded = lstmconv.load(FIXTURES / "subclassed")
    for name in ("encoder", "decoder"):
        assert_close(_layer_y(loaded, name, expected[f"{name}/x"], expected[f"{name}/y"]), expected[f"{name}/y"], name)
    configs = {layer.name: layer for layer in loaded.model.layers}
    assert configs["decoder"].activations.candidate.name == "relu"
    stated = {"class_name": "Sequential", "keras_version": "2.21.0", "config": {"name": "stated", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, None, 2], "dtype": "float32", "name": "x"}},
        {"class_name": "LSTM", "config": {"name": "encoder", "units": 4, "return_sequences": True}},
        {"class_name": "SimpleRNN", "config": {"name": "decoder", "units": 3, "activation": "relu", "return_sequences": True}},
        {"class_name": "Dense", "config": {"name": "head", "units": 2}},
    ]}}
    (tmp_path / "model.json").write_text(json.dumps(stated))
    report = lstmconv.convert(FIXTURES / "subclassed", tmp_path / "whole.onnx", config=tmp_path / "model.json")
    assert "whole model" in report.target
    assert_close(_predict(tmp_path / "whole.onnx", expected["__model__/x"]), expected["__model__/y"], "whole model")


def test_src_may_be_the_folder_or_its_saved_model_pb_and_from_names_it(tmp_path: Path) -> None:
    folder = FIXTURES / "functional_bigru"
    by_folder = lstmconv.load(folder).model.layers
    by_file = lstmconv.load(folder / "saved_model.pb", source_format="saved-model").model.layers
    assert [layer.name for layer in by_folder] == [layer.name for layer in by_file] == ["bi", "lstm", "out"]


def test_a_missing_or_damaged_keras_metadata_is_refused_saying_which_file(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "functional_bigru", folder)
    metadata = folder / "keras_metadata.pb"
    metadata.write_bytes(metadata.read_bytes()[:3000])
    with pytest.raises(InputFormatError, match="keras_metadata.pb: cannot read"):
        lstmconv.load(folder)
    metadata.unlink()  # tf.keras 2.5+ keeps the configs only there: without it, --config says what they were
    with pytest.raises(InputFormatError, match="keras_metadata.pb: the Keras metadata of this SavedModel is missing"):
        lstmconv.load(folder)
    expected = np.load(FIXTURES / "functional_bigru.outputs.npz")
    stated = {"class_name": "Functional", "keras_version": "2.21.0", "config": {"name": "f", "layers": [
        {"class_name": "InputLayer", "name": "x", "config": {"batch_input_shape": [None, 5, 3], "dtype": "float32", "name": "x"}, "inbound_nodes": []},
        {"class_name": "Bidirectional", "name": "bi", "config": {"name": "bi", "merge_mode": "sum", "layer": {"class_name": "GRU", "config": {
            "name": "gru", "units": 4, "reset_after": False, "return_sequences": True}}}, "inbound_nodes": [[["x", 0, 0, {}]]]},
        {"class_name": "LSTM", "name": "lstm", "config": {"name": "lstm", "units": 3, "go_backwards": True}, "inbound_nodes": [[["bi", 0, 0, {}]]]},
        {"class_name": "Dense", "name": "out", "config": {"name": "out", "units": 2}, "inbound_nodes": [[["lstm", 0, 0, {}]]]},
    ], "input_layers": [["x", 0, 0]], "output_layers": [["out", 0, 0]]}}
    (tmp_path / "model.json").write_text(json.dumps(stated))
    lstmconv.convert(folder, tmp_path / "m.onnx", config=tmp_path / "model.json")
    assert_close(_predict(tmp_path / "m.onnx", expected["__model__/x"]), expected["__model__/y"], "stated whole model")
    stated["config"]["layers"][2]["config"]["name"] = stated["config"]["layers"][2]["name"] = "other"
    (tmp_path / "model.json").write_text(json.dumps(stated))
    with pytest.raises(ConfigError, match="not in the model config"):
        lstmconv.load(folder, config=tmp_path / "model.json")


def test_a_savedmodel_tf_keras_did_not_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "module"
    shutil.copytree(FIXTURES / "functional_bigru", folder)
    (folder / "keras_metadata.pb").write_bytes(b"")  # no objects: nothing says what the root is
    with pytest.raises(UnsupportedFeatureError, match="did not write"):
        lstmconv.load(folder)


@pytest.mark.parametrize("relative", sorted(CORPUS))
def test_corpus_savedmodels_reproduce_tf_keras(relative: str, tmp_path: Path) -> None:
    folder = corpus_file(relative)
    expected = np.load(str(corpus_file(relative + ".expected.npz")))
    loaded = lstmconv.load(folder)
    assert not any(layer.source.inferred for layer in loaded.model.layers)  # every config is stored
    for name in CORPUS[relative]:
        recorded = expected[f"{name}/y"]
        assert_close(_layer_y(loaded, name, expected[f"{name}/x"], recorded), recorded, f"{relative} {name}")
    report = lstmconv.convert(folder, tmp_path / "m.onnx")
    if relative.startswith("lstm-autoencoder"):
        assert "per layer" in report.target  # subclassed: its call is traced code, never read
        return
    assert "whole model" in report.target
    x = expected["@model/x"].astype(np.float32)  # rongorongo's model takes its ids as float32, as it was built
    assert_close(_predict(tmp_path / "m.onnx", x), expected["@model/y"], f"{relative} whole model")
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    name = CORPUS[relative][0]
    if name == "bidirectional":
        return  # a Bidirectional's torch module is checked on the Keras files
    lstmconv.convert(folder, tmp_path / "m.safetensors")
    module = load_torch_modules(tmp_path / "m.safetensors")[name]
    with torch.no_grad():
        y, _ = module(torch.from_numpy(expected[f"{name}/x"]))
    assert_close(y.numpy(), expected[f"{name}/y"], f"{relative} torch {name}")
