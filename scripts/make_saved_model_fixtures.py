"""Generate the SavedModel fixtures with the real tensorflow/tf_keras (run by hand, not in CI).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/make_saved_model_fixtures.py

For each case writes ``tests/data/saved_model/<case>/`` (``model.save(dir, save_format="tf", save_traces=False)`` after a
few optimizer steps: ``saved_model.pb``, ``keras_metadata.pb``, ``variables/``; without traces the files are
kilobytes, not megabytes, and lstmconv never reads the traced functions; ``fingerprint.pb`` is not kept) and ``<case>.outputs.npz`` with ``__model__/x`` and
``__model__/y`` (``model.predict``) and, per recurrent layer, ``<layer>/x`` and ``<layer>/y`` (the layer called
on its input). The subclassed model's config is ``{}``: its layers convert one by one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tf_checkpoint_fixtures import prepared, recorded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "saved_model"
L = keras.layers


class Subclassed(keras.Model):
    """A model whose wiring is Python code: LSTM -> SimpleRNN(relu) -> Dense."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = L.LSTM(4, return_sequences=True, name="encoder")
        self.decoder = L.SimpleRNN(3, activation="relu", return_sequences=True, name="decoder")
        self.head = L.Dense(2, name="head")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.head(self.decoder(self.encoder(inputs)))


def cases() -> dict[str, keras.Model]:
    inputs = keras.Input((5, 3), name="x")
    hidden = L.Bidirectional(L.GRU(4, reset_after=False, return_sequences=True), merge_mode="sum", name="bi")(inputs)
    hidden = L.LSTM(3, go_backwards=True, name="lstm")(hidden)
    functional = keras.Model(inputs, L.Dense(2, name="out")(hidden), name="functional")
    subclassed = Subclassed()
    subclassed.build((None, 6, 2))
    return {"functional_bigru": functional, "subclassed": subclassed}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for case, model in cases().items():
        x = prepared(model, model.input_shape[1:] if case != "subclassed" else (6, 2))
        y = model.predict(x, verbose=0)
        model.fit(x, np.zeros_like(y), epochs=2, verbose=0)
        folder = OUT / case
        shutil.rmtree(folder, ignore_errors=True)
        model.save(str(folder), save_format="tf", save_traces=False)
        shutil.rmtree(folder / "assets", ignore_errors=True)
        (folder / "fingerprint.pb").unlink(missing_ok=True)
        layers = model.layers if case != "subclassed" else [model.encoder, model.decoder, model.head]
        np.savez(OUT / f"{case}.outputs.npz", **recorded(model, layers, x[:2]))
    (OUT / "versions.json").write_text(json.dumps({"tensorflow": tf.__version__, "tf_keras": keras.__version__}) + "\n")


if __name__ == "__main__":
    main()
