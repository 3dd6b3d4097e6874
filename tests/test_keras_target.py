"""The Keras target: files that real Keras 3 loads with its own load_weights and that compute the source."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import lstmconv  # noqa: E402
from lstmconv.errors import RefusedConversionError  # noqa: E402
from tests.conftest import DATA, assert_close, corpus_file  # noqa: E402

L = keras.layers


def _name_nation_model() -> keras.Model:
    # Layer names as the report gives them: the torch prefix, '_l1' for the second torch level.
    return keras.Sequential(
        [
            keras.Input((10, 57)),
            L.Bidirectional(L.LSTM(128, return_sequences=True), name="rnn"),
            L.Bidirectional(L.LSTM(128, return_sequences=True), name="rnn_l1"),
            L.Dense(18, name="fc"),
        ]
    )


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5", ".h5 by name"])
def test_torch_bilstm_state_dict_loads_into_keras3_and_matches_torch(suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"w{suffix.split()[0]}"
    lstmconv.convert(corpus_file("name-nation/bilstm.pt"), out, to="keras")
    model = _name_nation_model()
    model.load_weights(out, **({"by_name": True} if "name" in suffix else {}))
    expected = np.load(str(corpus_file("name-nation/bilstm.pt")) + ".expected.npz")
    recurrent = keras.Sequential([keras.Input((10, 57)), *model.layers[:2]])
    y = keras.ops.convert_to_numpy(recurrent(expected["rnn/x"]))
    assert_close(y, expected["rnn/y"], "torch 2-level BiLSTM in Keras 3")


def test_torch_32_level_gru_becomes_32_keras_layers(tmp_path: Path) -> None:
    out = tmp_path / "w.weights.h5"
    lstmconv.convert(corpus_file("multivariate-lstm/gru.pt"), out, to="keras")
    layers = [L.GRU(32, return_sequences=True, reset_after=True) for _ in range(32)]
    model = keras.Sequential([keras.Input((12, 8)), *layers, L.Dense(8)])
    model.load_weights(out)
    expected = np.load(str(corpus_file("multivariate-lstm/gru.pt")) + ".expected.npz")
    recurrent = keras.Sequential([keras.Input((12, 8)), *model.layers[:32]])
    y = keras.ops.convert_to_numpy(recurrent(expected["gru/x"]))
    assert_close(y, expected["gru/y"], "torch 32-level GRU in Keras 3")


KERAS2_CASES = ["stacked_lstm", "bidirectional_sum", "go_backwards_gru", "lstm_no_bias", "simplernn_relu", "embedding_lstm_dense", "cudnn_lstm"]


@pytest.mark.parametrize("case", KERAS2_CASES)
def test_keras2_files_to_keras3_weights_reproduce_tf_keras(case: str, tmp_path: Path) -> None:
    source = DATA / "keras2" / f"{case}.h5"
    out = tmp_path / "w.weights.h5"
    lstmconv.convert(source, out, to="keras")
    loaded = lstmconv.load(source)
    expected = np.load(DATA / "keras2" / f"{case}.outputs.npz")
    for layer in loaded.model.recurrent_layers():
        # A one-layer Keras 3 model per recurrent layer, same class and config, weights from our file's arrays.
        from lstmconv.sources.keras_files import open_keras

        with open_keras(out) as (_, entries, _w):
            arrays = next(e.load_arrays() for e in entries if e.name == layer.name)
        x = expected[f"{layer.name}/x"]
        config = {"units": layer.hidden_size, "use_bias": layer.use_bias, "return_sequences": True, "go_backwards": layer.go_backwards}
        if layer.cell != "rnn":
            config["recurrent_activation"] = layer.activations.gate.name
        config["activation"] = layer.activations.candidate.name
        if layer.cell == "gru":
            config["reset_after"] = layer.reset_after
        cell = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.SimpleRNN}[layer.cell]
        keras_layer = L.Bidirectional(cell(**config), merge_mode=layer.merge_mode) if layer.bidirectional else cell(**config)
        keras_layer(x)
        keras_layer.set_weights(arrays)
        y = keras.ops.convert_to_numpy(keras_layer(x))
        assert_close(y, expected[f"{layer.name}/y"], f"{case} {layer.name} (Keras 3 with lstmconv's weights)")


def test_keras2_hard_sigmoid_is_refused_for_keras3_but_kept_for_keras2(tmp_path: Path) -> None:
    source = DATA / "keras2" / "lstm_hard_sigmoid.h5"
    with pytest.raises(RefusedConversionError, match=r"Keras 3 has no recurrent_activation computing hard_sigmoid\(alpha=0.2"):
        lstmconv.convert(source, tmp_path / "w.weights.h5", to="keras")
    assert not (tmp_path / "w.weights.h5").exists()
    lstmconv.convert(source, tmp_path / "w.h5", to="keras")
    again = lstmconv.load(tmp_path / "w.h5")
    assert again.model.recurrent_layers()[0].source.version.startswith("2.")


def test_onnx_peepholes_are_refused_for_keras(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    tensors = {
        "W": rng.standard_normal((1, 8, 3)).astype(np.float32),
        "R": rng.standard_normal((1, 8, 2)).astype(np.float32),
        "B": np.zeros((1, 16), np.float32),
        "P": rng.standard_normal((1, 6)).astype(np.float32),
    }
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y"], hidden_size=2, name="peep")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None, None, 2])],
        [numpy_helper.from_array(v, k) for k, v in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, str(tmp_path / "p.onnx"))
    with pytest.raises(RefusedConversionError, match="peephole"):
        lstmconv.convert(tmp_path / "p.onnx", tmp_path / "w.weights.h5", to="keras")
    with pytest.raises(RefusedConversionError, match="peephole"):
        lstmconv.convert(tmp_path / "p.onnx", tmp_path / "w.safetensors", to="torch")


WHOLE = sorted(
    p.name[:-3]
    for p in (DATA / "keras2").glob("*.h5")
    if not p.name.startswith(("cudnn", "weights_only", "lstm_hard_sigmoid", "gru_hard_sigmoid"))
)


@pytest.mark.parametrize("case", WHOLE)
def test_keras2_models_become_complete_keras3_models(case: str, tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    lstmconv.convert(DATA / "keras2" / f"{case}.h5", out, to="keras")
    model = keras.saving.load_model(out)
    expected = np.load(DATA / "keras2" / f"{case}.outputs.npz")
    xs = [expected[k] for k in sorted(k for k in expected if k.startswith("__model__/x"))]
    y = keras.ops.convert_to_numpy(model(xs if len(xs) > 1 else xs[0]))
    assert_close(y, expected["__model__/y"], f"{case}: Keras 3 load_model(.keras) vs tf_keras predict")


def test_keras_archive_needs_wiring(tmp_path: Path) -> None:
    with pytest.raises(lstmconv.errors.UnsupportedFeatureError, match="how the layers connect"):
        lstmconv.convert(corpus_file("name-nation/bilstm.pt"), tmp_path / "m.keras", to="keras")
    assert not (tmp_path / "m.keras").exists()


def test_keras_archive_is_deterministic(tmp_path: Path) -> None:
    for name in ("a.keras", "b.keras"):
        lstmconv.convert(DATA / "keras2" / "stacked_lstm.h5", tmp_path / name, to="keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_onnx_reverse_direction_becomes_keras_go_backwards_with_a_flip(op: str, tmp_path: Path) -> None:
    """ONNX ``direction="reverse"`` (output aligned with input time) is Keras go_backwards=True, whose output
    comes in processing order: flipped back, real Keras 3 reproduces onnxruntime."""
    import onnx

    from tests.onnx_helpers import one_node_model, random_weights, run_ort

    rng = np.random.default_rng(3)
    hidden, features = 4, 3
    inputs = random_weights(op, 1, hidden, features, rng)
    attrs = {"hidden_size": hidden, "direction": "reverse"}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    model = one_node_model(op, inputs, ["X"], attrs)
    source = tmp_path / "reverse.onnx"
    onnx.save(model, source)
    out = tmp_path / "w.weights.h5"
    report = lstmconv.convert(source, out, to="keras")
    assert any("output[:, ::-1]" in note for note in report.layers[0].notes)
    x = rng.normal(size=(5, 2, features)).astype(np.float32)  # [T, B, I]
    expected = run_ort(model, {"X": x})[0][:, 0].transpose(1, 0, 2)  # Y [T, 1, B, H] -> [B, T, H]
    cls = {"LSTM": L.LSTM, "GRU": L.GRU, "RNN": L.SimpleRNN}[op]
    extra = {"reset_after": True} if op == "GRU" else {}
    name = report.layers[0].name
    keras_model = keras.Sequential(
        [keras.Input((5, features)), cls(hidden, return_sequences=True, go_backwards=True, name=name, **extra)]
    )
    keras_model.load_weights(out)
    y = keras.ops.convert_to_numpy(keras_model(x.transpose(1, 0, 2)))
    assert_close(y[:, ::-1], expected, f"ONNX reverse {op} as Keras go_backwards")


@pytest.mark.parametrize("case", ["sine_lstm", "functional_two_branches", "embedding_lstm_dense", "bidirectional_ave"])
def test_legacy_h5_of_a_wired_model_loads_whole_in_keras3_and_predicts_tf_keras(case: str, tmp_path: Path) -> None:
    """The legacy .h5 of a model whose wiring is known is a whole model (model_config + model_weights), as
    tf.keras model.save writes it: Keras 3's legacy loader rebuilds it and reproduces tf_keras's recorded output."""
    out = tmp_path / "m.h5"
    lstmconv.convert(DATA / "keras2" / f"{case}.h5", out, to="keras")
    model = keras.models.load_model(out, compile=False)
    expected = np.load(DATA / "keras2" / f"{case}.outputs.npz")
    inputs = [expected[k] for k in sorted(expected) if k.startswith("__model__/x")]
    y = keras.ops.convert_to_numpy(model(inputs if len(inputs) > 1 else inputs[0]))
    assert_close(y, expected["__model__/y"], f"{case} legacy .h5 in Keras 3")
