"""The Keras-layout NumPy reference against real Keras 3 (torch backend), and Keras 3 files end to end.

Keras 3 models covering every recurrent feature are built here, saved as ``.keras``, ``.weights.h5``
(with and without the architecture JSON) and legacy ``.h5``, converted to torch by lstmconv, and the
real ``torch.nn`` modules are compared with Keras' own layer outputs.
"""

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
from lstmconv.pipeline.load import load_keras_weights  # noqa: E402
from lstmconv.torch_modules import load_torch_modules  # noqa: E402
from tests.conftest import assert_close  # noqa: E402
from tests.test_keras2_fixtures import _keras_states, _run_torch  # noqa: E402

L = keras.layers


def _randomise(model) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.RandomState(7)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])


def _layer_truth(layer, x: np.ndarray):  # type: ignore[no-untyped-def]
    """Keras' own output of ``layer`` with return_sequences and return_state, same weights."""
    config = layer.get_config()
    if type(layer).__name__ == "Bidirectional":
        for key in ("layer", "backward_layer"):
            if config.get(key):
                config[key]["config"].update(return_sequences=True, return_state=True)
    else:
        config.update(return_sequences=True, return_state=True)
    twin = type(layer).from_config(config)
    twin(x)
    twin.set_weights(layer.get_weights())
    result = [keras.ops.convert_to_numpy(part) for part in twin(x)]
    if config.get("merge_mode", "concat") is None:  # Keras 3 returns forward y, backward y, then states
        return np.stack(result[:2]), result[2:]
    return result[0], result[1:]


CELLS = {
    "lstm": lambda: L.LSTM(5, return_sequences=True),
    "lstm_hard_sigmoid": lambda: L.LSTM(5, recurrent_activation="hard_sigmoid"),
    "lstm_no_bias_go_backwards": lambda: L.LSTM(5, use_bias=False, go_backwards=True),
    "gru_reset_after": lambda: L.GRU(5, reset_after=True),
    "gru_reset_before": lambda: L.GRU(5, reset_after=False, activation="relu"),
    "simple_rnn_relu": lambda: L.SimpleRNN(5, activation="relu"),
    "simple_rnn_elu": lambda: L.SimpleRNN(5, activation="elu"),
    "bidirectional_concat": lambda: L.Bidirectional(L.LSTM(5, return_sequences=True)),
    "bidirectional_sum": lambda: L.Bidirectional(L.GRU(5), merge_mode="sum"),
    "bidirectional_mul": lambda: L.Bidirectional(L.LSTM(5), merge_mode="mul"),
    "bidirectional_ave": lambda: L.Bidirectional(L.SimpleRNN(5), merge_mode="ave"),
    "bidirectional_none": lambda: L.Bidirectional(L.GRU(5, return_sequences=True), merge_mode=None),
}


@pytest.mark.parametrize("case", sorted(CELLS))
def test_reference_matches_keras3_from_get_weights(case: str) -> None:
    layer = CELLS[case]()
    x = np.random.RandomState(0).standard_normal((2, 6, 4)).astype(np.float32)
    model = keras.Sequential([keras.Input((6, 4)), layer])
    _randomise(model)
    truth_y, truth_states = _layer_truth(layer, x)
    cls = type(layer).__name__
    loaded = load_keras_weights(layer.get_weights(), class_name=cls, config=layer.get_config(), keras_version=keras.__version__)
    canonical = loaded.model.recurrent_layers()[0]
    out = loaded.references[canonical.name](x, None)
    y = np.stack(out.y) if isinstance(out.y, tuple) else out.y
    assert_close(y, truth_y, f"{case} y")
    for index, state in enumerate(_keras_states(canonical, out.states)):
        assert_close(state, truth_states[index], f"{case} state {index}")


def test_keras3_hard_sigmoid_is_not_keras2s() -> None:
    from lstmconv.adapters.keras import keras_activation

    assert keras_activation("hard_sigmoid", 3).alpha == pytest.approx(1 / 6)
    assert keras_activation("hard_sigmoid", 2).alpha == pytest.approx(0.2)
    x = np.linspace(-4, 4, 81).astype(np.float32)
    truth = keras.ops.convert_to_numpy(keras.activations.hard_sigmoid(x))
    from lstmconv.activations import apply

    np.testing.assert_allclose(apply(keras_activation("hard_sigmoid", 3), x.astype(np.float64)), truth, atol=1e-6)


def _model_zoo() -> dict[str, keras.Model]:
    def seq(*layers: object, shape: tuple[int, ...] = (6, 4)) -> keras.Model:
        return keras.Sequential([keras.Input(shape), *layers])

    a = keras.Input((6, 4), name="a")
    b = keras.Input((5, 3), name="b")
    joined = L.Concatenate()([L.LSTM(5, name="left")(a), L.GRU(4, name="right")(b)])
    functional = keras.Model([a, b], L.Dense(2, activation="softmax", name="head")(joined))
    return {
        "stacked": seq(L.LSTM(6, return_sequences=True), L.GRU(5, return_sequences=True), L.SimpleRNN(4), L.Dense(2)),
        "bidirectional_all_modes": seq(
            L.Bidirectional(L.LSTM(5, return_sequences=True)),
            L.Bidirectional(L.GRU(5, return_sequences=True), merge_mode="sum"),
            L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode="mul"),
            L.Bidirectional(L.SimpleRNN(5, return_sequences=True), merge_mode="ave"),
        ),
        "go_backwards_no_bias": seq(L.GRU(5, go_backwards=True, return_sequences=True, use_bias=False), L.LSTM(3, go_backwards=True)),
        "embedding_lstm_dense": seq(
            L.Embedding(30, 4), L.LSTM(5, return_sequences=True), L.TimeDistributed(L.Dense(3)), shape=(6,)
        ),
        "functional_two_branches": functional,
    }


@pytest.mark.parametrize("saved_as", [".keras", ".weights.h5", ".weights.h5+config", ".h5"])
@pytest.mark.parametrize("name", sorted(_model_zoo()))
def test_keras3_files_convert_to_torch(name: str, saved_as: str, tmp_path: Path) -> None:
    model = _model_zoo()[name]
    _randomise(model)
    path = tmp_path / f"model{saved_as.split('+')[0]}"
    config = None
    if saved_as == ".keras":
        model.save(path)
    elif saved_as == ".h5":
        model.save(path)  # Keras 3 legacy HDF5
    else:
        model.save_weights(path)
        if saved_as.endswith("+config"):
            config = tmp_path / "model.json"
            config.write_text(model.to_json())
    destination = tmp_path / "out.safetensors"
    lstmconv.convert(path, destination, to="torch", config=config)
    modules = load_torch_modules(destination)
    loaded = lstmconv.load(path, config=config)
    by_name = {layer.name: layer for layer in loaded.model.recurrent_layers()}
    recurrent = [l for l in model.layers if type(l).__name__ in ("LSTM", "GRU", "SimpleRNN", "Bidirectional")]
    assert len(by_name) == len(recurrent)
    for layer in recurrent:
        # Without a config, Keras 3 weights files name layers by their class path (lstm, lstm_1, ...).
        key = layer.name if layer.name in by_name else None
        if key is None:
            pytest.skip("layer names are not stored in this weights file")
        canonical = by_name[key]
        if config is None and saved_as == ".weights.h5":
            # No config in the file: merge_mode and go_backwards are assumed (concat / False) and reported.
            assert any("not stated" in fact or "unknown" in fact for fact in canonical.source.inferred)
            inner = layer.get_config().get("layer", {}).get("config", layer.get_config())
            if layer.get_config().get("merge_mode", "concat") != "concat" or inner.get("go_backwards"):
                continue
        width = layer.input.shape[-1]
        x = np.random.RandomState(0).standard_normal((2, 6, width)).astype(np.float32)
        truth_y, truth_states = _layer_truth(layer, x)
        y, states = _run_torch(modules[key], by_name[key], x)
        assert_close(y, truth_y, f"{name} {key} y")
        for index, state in enumerate(states):
            assert_close(state, truth_states[index], f"{name} {key} state {index}")


def test_keras3_hard_sigmoid_file_is_refused_with_keras3_numbers(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((6, 4)), L.LSTM(5, recurrent_activation="hard_sigmoid")])
    path = tmp_path / "m.keras"
    model.save(path)
    with pytest.raises(RefusedConversionError, match=r"hard_sigmoid\(alpha=0.166667, beta=0.5\)"):
        lstmconv.convert(path, tmp_path / "out.safetensors", to="torch")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("name", sorted(_model_zoo()))
def test_keras3_whole_models_to_onnx_match_predict(name: str, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _model_zoo()[name]
    _randomise(model)
    path = tmp_path / "model.keras"
    model.save(path)
    out = tmp_path / "model.onnx"
    report = lstmconv.convert(path, out, to="onnx")
    assert "whole model" in report.target
    rng = np.random.RandomState(3)
    feeds = []
    for tensor in model.inputs:
        shape = (2, *tensor.shape[1:])
        feeds.append(rng.randint(0, 30, shape).astype("int32") if "int" in str(tensor.dtype) else rng.standard_normal(shape).astype(np.float32))
    truth = keras.ops.convert_to_numpy(model(feeds if len(feeds) > 1 else feeds[0]))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    by_name = {f"input_{t.name}" if len(feeds) > 1 else "input": f for t, f in zip(model.inputs, feeds)}
    y = session.run(None, {n: by_name[n] for n in names})[0]
    assert_close(y, truth, f"{name} whole model (onnxruntime vs Keras 3)")


def test_keras3_hard_sigmoid_to_onnx_uses_keras3_numbers(tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model = keras.Sequential([keras.Input((6, 4)), L.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True)])
    _randomise(model)
    model.save(tmp_path / "m.keras")
    lstmconv.convert(tmp_path / "m.keras", tmp_path / "m.onnx", to="onnx")
    x = np.random.RandomState(0).standard_normal((2, 6, 4)).astype(np.float32)
    y = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert_close(y, keras.ops.convert_to_numpy(model(x)), "Keras 3 hard_sigmoid LSTM")
