"""Generate the TF1 checkpoint fixtures with the real tensorflow (run by hand, not in CI).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/make_tf1_checkpoint_fixtures.py

Each case builds ``tf.compat.v1.nn.rnn_cell`` cells run by ``tf.compat.v1.nn.dynamic_rnn`` in a graph-mode
Session, with control flow v1 (the loop's ops in the graph) or v2 (in the library's while-body functions), gives
every variable random values and saves them with ``tf.compat.v1.train.Saver`` into ``tests/data/tf1_checkpoint/``:
``<case>.index``, ``<case>.data-00000-of-00001`` and ``<case>.meta`` (the graph). ``<case>.outputs.npz`` holds,
per cell scope, ``<scope>/x``, ``<scope>/y`` (the cell's outputs over time) and ``<scope>/h`` (and ``/c`` for
LSTM cells: the final state), and for a ``MultiRNNCell`` its scope with ``h``/``c`` stacked (batch, cells, units).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "tf1_checkpoint"
v1 = tf.compat.v1
rnn = v1.nn.rnn_cell

#: case -> (control flow v2, time steps, input width, cells builder, train with Adam first)
CASES = {
    "lstm_peephole_proj": (False, 6, 3, lambda: rnn.LSTMCell(5, use_peepholes=True, num_proj=3, forget_bias=0.5), False),
    "lstm_projection": (True, 5, 3, lambda: rnn.LSTMCell(4, num_proj=2), False),
    "lstm_peephole": (False, 5, 3, lambda: rnn.LSTMCell(4, use_peepholes=True), False),
    "gru": (True, 5, 4, lambda: rnn.GRUCell(4), False),
    "basic_rnn_relu": (True, 7, 2, lambda: rnn.BasicRNNCell(6, activation=tf.nn.relu), True),
    "multi_basic_lstm": (False, 5, 3, lambda: rnn.MultiRNNCell([rnn.BasicLSTMCell(4, forget_bias=2.0) for _ in range(2)]), False),
    "lstm_softsign": (True, 5, 3, lambda: rnn.LSTMCell(4, activation=tf.nn.softsign), False),
    "lstm_cell_clip": (False, 5, 3, lambda: rnn.LSTMCell(4, cell_clip=0.5), False),
    # bidirectional_dynamic_rnn: a forward and a backward cell under fw/ and bw/
    "bidirectional_lstm": (True, 5, 3, lambda: (rnn.LSTMCell(4), rnn.LSTMCell(4)), False),
}


def _randomised(session: v1.Session, rng: np.random.RandomState, shape: tuple[int, ...]) -> np.ndarray:
    """Every variable given uniform random values; a random input of ``shape``."""
    session.run(v1.global_variables_initializer())
    for variable in v1.trainable_variables():
        variable.load(rng.uniform(-0.7, 0.7, variable.shape).astype(np.float32), session)
    return rng.standard_normal(shape).astype(np.float32)


def build(case: str) -> None:
    control_v2, steps, width, make, train = CASES[case]
    if not control_v2:
        v1.disable_control_flow_v2()
    v1.disable_eager_execution()
    rng = np.random.RandomState(0)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, steps, width), name="x")
        cell = make()
        if isinstance(cell, tuple):  # (forward, backward): the outputs are the pair, both in input time order
            (y_fw, y_bw), (s_fw, s_bw) = v1.nn.bidirectional_dynamic_rnn(cell[0], cell[1], x, dtype=tf.float32)
            saver = v1.train.Saver()
            with v1.Session(graph=graph) as session:
                feed = _randomised(session, rng, (2, steps, width))
                values = session.run({"fw": y_fw, "bw": y_bw, "h_fw": s_fw.h, "h_bw": s_bw.h}, {x: feed})
                saver.save(session, str(OUT / case), write_state=False)
            name = "bidirectional_rnn"
            np.savez(OUT / f"{case}.outputs.npz", **{f"{name}/x": feed, f"{name}/y_forward": values["fw"],
                                                    f"{name}/y_backward": values["bw"], f"{name}/h_forward": values["h_fw"],
                                                    f"{name}/h_backward": values["h_bw"]})
            return
        y, state = v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
        if train:
            loss = tf.reduce_mean(tf.square(y))
            v1.train.AdamOptimizer(0.01).minimize(loss)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            feed = _randomised(session, rng, (2, steps, width))
            outputs: dict[str, np.ndarray] = {}
            cells = cell._cells if isinstance(cell, rnn.MultiRNNCell) else [cell]
            values = session.run({"y": y, "state": state}, {x: feed})
            scope = "rnn/multi_rnn_cell" if isinstance(cell, rnn.MultiRNNCell) else None
            if scope is not None:
                outputs[f"{scope}/x"], outputs[f"{scope}/y"] = feed, values["y"]
                outputs[f"{scope}/h"] = np.stack([s.h for s in values["state"]], axis=1)
                outputs[f"{scope}/c"] = np.stack([s.c for s in values["state"]], axis=1)
            else:
                name = "rnn/" + {"LSTMCell": "lstm_cell", "GRUCell": "gru_cell", "BasicRNNCell": "basic_rnn_cell"}[type(cells[0]).__name__]
                outputs[f"{name}/x"], outputs[f"{name}/y"] = feed, values["y"]
                final = values["state"]
                if hasattr(final, "h"):
                    outputs[f"{name}/h"], outputs[f"{name}/c"] = final.h, final.c
                else:
                    outputs[f"{name}/h"] = final
            prefix = OUT / case
            saver.save(session, str(prefix), write_state=False)
            np.savez(OUT / f"{case}.outputs.npz", **outputs)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 1:
        build(sys.argv[1])
        return
    for case in CASES:  # one process per case: control flow v1/v2 is a process-wide switch
        for old in OUT.glob(f"{case}.*"):
            old.unlink()
        subprocess.run([sys.executable, __file__, case], check=True)
    (OUT / "versions.json").write_text(json.dumps({"tensorflow": tf.__version__}) + "\n")
    write_ml5(OUT / "multi_basic_lstm", ROOT / "tests" / "data" / "ml5")


def write_ml5(prefix: Path, folder: Path) -> None:
    """The checkpoint's variables dumped as ml5's training script dumps them: ``manifest.json`` and one raw
    little-endian float32 file per variable (``tf.train.load_checkpoint``), pre-TF 1.2 names as some ml5 models
    have (``weights``/``biases``). The judge of this fixture is ml5's runtime, real tfjs in Node."""
    folder.mkdir(parents=True, exist_ok=True)
    reader = tf.train.load_checkpoint(str(prefix))
    manifest = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        value = np.asarray(reader.get_tensor(name), dtype="<f4")
        old = name.replace("/kernel", "/weights").replace("/bias", "/biases")
        filename = old.replace("/", "_")
        (folder / filename).write_bytes(value.tobytes())
        manifest[old] = {"filename": filename, "shape": list(value.shape)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
