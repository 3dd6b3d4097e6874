"""``--emit-module``: layers torch.nn cannot compute become a small PyTorch module that reproduces the framework."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from tests.conftest import DATA, assert_close, corpus_file

torch = pytest.importorskip("torch")


def _import(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _modules(out: Path, emitted: Path):  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    namespace = _import(emitted)
    modules = namespace.build_modules()
    state = load_file(str(out))
    namespace.load_state(modules, {k: v for k, v in state.items() if k.split(".")[0] in modules})
    return modules


CORPUS = {
    "aind2-rnn/best_RNN_large_textdata_weights.hdf5": (None, ["lstm_1"]),
    "process-seq-pred/model_89-1.50.h5": (None, ["lstm_1", "lstm_2", "lstm_3"]),
    "chen-sentiment/bidirectional_lstm_softmax_weights.h5": ("chen-sentiment/bidirectional_lstm_softmax_architecture.json", ["bidirectional_1"]),
    "mycroft-precise/hey-mycroft.net": (None, ["net"]),
    "medaka/medaka_model.hdf5": (None, ["bidirectional_1", "bidirectional_2"]),
    "katakana-seq2seq/model.h5": (None, ["lstm_1", "lstm_2"]),
}


@pytest.mark.parametrize("relative", sorted(CORPUS))
def test_emitted_module_reproduces_the_corpus_recordings(relative: str, tmp_path: Path) -> None:
    from tests.test_corpus_keras import _directions, _entries

    sidecar, names = CORPUS[relative]
    out, emitted = tmp_path / "w.safetensors", tmp_path / "layers.py"
    report = lstmconv.convert(
        corpus_file(relative), out, to="torch", config=corpus_file(sidecar) if sidecar else None, emit_module=emitted
    )
    assert all(r.max_abs_error is not None and r.max_abs_error <= 1e-5 for r in report.layers if r.name in names)
    modules = _modules(out, emitted)
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    for name in names:
        for entry in _entries(expected, name):
            with torch.no_grad():
                y, state = modules[name](torch.from_numpy(expected[f"{entry}/x"]))
            assert_close(y.numpy(), expected[f"{entry}/y"], f"{relative} {entry} y (emitted module)")
            h_n = (state[0] if isinstance(state, tuple) else state).numpy()
            for index, direction in enumerate(_directions(expected, entry) or [entry]):
                assert_close(h_n[index], expected[f"{direction}/h"], f"{relative} {direction} h (emitted module)")


def test_second_seed_char_model_via_emitted_module_matches_keras(tmp_path: Path) -> None:
    out, emitted = tmp_path / "w.safetensors", tmp_path / "layers.py"
    lstmconv.convert(DATA / "keras2" / "char_lstm_sigmoid.h5", out, to="torch", emit_module=emitted)
    modules = _modules(out, emitted)
    expected = np.load(DATA / "keras2" / "char_lstm_sigmoid.outputs.npz")
    with torch.no_grad():
        y, (h, c) = modules["lstm"](torch.from_numpy(expected["lstm/x"]))
    assert_close(y.numpy(), expected["lstm/y"], "char LSTM y")
    assert_close(h[0].numpy(), expected["lstm/states"][0], "char LSTM h")
    assert_close(c[0].numpy(), expected["lstm/states"][1], "char LSTM c")


def test_onnx_peepholes_and_clip_via_emitted_module_match_onnxruntime(tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    tensors = {
        "W": rng.uniform(-1, 1, (2, 12, 3)).astype(np.float32),
        "R": rng.uniform(-1, 1, (2, 12, 3)).astype(np.float32),
        "B": rng.uniform(-1, 1, (2, 24)).astype(np.float32),
        "P": rng.uniform(-1, 1, (2, 9)).astype(np.float32),
    }
    node = helper.make_node(
        "LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y"], hidden_size=3, clip=0.6, direction="bidirectional", name="peep"
    )
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None, None, 3])],
        [numpy_helper.from_array(v, k) for k, v in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "p.onnx"))
    x = rng.uniform(-2, 2, (6, 2, 3)).astype(np.float32)
    Y = onnxruntime.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    out, emitted = tmp_path / "w.safetensors", tmp_path / "layers.py"
    lstmconv.convert(tmp_path / "p.onnx", out, to="torch", emit_module=emitted)
    modules = _modules(out, emitted)
    with torch.no_grad():
        y, _ = modules["peep"](torch.from_numpy(x.transpose(1, 0, 2).copy()))
    merged = np.concatenate([Y[:, 0], Y[:, 1]], axis=-1).transpose(1, 0, 2)
    assert_close(y.numpy(), merged, "ONNX peephole+clip LSTM in the emitted module")


def test_without_the_flag_the_refusal_mentions_it(tmp_path: Path) -> None:
    with pytest.raises(lstmconv.errors.RefusedConversionError, match="--emit-module"):
        lstmconv.convert(DATA / "keras2" / "char_lstm_sigmoid.h5", tmp_path / "w.safetensors", to="torch")


def test_torch_nn_loader_refuses_layers_that_need_the_emitted_module(tmp_path: Path) -> None:
    from lstmconv.torch_modules import load_torch_modules

    out = tmp_path / "w.safetensors"
    lstmconv.convert(DATA / "keras2" / "char_lstm_sigmoid.h5", out, to="torch", emit_module=tmp_path / "m.py")
    with pytest.raises(lstmconv.errors.InputFormatError, match="need the module file written with --emit-module"):
        load_torch_modules(out)
