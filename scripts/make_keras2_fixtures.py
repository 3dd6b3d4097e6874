"""Generate the Keras 2 test fixtures with the real tensorflow/tf_keras (run by hand, not in CI).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/make_keras2_fixtures.py

Writes ``tests/data/keras2/<case>.h5`` (saved by tf_keras ``model.save``, or ``save_weights`` for the
weights-only cases) and ``<case>.outputs.npz`` holding what tf_keras itself computes:

* ``<layer>/x``, ``<layer>/y``, ``<layer>/states``: each recurrent layer rebuilt from its own config with
  ``return_sequences=True, return_state=True``, given the saved weights, called on ``x``
  (``RandomState(0)`` standard normal, batch 2, the layer's own input width); ``states`` stacks the
  returned states in Keras order (h[, c] for forward, then backward);
* ``__model__/x``, ``__model__/y``: ``model.predict`` of the whole model (first input/output).

Also writes ``examples/sine_lstm.h5``, the bundled example (first seed article: a sine-wave LSTM + Dense).
Every file records the framework versions in ``versions.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "keras2"
L = keras.layers


def x_for(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.RandomState(0).standard_normal(shape).astype(np.float32)


def sine_data(steps: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    t = np.arange(80 * 20 + 1)
    wave = np.sin(t * (2 * math.pi / 80) + rng.uniform(-1.0, 1.0, t.shape) * 0.05).astype(np.float32)
    xs = np.stack([wave[i : i + steps] for i in range(len(wave) - steps)])[..., None]
    return xs, wave[steps:, None]


def sine_lstm() -> keras.Model:
    # Seed article 1: LSTM(tanh, sigmoid) -> Dense(1) -> Activation('linear'), trained on a noisy sine.
    model = keras.Sequential(
        [
            L.LSTM(12, activation="tanh", recurrent_activation="sigmoid", input_shape=(5, 1)),
            L.Dense(1),
            L.Activation("linear"),
        ]
    )
    model.compile(loss="mean_squared_error", optimizer="rmsprop")
    xs, ys = sine_data()
    model.fit(xs, ys, batch_size=64, epochs=3, verbose=0)
    return model


def char_lstm_sigmoid() -> keras.Model:
    # Seed article 2: LSTM with a sigmoid cell activation and a softmax head (3 chars of context, 11 symbols).
    model = keras.Sequential(
        [
            L.LSTM(16, input_shape=(3, 11), activation="sigmoid", recurrent_activation="sigmoid"),
            L.Dense(11),
            L.Activation("softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="rmsprop")
    rng = np.random.RandomState(1)
    xs = np.eye(11, dtype=np.float32)[rng.randint(0, 11, (256, 3))]
    ys = np.eye(11, dtype=np.float32)[rng.randint(0, 11, 256)]
    model.fit(xs, ys, epochs=1, verbose=0)
    return model


def seq(*layers: keras.layers.Layer, input_shape: tuple[int, ...] = (6, 4)) -> keras.Model:
    model = keras.Sequential([keras.Input(shape=input_shape), *layers])
    randomise(model)
    return model


def randomise(model: keras.Model) -> None:
    # Trained-looking weights: non-zero biases everywhere (initialisers leave most of them at 0).
    rng = np.random.RandomState(42)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])


def functional_two_branches() -> keras.Model:
    a = keras.Input(shape=(6, 4), name="a")
    b = keras.Input(shape=(5, 3), name="b")
    left = L.LSTM(5, name="left_lstm")(a)
    right = L.GRU(4, name="right_gru", reset_after=False)(b)
    merged = L.Concatenate()([left, right])
    out = L.Dense(2, activation="softmax", name="head")(merged)
    model = keras.Model([a, b], out)
    randomise(model)
    return model


def embedding_lstm_dense() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(7,), dtype="int32"),
            L.Embedding(20, 6, name="embed"),
            L.LSTM(5, return_sequences=True, name="encoder"),
            L.Dropout(0.3),
            L.TimeDistributed(L.Dense(3, activation="tanh"), name="per_step"),
        ]
    )
    randomise(model)
    return model


def cudnn(cls_name: str) -> keras.Model:
    cls = getattr(tf.compat.v1.keras.layers, cls_name)
    model = keras.Sequential([keras.Input(shape=(6, 4)), cls(5, return_sequences=True, name=cls_name.lower())])
    randomise(model)
    return model


CASES = {
    "sine_lstm": (sine_lstm, False),
    "char_lstm_sigmoid": (char_lstm_sigmoid, False),
    "lstm_hard_sigmoid": (lambda: seq(L.LSTM(5, recurrent_activation="hard_sigmoid")), False),
    "gru_hard_sigmoid_reset_before": (
        lambda: seq(L.GRU(5, recurrent_activation="hard_sigmoid", reset_after=False, return_sequences=True)),
        False,
    ),
    "stacked_lstm": (lambda: seq(L.LSTM(6, return_sequences=True), L.LSTM(5), L.Dense(2)), False),
    "bidirectional_concat": (lambda: seq(L.Bidirectional(L.LSTM(5, return_sequences=True))), False),
    "bidirectional_sum": (lambda: seq(L.Bidirectional(L.GRU(5, return_sequences=True), merge_mode="sum")), False),
    "bidirectional_mul": (lambda: seq(L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode="mul")), False),
    "bidirectional_ave": (lambda: seq(L.Bidirectional(L.SimpleRNN(5, return_sequences=True), merge_mode="ave")), False),
    "go_backwards_gru": (lambda: seq(L.GRU(5, go_backwards=True, return_sequences=True)), False),
    "go_backwards_lstm": (lambda: seq(L.LSTM(5, go_backwards=True)), False),
    "lstm_no_bias": (lambda: seq(L.LSTM(5, use_bias=False, return_sequences=True)), False),
    "gru_reset_after": (lambda: seq(L.GRU(5, reset_after=True, return_sequences=True)), False),
    "gru_reset_before": (lambda: seq(L.GRU(5, reset_after=False, return_sequences=True)), False),
    "simplernn_relu": (lambda: seq(L.SimpleRNN(5, activation="relu", return_sequences=True)), False),
    "embedding_lstm_dense": (embedding_lstm_dense, False),
    "functional_two_branches": (functional_two_branches, False),
    "weights_only_stacked": (lambda: seq(L.LSTM(6, return_sequences=True), L.GRU(5), L.Dense(2)), True),
    "cudnn_lstm": (lambda: cudnn("CuDNNLSTM"), False),
    "cudnn_gru": (lambda: cudnn("CuDNNGRU"), False),
}


def layer_outputs(model: keras.Model) -> dict[str, np.ndarray]:
    """Each recurrent layer alone, rebuilt from its config, on RandomState(0) input."""
    found: dict[str, np.ndarray] = {}
    for layer in model.layers:
        name = type(layer).__name__
        if name.startswith("CuDNN"):
            # CuDNN layers run only on a GPU: tf_keras's own loader converts their weights into the
            # equivalent plain layer, which is what we record (keras/saving/legacy/hdf5_format.py).
            units = layer.units
            plain = (L.LSTM if name == "CuDNNLSTM" else L.GRU)(
                units, return_sequences=True, return_state=True, recurrent_activation="sigmoid",
                **({"reset_after": True} if name == "CuDNNGRU" else {}),
            )
            from tf_keras.src.saving.legacy import hdf5_format

            weights = hdf5_format.preprocess_weights_for_loading(plain, layer.get_weights(), "2.21.0", "tensorflow")
        else:
            if name not in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
                continue
            config = layer.get_config()
            if name == "Bidirectional":
                config["layer"]["config"].update(return_sequences=True, return_state=True)
                if config.get("backward_layer"):
                    config["backward_layer"]["config"].update(return_sequences=True, return_state=True)
            else:
                config.update(return_sequences=True, return_state=True)
            plain = type(layer).from_config(config)
            weights = layer.get_weights()
        width = layer.input_shape[-1]
        steps = layer.input_shape[1] or 6
        x = x_for((2, steps, width))
        plain(x)  # build
        plain.set_weights(weights)
        result = plain(x)
        y, states = result[0], result[1:]
        if isinstance(y, list):  # merge_mode=None
            y = np.stack([np.asarray(part) for part in y])
        found[f"{layer.name}/x"] = x
        found[f"{layer.name}/y"] = np.asarray(y)
        found[f"{layer.name}/states"] = np.stack([np.asarray(s) for s in states])
    return found


def model_outputs(model: keras.Model) -> dict[str, np.ndarray]:
    if any(type(layer).__name__.startswith("CuDNN") for layer in model.layers):
        return {}  # the CuDNN kernels exist only on GPUs; the per-layer outputs above are the ground truth
    inputs = model.inputs
    xs = []
    for index, tensor in enumerate(inputs):
        shape = (2, *[d or 6 for d in tensor.shape[1:]])
        if tensor.dtype.is_integer:
            xs.append(np.random.RandomState(index).randint(0, 20, shape).astype(np.int32))
        else:
            xs.append(x_for(shape))
    y = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    found = {"__model__/y": np.asarray(y if not isinstance(y, list) else y[0])}
    for index, x in enumerate(xs):
        found[f"__model__/x{index}"] = x
    return found


def main(selected: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"tensorflow": tf.__version__, "tf_keras": keras.__version__, "numpy": np.__version__}
    tf.keras.utils.set_random_seed(0)
    for case, (build, weights_only) in CASES.items():
        if selected and case not in selected:
            continue
        keras.backend.clear_session()
        tf.keras.utils.set_random_seed(0)
        model = build()
        path = OUT / f"{case}.h5"
        if weights_only:
            model.save_weights(str(path))
        else:
            model.save(str(path), save_format="h5", include_optimizer=False)
        expected = {**layer_outputs(model), **model_outputs(model)}
        np.savez_compressed(OUT / f"{case}.outputs.npz", **expected)
        print(f"{case}: {path.stat().st_size} bytes, {len(expected)} arrays")
        if case == "sine_lstm":
            (ROOT / "examples").mkdir(exist_ok=True)
            model.save(str(ROOT / "examples" / "sine_lstm.h5"), save_format="h5", include_optimizer=False)
    (OUT / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
