"""ONNX files as sources: the real exporters' files and the corpus are read exactly.

* corpus ONNX files (PyTorch 1.3 opset-9 with in-graph gate reorder, PyTorch 2.3 with weights built inside
  ``If`` branches, tf2onnx): every LSTM node's reference reproduces the recorded onnxruntime outputs, and the
  ``torch.nn`` modules converted from it reproduce them too;
* ``torch.onnx.export`` (TorchScript and dynamo paths) of LSTM/GRU/RNN modules -> torch state dict: the
  rebuilt ``torch.nn`` modules reproduce the original module; -> canonical -> ONNX: identical weights;
* every opset that defines the ops, ``layout=1``, constant-subgraph weights, external data.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lstmconv
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.sources.onnx_graph import read_onnx
from tests.conftest import assert_close, corpus_file

CORPUS_ONNX = {
    "pytorch-tvm-lstm/lstm.onnx": {"lstm": "lstm"},
    "silero-vad/silero_vad_16k_op15.onnx": {
        "model_decoder_rnn_LSTM": "/model/decoder/rnn/LSTM",
        "model_decoder_rnn_1_LSTM": "/model/decoder/rnn_1/LSTM",
    },
    "water-forecast/lstm_model.onnx": {"LSTM__51": "LSTM__51", "LSTM__72": "LSTM__72"},
}


def _entries(expected: np.lib.npyio.NpzFile, prefix: str) -> list[str]:
    return sorted({k.rsplit("/", 1)[0] for k in expected if k.rsplit("/", 1)[0].split("@")[0] == prefix})


@pytest.mark.parametrize("relative", sorted(CORPUS_ONNX))
def test_corpus_onnx_reference_matches_onnxruntime_recordings(relative: str) -> None:
    loaded = lstmconv.load(corpus_file(relative))
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    names = CORPUS_ONNX[relative]
    assert sorted(layer.name for layer in loaded.model.recurrent_layers()) == sorted(names)
    for name, node_name in names.items():
        for entry in _entries(expected, node_name):
            initial = None
            if f"{entry}/h0" in expected:
                initial = [[(expected[f"{entry}/h0"].astype(np.float64), expected[f"{entry}/c0"].astype(np.float64))]]
            out = loaded.references[name](expected[f"{entry}/x"], initial)
            assert_close(out.y, expected[f"{entry}/y"], f"{entry} y")
            assert_close(out.states[0][0][0], expected[f"{entry}/h"], f"{entry} h")
            assert_close(out.states[0][0][1], expected[f"{entry}/c"], f"{entry} c")


@pytest.mark.parametrize("relative", sorted(CORPUS_ONNX))
def test_corpus_onnx_to_torch_modules_match(relative: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    out = tmp_path / "m.safetensors"
    lstmconv.convert(corpus_file(relative), out, to="torch")
    modules = load_torch_modules(out)
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    for name, node_name in CORPUS_ONNX[relative].items():
        for entry in _entries(expected, node_name):
            state = None
            if f"{entry}/h0" in expected:
                state = (torch.from_numpy(expected[f"{entry}/h0"])[None], torch.from_numpy(expected[f"{entry}/c0"])[None])
            with torch.no_grad():
                y, (h, c) = modules[name](torch.from_numpy(expected[f"{entry}/x"]), state)
            assert_close(y.numpy(), expected[f"{entry}/y"], f"{entry} y (torch)")
            assert_close(h[0].numpy(), expected[f"{entry}/h"], f"{entry} h (torch)")
            assert_close(c[0].numpy(), expected[f"{entry}/c"], f"{entry} c (torch)")


def _node_weights(path: Path) -> dict[str, tuple[np.ndarray, ...]]:
    return {e.name: (e.node.W, e.node.R, e.node.B) for e in read_onnx(path).nodes}


@pytest.mark.parametrize("relative", sorted(CORPUS_ONNX))
def test_corpus_onnx_through_canonical_back_to_onnx_keeps_weights(relative: str, tmp_path: Path) -> None:
    canonical = tmp_path / "c.safetensors"
    lstmconv.convert(corpus_file(relative), canonical, to="canonical")
    again = tmp_path / "again.onnx"
    lstmconv.convert(canonical, again, to="onnx")
    original, rewritten = _node_weights(corpus_file(relative)), _node_weights(again)
    for name, arrays in original.items():
        for before, after in zip(arrays, rewritten[name]):
            assert before.dtype == after.dtype and before.tobytes() == after.tobytes(), name


# ---------------------------------------------------------------------------------------------------
# torch.onnx.export


TORCH_MODULES = {
    "lstm_2x_bidirectional": lambda nn: nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
    "gru_bidirectional": lambda nn: nn.GRU(3, 4, bidirectional=True, batch_first=True),
    "gru_2x": lambda nn: nn.GRU(3, 5, num_layers=2, batch_first=True),
    "rnn_relu": lambda nn: nn.RNN(3, 4, nonlinearity="relu", batch_first=True),
}


def _export(module, dynamo: bool) -> bytes:  # type: ignore[no-untyped-def]
    import torch

    x = torch.randn(2, 5, 3)
    if dynamo:
        pytest.importorskip("onnxscript")
        return torch.onnx.export(module, (x,), dynamo=True).model_proto.SerializeToString()
    buffer = io.BytesIO()
    torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=14)
    return buffer.getvalue()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("case", sorted(TORCH_MODULES))
def test_torch_onnx_export_round_trips_to_torch(case: str, dynamo: bool, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    torch.manual_seed(0)
    module = TORCH_MODULES[case](torch.nn).eval()
    path = tmp_path / "exported.onnx"
    path.write_bytes(_export(module, dynamo))
    if dynamo and case.startswith("rnn"):
        # The dynamo exporter unrolls nn.RNN into MatMul/Add ops: no fused node to read, and we say so.
        with pytest.raises(InputFormatError, match="no LSTM, GRU or RNN node"):
            lstmconv.load(path)
        return
    out = tmp_path / "w.safetensors"
    lstmconv.convert(path, out, to="torch")
    modules = list(load_torch_modules(out).values())  # one per exported node, i.e. per torch level
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 7, 3)).astype(np.float32))
    with torch.no_grad():
        expected, _ = module(x)
        value = x
        for rebuilt in modules:
            value, _ = rebuilt(value)
    assert len(modules) == module.num_layers
    assert_close(value.numpy(), expected.numpy(), f"{case} torch -> onnx -> torch")


# ---------------------------------------------------------------------------------------------------
# Opsets, layout, constant subgraphs, external data


def _model(nodes: list, initializers: list, inputs: list[str], opset: int, outputs: list[str]) -> onnx.ModelProto:  # type: ignore[type-arg]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, None, None]) for n in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, None, None, None]) for o in outputs],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 15 else 8
    return model


def _weights(op: str, directions: int = 1, hidden: int = 4, inputs: int = 3) -> dict[str, np.ndarray]:
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    rng = np.random.default_rng(7)
    return {
        "W": rng.uniform(-1, 1, (directions, gates * hidden, inputs)).astype(np.float32),
        "R": rng.uniform(-1, 1, (directions, gates * hidden, hidden)).astype(np.float32),
        "B": rng.uniform(-1, 1, (directions, 2 * gates * hidden)).astype(np.float32),
    }


@pytest.mark.parametrize(
    ("op", "opset", "attrs"),
    [
        ("LSTM", 7, {}),
        ("LSTM", 14, {"direction": "bidirectional"}),
        ("LSTM", 22, {"direction": "reverse"}),
        ("GRU", 1, {}),
        ("GRU", 3, {"linear_before_reset": 1}),
        ("GRU", 7, {}),
        ("GRU", 14, {"direction": "bidirectional", "linear_before_reset": 1}),
        ("GRU", 22, {}),
        ("RNN", 7, {"activations": ["Relu"]}),
        ("RNN", 14, {"direction": "bidirectional"}),
    ],
)
def test_every_opset_reads_and_matches_onnxruntime(op: str, opset: int, attrs: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    onnxruntime = pytest.importorskip("onnxruntime")
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    weights = _weights(op, directions)
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], hidden_size=4, name="rec", **attrs)
    model = _model([node], [numpy_helper.from_array(v, k) for k, v in weights.items()], ["X"], opset, ["Y"])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    # onnxruntime runs nothing below opset 7; GRU-1/3 compute what GRU-7 computes (7 only made outputs optional).
    runnable = _model([node], [numpy_helper.from_array(v, k) for k, v in weights.items()], ["X"], max(opset, 7), ["Y"])
    x = np.random.default_rng(2).standard_normal((5, 2, 3)).astype(np.float32)  # time-major, layout 0
    session = onnxruntime.InferenceSession(runnable.SerializeToString(), providers=["CPUExecutionProvider"])
    Y = session.run(None, {"X": x})[0]
    loaded = lstmconv.load(path)
    out = loaded.references["rec"](x.transpose(1, 0, 2), None)
    merged = np.concatenate([Y[:, d] for d in range(directions)], axis=-1).transpose(1, 0, 2)
    assert_close(out.y, merged, f"{op} opset {opset}")


def test_layout_1_node_is_read_with_the_same_weights(tmp_path: Path) -> None:
    weights = _weights("LSTM")
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=4, layout=1, name="rec")
    path = tmp_path / "m.onnx"
    onnx.save(_model([node], [numpy_helper.from_array(v, k) for k, v in weights.items()], ["X"], 14, ["Y"]), str(path))
    (layer,) = lstmconv.load(path).model.recurrent_layers()
    np.testing.assert_array_equal(layer.levels[0].forward.gates["output"].w_input, weights["W"][0][4:8])


def test_weights_from_constant_nodes_and_subgraph_in_if_branch(tmp_path: Path) -> None:
    weights = _weights("GRU")
    # W arrives through Constant -> Transpose -> Transpose, R through Split + Concat, inside an If branch.
    inner = [
        helper.make_node("Constant", [], ["w_t"], value=numpy_helper.from_array(weights["W"].transpose(0, 2, 1).copy())),
        helper.make_node("Transpose", ["w_t"], ["W"], perm=[0, 2, 1]),
        helper.make_node("Split", ["R_outer", "sizes"], ["r0", "r1"], axis=1),
        helper.make_node("Concat", ["r0", "r1"], ["R"], axis=1),
        helper.make_node("GRU", ["X", "W", "R", "B_outer"], ["Y_inner"], hidden_size=4, linear_before_reset=1, name="inside"),
    ]
    branch = helper.make_graph(inner, "then", [], [helper.make_tensor_value_info("Y_inner", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Y_else"])], "else", [], [helper.make_tensor_value_info("Y_else", TensorProto.FLOAT, None)]
    )
    outer = [helper.make_node("If", ["cond"], ["Y"], then_branch=branch, else_branch=else_branch)]
    initializers = [
        numpy_helper.from_array(weights["R"], "R_outer"),
        numpy_helper.from_array(weights["B"], "B_outer"),
        numpy_helper.from_array(np.array([6, 6], dtype=np.int64), "sizes"),
        numpy_helper.from_array(np.array(True), "cond"),
    ]
    path = tmp_path / "m.onnx"
    onnx.save(_model(outer, initializers, ["X"], 14, ["Y"]), str(path))
    (layer,) = lstmconv.load(path).model.recurrent_layers()
    assert layer.name == "inside" and layer.reset_after
    node = read_onnx(path).nodes[0].node
    assert node.W.tobytes() == weights["W"].tobytes() and node.R.tobytes() == weights["R"].tobytes()


def test_weight_computed_from_a_runtime_input_is_refused(tmp_path: Path) -> None:
    weights = _weights("LSTM")
    nodes = [
        helper.make_node("Mul", ["W0", "scale"], ["W"]),
        helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4, name="rec"),
    ]
    model = _model(nodes, [numpy_helper.from_array(weights["W"], "W0"), numpy_helper.from_array(weights["R"], "R")], ["X", "scale"], 14, ["Y"])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedFeatureError, match=r"layer 'rec': input W \('W'\) is computed at run time"):
        lstmconv.load(path)


def test_external_data_is_read_and_escaping_paths_refused(tmp_path: Path) -> None:
    weights = _weights("LSTM", hidden=16, inputs=32)
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=16, name="rec")
    model = _model([node], [numpy_helper.from_array(v, k) for k, v in weights.items()], ["X"], 14, ["Y"])
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    (layer,) = lstmconv.load(folder / "m.onnx").model.recurrent_layers()
    np.testing.assert_array_equal(layer.levels[0].forward.gates["input"].w_input, weights["W"][0][:16])
    # The same model pointing its weights at ../weights.bin must be refused before anything is read.
    (tmp_path / "weights.bin").write_bytes((folder / "weights.bin").read_bytes())
    hostile = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in hostile.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save(hostile, str(folder / "hostile.onnx"))
    with pytest.raises(InputFormatError, match="leaves the model's folder"):
        lstmconv.load(folder / "hostile.onnx")


def test_not_an_onnx_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    with pytest.raises(InputFormatError, match=r"bad.onnx"):
        lstmconv.load(path)


# ---------------------------------------------------------------------------------------------------
# tf2onnx (fixtures made by scripts/make_tf2onnx_fixtures.py from real tf_keras models)

TF2ONNX = Path(__file__).resolve().parent / "data" / "tf2onnx"


@pytest.mark.parametrize("case", sorted(p.stem for p in TF2ONNX.glob("*.onnx")))
def test_tf2onnx_files_reproduce_the_keras_layers(case: str, tmp_path: Path) -> None:
    from lstmconv.errors import RefusedConversionError

    path = TF2ONNX / f"{case}.onnx"
    expected = np.load(TF2ONNX / f"{case}.outputs.npz")
    loaded = lstmconv.load(path)
    layers = loaded.model.recurrent_layers()
    count = len({k.split("/")[0] for k in expected})
    assert len(layers) == count
    # tf2onnx writes Keras go_backwards as ReverseSequence around a forward node: the node sees reversed x.
    flip = case.endswith("go_backwards")
    for index, layer in enumerate(layers):
        x = expected[f"{index}/x"]
        out = loaded.references[layer.name](x[:, ::-1] if flip else x, None)
        assert_close(out.y, expected[f"{index}/y"], f"{case} layer {index} y")
    if case.endswith("hard_sigmoid"):
        with pytest.raises(RefusedConversionError, match=r"hard_sigmoid\(alpha=0.2, beta=0.5\)"):
            lstmconv.convert(path, tmp_path / "w.safetensors", to="torch")
        return
    if any(layer.cell == "gru" and not layer.reset_after for layer in layers):  # tf2onnx's Loops of Keras GRUs
        with pytest.raises(RefusedConversionError, match="reset gate before the recurrent matmul"):
            lstmconv.convert(path, tmp_path / "w.safetensors", to="torch")
        return
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    lstmconv.convert(path, tmp_path / "w.safetensors", to="torch")
    modules = load_torch_modules(tmp_path / "w.safetensors")
    for index, layer in enumerate(layers):
        x = expected[f"{index}/x"]
        with torch.no_grad():
            y, state = modules[layer.name](torch.from_numpy(np.ascontiguousarray(x[:, ::-1] if flip else x)))
        assert_close(y.numpy(), expected[f"{index}/y"], f"{case} layer {index} y (torch)")
        h_n = (state[0] if isinstance(state, tuple) else state).numpy()
        assert_close(h_n[0], expected[f"{index}/states"][0], f"{case} layer {index} h (torch)")
