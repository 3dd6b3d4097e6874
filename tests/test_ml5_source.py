"""ml5.js charRNN manifests (raw float32 dumps of a TF1 checkpoint) as a source.

Judges: ml5's own runtime, real ``@tensorflow/tfjs`` ``basicLSTMCell`` in Node run the way ml5's CharRNN runs the
cells (``tests/js/ml5_charrnn.js``; skipped without Node), on a fixture dumped from a real TensorFlow 2.21
checkpoint (``scripts/make_tf1_checkpoint_fixtures.py``, pre-1.2 variable names); and the corpus's two ml5 models
with outputs recorded by TensorFlow (skipped without ``../shared/corpus``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.registry import detect_format
from tests.conftest import DATA, ROOT, assert_close, corpus_file
from tests.tfjs_helpers import MODULES

onnxruntime = pytest.importorskip("onnxruntime")

FIXTURE = DATA / "ml5" / "manifest.json"
STACK = "rnn/multi_rnn_cell"
CORPUS = ["ml5-charrnn-manifest/koans/manifest.json", "ml5-charrnn-manifest/koansAndpoems/manifest.json"]


def _ml5(manifest: Path, x: np.ndarray, work: Path) -> dict[str, np.ndarray]:
    """What ml5 computes: y of the top cell at every step, h and c of every cell (batch, cells, units)."""
    if shutil.which("node") is None or not (MODULES / "@tensorflow" / "tfjs").is_dir():
        pytest.skip(f"Node or @tensorflow/tfjs not installed (looked in {MODULES})")
    feed = work / "x.json"
    feed.write_text(json.dumps({"data": x.ravel().tolist(), "shape": list(x.shape)}))
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "js" / "ml5_charrnn.js"), str(manifest), str(feed)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(MODULES)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {k: np.asarray(v["data"], np.float32).reshape(v["shape"]) for k, v in json.loads(done.stdout).items()}


def _onnx_y(model: Path, name: str, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run([f"{name}.y"], {f"{name}.x": x})[0]


def test_an_ml5_manifest_converts_to_what_ml5_computes(tmp_path: Path) -> None:
    x = np.random.RandomState(3).standard_normal((2, 6, 3)).astype(np.float32)
    expected = _ml5(FIXTURE, x, tmp_path)
    assert detect_format(FIXTURE).name == "ml5"
    loaded = lstmconv.load(FIXTURE)
    layer = loaded.model.layers[0]
    assert layer.name == STACK and layer.num_levels == 2 and layer.source.framework == "ml5"
    assert not layer.source.inferred and any("forgetBias 1.0" in note for note in layer.source.notes)  # ml5's facts
    out = loaded.references[STACK](x, None)
    assert_close(out.y, expected["y"], "reference y")
    assert_close(np.stack([level[0][1] for level in out.states], axis=1), expected["c"], "reference c")
    lstmconv.convert(FIXTURE, tmp_path / "m.onnx")
    assert_close(_onnx_y(tmp_path / "m.onnx", STACK, x), expected["y"], "onnx")
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    lstmconv.convert(FIXTURE, tmp_path / "m.safetensors")
    with torch.no_grad():
        y, (h, c) = load_torch_modules(tmp_path / "m.safetensors")[STACK](torch.from_numpy(x))
    assert_close(y.numpy(), expected["y"], "torch y")
    assert_close(h.numpy().transpose(1, 0, 2), expected["h"], "torch h")


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(FIXTURE.parent, folder)
    return folder / "manifest.json"


def test_a_file_outside_the_folder_or_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    manifest = _copy(tmp_path)
    entries = json.loads(manifest.read_text())
    name = next(iter(entries))
    entries[name]["filename"] = "../secret"
    manifest.write_text(json.dumps(entries))
    with pytest.raises(InputFormatError, match="outside the manifest's folder"):
        lstmconv.load(manifest)
    entries = json.loads((FIXTURE).read_text())
    manifest.write_text(json.dumps(entries))
    victim = manifest.parent / entries[name]["filename"]
    victim.write_bytes(victim.read_bytes()[:-4])
    with pytest.raises(InputFormatError, match="does not hold its shape's float32 values"):
        lstmconv.load(manifest)


def test_cells_ml5_cannot_run_are_refused_saying_why(tmp_path: Path) -> None:
    manifest = _copy(tmp_path)
    entries = json.loads(manifest.read_text())
    renamed = {key.replace("basic_lstm_cell/weights", "basic_rnn_cell/kernel").replace("basic_lstm_cell/biases", "basic_rnn_cell/bias"): value
               for key, value in entries.items() if "cell_1" in key}
    manifest.write_text(json.dumps(renamed))
    with pytest.raises(UnsupportedFeatureError, match="runtime cannot run"):
        lstmconv.load(manifest)


@pytest.mark.parametrize("relative", CORPUS)
def test_corpus_ml5_models_reproduce_tensorflow(relative: str, tmp_path: Path) -> None:
    manifest = corpus_file(relative)
    expected = np.load(str(corpus_file(relative + ".expected.npz")))
    name = "rnnlm/multi_rnn_cell"
    x, y = expected[f"{name}/x"], expected[f"{name}/y"]
    loaded = lstmconv.load(manifest)
    out = loaded.references[name](x, None)
    assert_close(out.y, y, f"{relative} reference")
    assert_close(np.stack([level[0][1] for level in out.states], axis=1), expected[f"{name}/c"], f"{relative} c")
    lstmconv.convert(manifest, tmp_path / "m.onnx")
    assert_close(_onnx_y(tmp_path / "m.onnx", name, x), y, f"{relative} onnx")
    assert_close(_ml5(manifest, x, tmp_path)["y"], y, f"{relative} ml5 in tfjs")  # the judge agrees with TensorFlow
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    lstmconv.convert(manifest, tmp_path / "m.safetensors")
    with torch.no_grad():
        torch_y, _ = load_torch_modules(tmp_path / "m.safetensors")[name](torch.from_numpy(x))
    assert_close(torch_y.numpy(), y, f"{relative} torch")
