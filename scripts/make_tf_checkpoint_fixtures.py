"""Generate the TF2 object-based checkpoint fixtures with the real tensorflow/tf_keras (run by hand, not in CI).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/make_tf_checkpoint_fixtures.py

For each case writes into ``tests/data/tf_checkpoint/``: ``<case>.index`` and ``<case>.data-00000-of-00001``
(``model.save_weights(prefix)``, TF format, after a few optimizer steps so the checkpoint also holds optimizer
slots), ``<case>.json`` (``model.to_json()``) and ``<case>.outputs.npz`` with ``__model__/x``, ``__model__/y``
(``model.predict``) and, per recurrent layer, ``<layer>/x`` and ``<layer>/y`` (the layer called on its input).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "tf_checkpoint"
L = keras.layers


def cases() -> dict[str, keras.Model]:
    return {
        "lstm_dense": keras.Sequential([keras.Input((7, 3)), L.LSTM(5, return_sequences=True, name="lstm"), L.Dense(2, name="dense")]),
        "gru_reset_before": keras.Sequential([keras.Input((6, 4)), L.GRU(3, reset_after=False, name="gru"), L.Dense(2, name="out")]),
        "bidirectional_gru": keras.Sequential([keras.Input((5, 3)), L.Bidirectional(L.GRU(4, return_sequences=True), name="bi"), L.Dense(1, name="head")]),
        "stacked_rnn": keras.Sequential([keras.Input((6, 2)), L.SimpleRNN(4, return_sequences=True, activation="relu", name="rnn_a"),
                                         L.LSTM(3, name="lstm_b")]),
    }


def recorded(model: keras.Model, layers: list[keras.layers.Layer], x: np.ndarray) -> dict[str, np.ndarray]:
    """``__model__/x``, ``__model__/y`` (``model.predict``) and, per recurrent layer of ``layers`` (the model's
    layers in call order), ``<layer>/x`` and ``<layer>/y`` (the layer called on its input)."""
    outputs = {"__model__/x": x, "__model__/y": model.predict(x, verbose=0)}
    value = x
    for layer in layers:
        if isinstance(layer, (L.LSTM, L.GRU, L.SimpleRNN, L.Bidirectional)):
            outputs[f"{layer.name}/x"] = value
            outputs[f"{layer.name}/y"] = layer(value).numpy()
        value = layer(value).numpy()
    return outputs


def prepared(model: keras.Model, input_shape: tuple[int, ...]) -> np.ndarray:
    """``model`` given random weights and compiled (Adam: its slots end up in the checkpoint); a random input."""
    tf.keras.utils.set_random_seed(1)
    rng = np.random.RandomState(0)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    model.compile(optimizer="adam", loss="mse")
    return rng.standard_normal((4, *input_shape)).astype(np.float32)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for case, model in cases().items():
        x = prepared(model, model.input_shape[1:])
        model.fit(x, np.zeros((4, *model.output_shape[1:]), np.float32), epochs=2, verbose=0)
        for path in OUT.glob(f"{case}.*"):
            path.unlink()
        model.save_weights(str(OUT / case), save_format="tf")
        (OUT / "checkpoint").unlink(missing_ok=True)
        (OUT / f"{case}.json").write_text(model.to_json())
        np.savez(OUT / f"{case}.outputs.npz", **recorded(model, model.layers, x[:2]))
    (OUT / "versions.json").write_text(json.dumps({"tensorflow": tf.__version__, "tf_keras": keras.__version__}) + "\n")


if __name__ == "__main__":
    main()
