"""The three seed articles' models (made and run by real tf_keras; see scripts/make_keras2_fixtures.py).

1. A sine-wave LSTM(tanh, sigmoid) -> Dense -> Activation('linear'): converts to torch, and the torch
   modules reproduce tf_keras' ``model.predict``.
2. A character LSTM with a *sigmoid* cell activation and a softmax head: round-trips bit-exactly through
   the canonical form, the Keras reference reproduces ``model.predict``, and torch refuses it (nn.LSTM
   hard-codes tanh).
3. The gate-order question: Keras stacks i, f, c, o, the same as torch, checked on an LSTM whose forget
   bias (unit_forget_bias) sits in the second block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.activations import apply
from lstmconv.adapters.keras import recurrent_from_canonical
from lstmconv.errors import RefusedConversionError
from lstmconv.schema import ActivationLayer, DenseLayer, RecurrentLayer
from tests.conftest import DATA, ROOT, assert_close

SEEDS = DATA / "keras2"


def _predict_with_references(loaded: lstmconv.pipeline.load.LoadedModel, x: np.ndarray) -> np.ndarray:
    """Run a Sequential model layer by layer with the Keras references (the file's own layout)."""
    value = x.astype(np.float64)
    for layer in loaded.model.layers:
        if isinstance(layer, RecurrentLayer):
            value = loaded.references[layer.name](value, None).y
            if not layer.return_sequences:
                value = value[:, -1]
        elif isinstance(layer, DenseLayer):
            value = loaded.references[layer.name](value, None).y
        elif isinstance(layer, ActivationLayer):
            value = apply(layer.activation, value)
    return value


def test_sine_lstm_converts_and_torch_reproduces_keras_predict(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    expected = np.load(SEEDS / "sine_lstm.outputs.npz")
    out = tmp_path / "sine.safetensors"
    lstmconv.convert(ROOT / "examples" / "sine_lstm.h5", out, to="torch")
    modules = load_torch_modules(out)
    with torch.no_grad():
        sequence, _ = modules["lstm"](torch.from_numpy(expected["__model__/x0"]))
        prediction = modules["dense"](sequence[:, -1]).numpy()
    assert_close(prediction, expected["__model__/y"], "sine predict (torch)")


def test_char_model_reference_reproduces_keras_predict_and_roundtrips() -> None:
    loaded = lstmconv.load(SEEDS / "char_lstm_sigmoid.h5")
    expected = np.load(SEEDS / "char_lstm_sigmoid.outputs.npz")
    assert_close(_predict_with_references(loaded, expected["__model__/x0"]), expected["__model__/y"], "char predict")
    lstm = loaded.model.recurrent_layers()[0]
    assert lstm.activations.candidate.name == "sigmoid" and lstm.activations.cell_output.name == "sigmoid"
    back = recurrent_from_canonical(lstm).forward.arrays
    import h5py

    with h5py.File(SEEDS / "char_lstm_sigmoid.h5") as f:
        group = f["model_weights"]["lstm"]
        stored = [group[n.decode() if isinstance(n, bytes) else n][()] for n in group.attrs["weight_names"]]
    for name, original in zip(("kernel", "recurrent_kernel", "bias"), stored):
        assert back[name].tobytes() == original.tobytes(), f"{name} did not round-trip bit-exactly"


def test_char_model_is_refused_for_torch(tmp_path: Path) -> None:
    with pytest.raises(RefusedConversionError, match="nn.LSTM hard-codes tanh for the candidate"):
        lstmconv.convert(SEEDS / "char_lstm_sigmoid.h5", tmp_path / "c.safetensors", to="torch")
    assert not (tmp_path / "c.safetensors").exists()


def test_in_memory_get_weights_gate_order() -> None:
    """Third seed: a Keras LSTM kernel is i, f, c, o; unit_forget_bias puts ones in the second block."""
    units, rng = 3, np.random.default_rng(0)
    kernel = rng.standard_normal((1, 4 * units)).astype(np.float32)
    recurrent = rng.standard_normal((units, 4 * units)).astype(np.float32)
    bias = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], np.float32)
    config = {"units": units, "name": "lstm_1", "activation": "tanh", "recurrent_activation": "sigmoid"}
    loaded = lstmconv.load_keras_weights([kernel, recurrent, bias], class_name="LSTM", config=config, keras_version="2.1.6")
    layer = loaded.model.recurrent_layers()[0]
    np.testing.assert_array_equal(layer.levels[0].forward.gates["forget"].b_input, np.ones(units))
    state = lstmconv.to_torch_state_dict(loaded)
    np.testing.assert_array_equal(state["lstm_1.bias_ih_l0"], bias)  # torch i, f, g, o: the same order
    np.testing.assert_array_equal(state["lstm_1.weight_ih_l0"], kernel.T)


def test_in_memory_weights_without_gate_activation_assume_the_versions_default() -> None:
    """Keras 2.1 defaulted to hard_sigmoid gates: an unstated config is read that way, said, and refused."""
    units = 2
    weights = [np.zeros((1, 4 * units), np.float32), np.zeros((units, 4 * units), np.float32), np.zeros(4 * units, np.float32)]
    loaded = lstmconv.load_keras_weights(weights, class_name="LSTM", config={"units": units}, keras_version="2.1.6")
    layer = loaded.model.recurrent_layers()[0]
    assert layer.activations.gate is not None and layer.activations.gate.alpha == pytest.approx(0.2)
    assert any("recurrent_activation=hard_sigmoid" in fact for fact in layer.source.inferred)
    with pytest.raises(RefusedConversionError, match="hard_sigmoid"):
        lstmconv.to_torch_state_dict(loaded)
