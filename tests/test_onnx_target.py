"""Keras -> ONNX: onnxruntime running the written model reproduces the real framework.

Whole models (Keras 2 fixtures by tf_keras, Keras 3 models built here) are compared with the framework's
own ``predict``; ``--per-layer`` models with each recurrent layer's recorded outputs and states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import lstmconv
from lstmconv.errors import RefusedConversionError
from tests.conftest import DATA, assert_close, corpus_file

onnxruntime = pytest.importorskip("onnxruntime")

FIXTURES = DATA / "keras2"
CASES = sorted(p.name[: -len(".h5")] for p in FIXTURES.glob("*.h5"))


def _session(path: Path):  # type: ignore[no-untyped-def]
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_layer(session, name: str, x: np.ndarray) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Run a per-layer model for one layer; the other layers get small dummy inputs."""
    feeds = {}
    for item in session.get_inputs():
        if item.name == f"{name}.x":
            feeds[item.name] = x
        else:
            shape = [d if isinstance(d, int) else 2 for d in item.shape]
            feeds[item.name] = np.zeros(shape, dtype=np.int64 if "int64" in item.type else np.float32)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _assert_fused_only(path: Path) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"Loop", "Scan"}, ops
    assert ops & {"LSTM", "GRU", "RNN"}, ops
    assert all(a.i == 0 for n in model.graph.node for a in n.attribute if a.name == "layout")


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("cudnn") and c != "weights_only_stacked"])
def test_whole_model_matches_tf_keras_predict(case: str, tmp_path: Path) -> None:
    out = tmp_path / f"{case}.onnx"
    report = lstmconv.convert(FIXTURES / f"{case}.h5", out, to="onnx")
    assert "whole model" in report.target
    _assert_fused_only(out)
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    session = _session(out)
    names = [i.name for i in session.get_inputs()]
    feeds = {name: expected[f"__model__/x{k}"] for k, name in enumerate(names)}
    if len(names) == 1:
        assert names == ["input"]
        assert [o.name for o in session.get_outputs()] == ["output"]
    y = session.run(None, feeds)[0]
    assert_close(y, expected["__model__/y"], f"{case} whole model")


@pytest.mark.parametrize("case", CASES)
def test_per_layer_models_match_each_layer(case: str, tmp_path: Path) -> None:
    out = tmp_path / f"{case}.onnx"
    lstmconv.convert(FIXTURES / f"{case}.h5", out, to="onnx", per_layer=True)
    _assert_fused_only(out)
    session = _session(out)
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    loaded = lstmconv.load(FIXTURES / f"{case}.h5")
    for layer in loaded.model.recurrent_layers():
        results = _run_layer(session, layer.name, expected[f"{layer.name}/x"])
        y = results[f"{layer.name}.y"]
        truth = expected[f"{layer.name}/y"]
        assert_close(y, truth, f"{case} {layer.name} y (onnxruntime)")
        flat = []
        for d in range(results[f"{layer.name}.h_n"].shape[0]):
            flat.append(results[f"{layer.name}.h_n"][d])
            if layer.cell == "lstm":
                flat.append(results[f"{layer.name}.c_n"][d])
        for index, state in enumerate(flat):
            assert_close(state, expected[f"{layer.name}/states"][index], f"{case} {layer.name} state {index}")


def test_keras2_hard_sigmoid_is_written_with_its_numbers(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    lstmconv.convert(FIXTURES / "lstm_hard_sigmoid.h5", out, to="onnx")
    (node,) = [n for n in onnx.load(str(out)).graph.node if n.op_type == "LSTM"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["activations"] == [b"HardSigmoid", b"Tanh", b"Tanh"]
    assert attrs["activation_alpha"][0] == pytest.approx(0.2) and attrs["activation_beta"][0] == pytest.approx(0.5)


def test_gru_reset_before_is_linear_before_reset_0(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    lstmconv.convert(FIXTURES / "gru_reset_before.h5", out, to="onnx")
    (node,) = [n for n in onnx.load(str(out)).graph.node if n.op_type == "GRU"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["linear_before_reset"] == 0


CORPUS_KERAS = {
    "aind2-rnn/best_RNN_large_textdata_weights.hdf5": None,
    "process-seq-pred/model_89-1.50.h5": None,
    "textgenrnn/textgenrnn_weights.hdf5": None,
    "chen-sentiment/bidirectional_lstm_softmax_weights.h5": "chen-sentiment/bidirectional_lstm_softmax_architecture.json",
    "mycroft-precise/hey-mycroft.net": None,
    "medaka/medaka_model.hdf5": None,
    "poreplex/demux-tetra-r4.hdf5": None,
    "katakana-seq2seq/model.h5": None,
    "lstm-multi/model.h5": None,
    "imdb-rnn-compare/simplernn_model.h5": None,
    "electricity-prices/gru_model.h5": None,
    "stock-rnn-lstm-gru/gru_model.h5": None,
    "water-forecast/lstm_model.keras": None,
    "bilstm-nifty50/bilstm_model.keras": None,
}


@pytest.mark.parametrize("relative", sorted(CORPUS_KERAS))
def test_corpus_keras_layers_to_onnx_match_the_framework(relative: str, tmp_path: Path) -> None:
    from tests.test_corpus_keras import _directions, _entries

    sidecar = CORPUS_KERAS[relative]
    config = corpus_file(sidecar) if sidecar else None
    out = tmp_path / "m.onnx"
    lstmconv.convert(corpus_file(relative), out, to="onnx", config=config, per_layer=True)
    session = _session(out)
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    loaded = lstmconv.load(corpus_file(relative), config=config)
    for layer in loaded.model.recurrent_layers():
        for entry in _entries(expected, layer.name):
            results = _run_layer(session, layer.name, expected[f"{entry}/x"])
            # onnxruntime computes in float32 like the framework did: 1e-5, with textgenrnn's rounding margin
            assert_close(results[f"{layer.name}.y"], expected[f"{entry}/y"], f"{relative} {entry} y", atol=2e-5)
            for index, direction in enumerate(_directions(expected, entry) or [entry]):
                assert_close(results[f"{layer.name}.h_n"][index], expected[f"{direction}/h"], f"{direction} h", atol=2e-5)


def test_whole_model_with_unsupported_layer_is_refused_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    with pytest.raises(RefusedConversionError) as caught:
        lstmconv.convert(corpus_file("process-seq-pred/model_89-1.50.h5"), out, to="onnx")
    assert "batchnormalization_1 (BatchNormalization)" in str(caught.value) and "--per-layer" in str(caught.value)
    assert not out.exists()


def test_conversion_to_onnx_needs_no_tensorflow_or_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "m.onnx"
    code = (
        "import sys\n"
        "for name in ('torch', 'tensorflow', 'keras', 'onnxruntime'):\n    sys.modules[name] = None\n"
        "import lstmconv\n"
        f"lstmconv.convert({str(FIXTURES / 'bidirectional_concat.h5')!r}, {str(out)!r}, to='onnx')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_float16_weights_go_to_onnx_widened_exactly_and_run_as_torch_runs_them(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
    half = {f"rnn.{k}": v.half() for k, v in lstm.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    lstmconv.convert(tmp_path / "half.pt", tmp_path / "half.onnx", to="onnx")
    widened = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
    widened.load_state_dict({k.removeprefix("rnn."): v.float() for k, v in half.items()})
    x = torch.randn(3, 7, 4)
    with torch.no_grad():
        expected, _ = widened(x)
    (got, *_states) = _session(tmp_path / "half.onnx").run(None, {"rnn.x": x.numpy()})
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-6)


def test_float64_weights_are_refused_for_onnx_naming_every_layer(tmp_path: Path) -> None:
    """onnxruntime has no float64 LSTM, GRU or RNN kernel; rounding to float32 would change the function."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.ModuleDict({"gru": torch.nn.GRU(4, 6), "head": torch.nn.Linear(6, 2)}).double()
    torch.save(module.state_dict(), tmp_path / "double.pt")
    with pytest.raises(RefusedConversionError) as caught:
        lstmconv.convert(tmp_path / "double.pt", tmp_path / "double.onnx", to="onnx")
    message = str(caught.value)
    assert "layer 'gru': its weights are float64" in message and "layer 'head': its weights are float64" in message
    assert "onnxruntime runs no float64" in message and "keep float64" in message
    assert not (tmp_path / "double.onnx").exists()
    lstmconv.convert(tmp_path / "double.pt", tmp_path / "double.safetensors")  # torch keeps float64


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("per_layer", [False, True])
def test_bidirectional_merge_mode_none_has_two_outputs(return_sequences: bool, per_layer: bool, tmp_path: Path) -> None:
    """Keras Bidirectional(merge_mode=None) returns [forward, backward]: two ONNX outputs, as Keras 3 computes them."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x_in = keras.Input((5, 3))
    layer = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=return_sequences), merge_mode=None, name="bi")
    forward, backward = layer(x_in)
    model = keras.Model(x_in, [forward, backward])
    source = tmp_path / "none.keras"
    model.save(source)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    expected = [keras.ops.convert_to_numpy(y) for y in model(x)]
    out = tmp_path / "none.onnx"
    lstmconv.convert(source, out, per_layer=per_layer)
    session = _session(out)
    names = ["bi.y_forward", "bi.y_backward"] if per_layer else ["output_forward", "output_backward"]
    got = session.run(names, {"bi.x" if per_layer else "input": x})
    for y, want, name in zip(got, expected, names):
        if per_layer and not return_sequences:
            y = y[:, -1] if name.endswith("forward") else y[:, 0]  # per layer: whole sequences, time-aligned
        assert_close(y, want, name)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_onnx_runtime_inputs_are_kept_as_optional_inputs(op: str, direction: str, tmp_path: Path) -> None:
    """A source node taking initial_h, initial_c and sequence_lens from graph inputs (as ONNX's own test cases
    do): the per-layer model takes them too, and onnxruntime computes the same with and without them."""
    from tests.onnx_helpers import one_node_model, random_weights, run_ort

    rng = np.random.default_rng(5)
    hidden, features, d = 3, 2, 2 if direction == "bidirectional" else 1
    inputs = random_weights(op, d, hidden, features, rng)
    runtime = ["X", "sequence_lens", "initial_h"] + (["initial_c"] if op == "LSTM" else [])
    attrs: dict[str, object] = {"hidden_size": hidden, "direction": direction}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    model = one_node_model(op, inputs, runtime, attrs)
    source = tmp_path / "runtime.onnx"
    onnx.save(model, source)
    out = tmp_path / "out.onnx"
    report = lstmconv.convert(source, out)
    name = report.layers[0].name
    session = _session(out)
    x = rng.normal(size=(4, 3, features)).astype(np.float32)  # [T, B, I]
    h0 = rng.normal(size=(d, 3, hidden)).astype(np.float32)
    c0 = rng.normal(size=(d, 3, hidden)).astype(np.float32)
    lengths = np.array([4, 2, 3], np.int32)
    feeds = {"X": x, "sequence_lens": lengths, "initial_h": h0} | ({"initial_c": c0} if op == "LSTM" else {})
    want = run_ort(model, feeds)
    mine = {f"{name}.x": x.transpose(1, 0, 2), f"{name}.h0": h0, f"{name}.sequence_lens": lengths}
    if op == "LSTM":
        mine[f"{name}.c0"] = c0
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, mine)))
    y = want[0].transpose(2, 0, 1, 3)  # [T, D, B, H] -> [B, T, D, H]
    y = y.reshape(y.shape[0], y.shape[1], -1) if d == 2 else y[:, :, 0]
    assert_close(got[f"{name}.y"], y, "Y with the state and lengths given")
    assert_close(got[f"{name}.h_n"], want[1], "Y_h")
    if op == "LSTM":
        assert_close(got[f"{name}.c_n"], want[2], "Y_c")
    # Not given: zeros and full lengths, as the source given exactly those.
    zeros = {"X": x, "sequence_lens": np.full(3, 4, np.int32), "initial_h": np.zeros_like(h0)}
    if op == "LSTM":
        zeros["initial_c"] = np.zeros_like(c0)
    default = dict(zip([o.name for o in session.get_outputs()], session.run(None, {f"{name}.x": x.transpose(1, 0, 2)})))
    assert_close(default[f"{name}.h_n"], run_ort(model, zeros)[1], "Y_h from zeros")


def _keras3():  # type: ignore[no-untyped-def]
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_initial_state_and_return_state_convert_whole_to_onnx(cell: str, tmp_path: Path) -> None:
    """An encoder's return_state states as a decoder's initial_state, and a state as a model output: the fused
    ops' initial_h/initial_c inputs and Y_h/Y_c outputs; onnxruntime reproduces Keras 3."""
    keras = _keras3()
    L = keras.layers
    encoder_in, decoder_in = keras.Input((6, 3)), keras.Input((4, 2))
    _, *states = getattr(L, cell)(5, return_state=True, name="enc")(encoder_in)
    decoded = getattr(L, cell)(5, return_sequences=True, name="dec")(decoder_in, initial_state=states)
    model = keras.Model([encoder_in, decoder_in], [L.Dense(3, name="out")(decoded), states[0]])
    source = tmp_path / "seq2seq.keras"
    model.save(source)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 6, 3)).astype(np.float32), rng.normal(size=(2, 4, 2)).astype(np.float32)
    expected = [keras.ops.convert_to_numpy(y) for y in model([a, b])]
    out = tmp_path / "seq2seq.onnx"
    lstmconv.convert(source, out)
    session = _session(out)
    names = [i.name for i in session.get_inputs()]
    got = session.run(["out", "enc_h"], dict(zip(names, [a, b])))
    for y, want, what in zip(got, expected, ("decoder output", "encoder state")):
        assert_close(y, want, what)
    back = tmp_path / "back.keras"  # and the Keras target rebuilds the same wiring
    lstmconv.convert(source, back)
    rebuilt = keras.models.load_model(back, compile=False)
    assert_close(keras.ops.convert_to_numpy(rebuilt([a, b])[0]), expected[0], "rebuilt .keras")


def test_bidirectional_return_state_outputs_every_state(tmp_path: Path) -> None:
    """Bidirectional(LSTM(return_state=True)): the output and four states, as Keras 3 returns them (this model
    ended in an internal error before)."""
    keras = _keras3()
    x_in = keras.Input((5, 3))
    outputs = keras.layers.Bidirectional(keras.layers.LSTM(4, return_state=True), name="bi")(x_in)
    model = keras.Model(x_in, outputs)
    source = tmp_path / "bi.keras"
    model.save(source)
    x = np.random.default_rng(2).normal(size=(2, 5, 3)).astype(np.float32)
    expected = [keras.ops.convert_to_numpy(y) for y in model(x)]
    out = tmp_path / "bi.onnx"
    lstmconv.convert(source, out)
    session = _session(out)
    names = ["output", "output_h_forward", "output_c_forward", "output_h_backward", "output_c_backward"]
    assert [o.name for o in session.get_outputs()] == names
    for y, want, name in zip(session.run(names, {"input": x}), expected, names):
        assert_close(y, want, name)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_directions_with_different_activations_are_read_kept_and_written(op: str, tmp_path: Path) -> None:
    """An ONNX node whose backward direction has its own activations: inspect and the canonical file hold them,
    the ONNX target writes them, onnxruntime computes the source's numbers; torch and Keras refuse, saying why."""
    from tests.onnx_helpers import one_node_model, random_weights, run_ort

    rng = np.random.default_rng(7)
    hidden, features = 3, 2
    inputs = random_weights(op, 2, hidden, features, rng)
    forward = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}[op]
    backward = {"LSTM": ["HardSigmoid", "Relu", "Softsign"], "GRU": ["HardSigmoid", "Softsign"], "RNN": ["Relu"]}[op]
    attrs = {"hidden_size": hidden, "direction": "bidirectional", "activations": forward + backward}
    if op != "RNN":
        attrs["activation_alpha"], attrs["activation_beta"] = [0.3], [0.4]
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    model = one_node_model(op, inputs, ["X"], attrs)
    source = tmp_path / "mixed.onnx"
    onnx.save(model, source)
    from lstmconv.pipeline.report import describe

    found = lstmconv.inspect(source)
    assert found.layers[0].backward_activations is not None and "backward" in describe(found.layers[0])
    canonical, out = tmp_path / "m.lstmconv.safetensors", tmp_path / "back.onnx"
    lstmconv.convert(source, canonical)
    lstmconv.convert(canonical, out)
    x = rng.normal(size=(4, 3, features)).astype(np.float32)
    want = run_ort(model, {"X": x})[0]
    got = _session(out).run(None, {f"{found.layers[0].name}.x": x.transpose(1, 0, 2)})[0]
    assert_close(got, want.transpose(2, 0, 1, 3).reshape(3, 4, -1), "both directions' own activations")
    for target in ("m.safetensors", "m.weights.h5"):
        with pytest.raises(RefusedConversionError, match="different activations|same activations"):
            lstmconv.convert(source, tmp_path / target)


@pytest.mark.parametrize("per_layer", [True, False])
@pytest.mark.parametrize("case", ["go_backwards_lstm", "go_backwards_gru"])
def test_a_go_backwards_layer_written_as_onnx_reads_back_as_the_same_function(case: str, per_layer: bool, tmp_path: Path) -> None:
    """The reverse node and the Slice that puts its output in processing order (or an unread Y) read back as a
    Keras go_backwards layer: verify compares like with like."""
    source = FIXTURES / f"{case}.h5"
    lstmconv.convert(source, tmp_path / "m.onnx", per_layer=per_layer)
    (layer,) = lstmconv.load(tmp_path / "m.onnx").model.recurrent_layers()
    assert layer.go_backwards and not layer.time_aligned_output
    assert lstmconv.verify(source, tmp_path / "m.onnx", common_only=True).same


@pytest.mark.parametrize("case", ["bidirectional_sum", "bidirectional_mul", "bidirectional_ave", "bidirectional_concat"])
def test_a_whole_model_bidirectional_merge_reads_back_as_the_same_function(case: str, tmp_path: Path) -> None:
    """The Split and Add/Mul (ave: then Mul by 0.5) after the node read back as the layer's merge_mode."""
    source = FIXTURES / f"{case}.h5"
    lstmconv.convert(source, tmp_path / "m.onnx")
    (layer,) = lstmconv.load(tmp_path / "m.onnx").model.recurrent_layers()
    assert layer.merge_mode == case.removeprefix("bidirectional_")
    assert lstmconv.verify(source, tmp_path / "m.onnx", common_only=True).same
