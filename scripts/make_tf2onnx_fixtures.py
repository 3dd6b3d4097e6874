"""Generate ONNX files written by tf2onnx from real tf_keras models (run by hand, not in CI).

    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 tf2onnx
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/make_tf2onnx_fixtures.py [case ...]

Writes ``tests/data/tf2onnx/<case>.onnx`` (``tf2onnx.convert.from_keras``) and ``<case>.outputs.npz`` with
tf_keras' own outputs of each recurrent layer, in model order (``<k>/x``, ``<k>/y``, ``<k>/states``; see
``make_keras2_fixtures.layer_outputs``), plus the tf2onnx version in ``versions.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from make_keras2_fixtures import L, keras, layer_outputs, seq  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tf2onnx"

CASES = {
    "lstm_stacked": lambda: seq(L.LSTM(6, return_sequences=True), L.LSTM(5, return_sequences=True)),
    "gru_bidirectional": lambda: seq(L.Bidirectional(L.GRU(5, return_sequences=True))),
    "lstm_go_backwards": lambda: seq(L.LSTM(5, return_sequences=True, go_backwards=True)),
    "lstm_hard_sigmoid": lambda: seq(L.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid")),
    # tf2onnx has no fused op for these: it writes the recurrence as a Loop of plain ops
    "rnn_relu_loop": lambda: seq(L.SimpleRNN(5, return_sequences=True, activation="relu")),
    "rnn_stacked_loop": lambda: seq(L.SimpleRNN(6, return_sequences=True), L.SimpleRNN(5, return_sequences=True)),
    "gru_reset_before_loop": lambda: seq(L.GRU(5, return_sequences=True, reset_after=False)),
    "gru_hard_sigmoid_loop": lambda: seq(L.GRU(5, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid")),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for case, build in CASES.items():
        if sys.argv[1:] and case not in sys.argv[1:]:
            continue
        keras.backend.clear_session()
        tf.keras.utils.set_random_seed(0)
        model = build()
        spec = (tf.TensorSpec((None, 6, 4), tf.float32, name="input"),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
        (OUT / f"{case}.onnx").write_bytes(proto.SerializeToString())
        outputs = layer_outputs(model)
        renamed = {}
        names = [layer.name for layer in model.layers if f"{layer.name}/x" in outputs]
        for index, name in enumerate(names):
            for key in ("x", "y", "states"):
                renamed[f"{index}/{key}"] = outputs[f"{name}/{key}"]
        np.savez_compressed(OUT / f"{case}.outputs.npz", **renamed)
        ops = sorted({n.op_type for n in proto.graph.node})
        print(case, ops)
    (OUT / "versions.json").write_text(
        json.dumps({"tensorflow": tf.__version__, "tf_keras": keras.__version__, "tf2onnx": tf2onnx.__version__}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
