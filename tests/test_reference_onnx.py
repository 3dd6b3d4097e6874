"""The ONNX-layout NumPy reference against onnxruntime, feature by feature.

Covers every op (LSTM, GRU, RNN), direction, layout=0 (onnxruntime rejects layout=1, so layout=1 is
checked against the layout=0 run transposed), linear_before_reset 0/1, peepholes, clip, input_forget,
non-default activations with explicit alpha/beta, initial states and sequence_lens.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstmconv.layouts.onnx import ACTIVATION_COUNT, OnnxRecurrentNode, parse_activations
from lstmconv.reference import common
from lstmconv.reference.onnx import onnx_forward

onnxruntime = pytest.importorskip("onnxruntime")
from tests.onnx_helpers import one_node_model, run_ort  # noqa: E402

H, I, T, B = 4, 3, 5, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}

CASES = [
    # id, op, attrs, use P, use lengths, use initial states
    ("lstm_forward", "LSTM", {}, False, False, False),
    ("lstm_bidirectional_states", "LSTM", {"direction": "bidirectional"}, False, False, True),
    ("lstm_reverse", "LSTM", {"direction": "reverse"}, False, False, True),
    ("lstm_peepholes", "LSTM", {"direction": "bidirectional"}, True, False, True),
    ("lstm_clip", "LSTM", {"clip": 0.7}, False, False, True),
    ("lstm_clip_peepholes_bidirectional", "LSTM", {"clip": 0.4, "direction": "bidirectional"}, True, True, True),
    ("lstm_input_forget", "LSTM", {"input_forget": 1}, False, False, True),
    ("lstm_hard_sigmoid_keras3", "LSTM", {"activations": ["HardSigmoid", "Tanh", "Tanh"], "activation_alpha": [1 / 6], "activation_beta": [0.5]}, False, False, False),
    ("lstm_exotic_activations", "LSTM", {"activations": ["HardSigmoid", "Affine", "ScaledTanh"], "activation_alpha": [0.3, 0.5, 1.5], "activation_beta": [0.4, 0.1, 0.7]}, False, False, True),
    # alpha/beta are consumed only by the activations that take them, across both directions
    ("lstm_bidirectional_parameters_after_plain", "LSTM", {"direction": "bidirectional", "activations": ["Sigmoid", "Elu", "HardSigmoid", "HardSigmoid", "Tanh", "LeakyRelu"], "activation_alpha": [0.7, 0.3, 0.25, 0.05], "activation_beta": [0.45, 0.55]}, False, False, True),
    ("lstm_sequence_lens", "LSTM", {"direction": "bidirectional"}, False, True, True),
    ("gru_lbr0", "GRU", {"linear_before_reset": 0}, False, False, True),
    ("gru_lbr1_bidirectional", "GRU", {"linear_before_reset": 1, "direction": "bidirectional"}, False, False, True),
    ("gru_activations", "GRU", {"activations": ["Softsign", "HardSigmoid"], "activation_alpha": [0.2], "activation_beta": [0.5]}, False, False, False),
    ("gru_sequence_lens_reverse", "GRU", {"direction": "reverse", "linear_before_reset": 1}, False, True, True),
    ("gru_clip", "GRU", {"clip": 0.5, "linear_before_reset": 1}, False, False, True),
    ("rnn_clip", "RNN", {"clip": 0.3}, False, False, True),
    ("rnn_tanh", "RNN", {}, False, False, True),
    ("rnn_relu_bidirectional", "RNN", {"activations": ["Relu", "Relu"], "direction": "bidirectional"}, False, False, True),
    ("rnn_leaky_elu", "RNN", {"activations": ["LeakyRelu", "Elu"], "activation_alpha": [0.1, 0.9], "direction": "bidirectional"}, False, False, False),
    ("rnn_sequence_lens", "RNN", {"activations": ["Softplus"]}, False, True, True),
]


def _node(op: str, attrs: dict, arrays: dict) -> OnnxRecurrentNode:  # type: ignore[type-arg]
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    names = attrs.get("activations", DEFAULT_ACTS[op] * directions)
    if len(names) == ACTIVATION_COUNT[op.lower()] and directions == 2:
        names = names * 2
    acts = parse_activations(list(names), attrs.get("activation_alpha", []), attrs.get("activation_beta", []))
    return OnnxRecurrentNode(
        op=op,
        name="n",
        hidden_size=arrays["R"].shape[-1],
        direction=attrs.get("direction", "forward"),
        activations=acts,
        clip=attrs.get("clip"),
        input_forget=bool(attrs.get("input_forget", 0)),
        linear_before_reset=bool(attrs.get("linear_before_reset", 0)),
        W=arrays["W"],
        R=arrays["R"],
        B=arrays["B"],
        P=arrays.get("P"),
    )


@pytest.mark.parametrize(("case", "op", "attrs", "peepholes", "lengths", "states"), CASES, ids=[c[0] for c in CASES])
def test_reference_matches_onnxruntime(case: str, op: str, attrs: dict, peepholes: bool, lengths: bool, states: bool) -> None:  # type: ignore[type-arg]
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    g = GATES[op]
    f32 = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    arrays = {"W": f32(directions, g * H, I), "R": f32(directions, g * H, H), "B": f32(directions, 2 * g * H)}
    if peepholes:
        arrays["P"] = f32(directions, 3 * H)
    X = (2 * f32(T, B, I)).astype(np.float32)
    feeds = {"X": X}
    runtime = ["X"]
    seq = None
    if lengths:
        seq = np.array([T, 2, 4][:B], dtype=np.int32)
        feeds["sequence_lens"] = seq
        runtime.append("sequence_lens")
    h0 = c0 = None
    if states:  # large enough that clipped and unclipped values differ
        h0, c0 = 3 * f32(directions, B, H), 3 * f32(directions, B, H)
        feeds["initial_h"] = h0
        runtime.append("initial_h")
        if op == "LSTM":
            feeds["initial_c"] = c0
            runtime.append("initial_c")
    ort_attrs = {"hidden_size": H, **attrs}
    model = one_node_model(op, {**arrays, **{k: None for k in runtime}}, runtime, ort_attrs)
    expected = run_ort(model, feeds)
    node = _node(op, attrs, arrays)
    # float64 input: the reference then computes in float64, so only onnxruntime's float32 rounding remains
    wide = None if h0 is None else h0.astype(np.float64)
    Y, Y_h, Y_c = onnx_forward(
        node, X.astype(np.float64), sequence_lens=seq, initial_h=wide, initial_c=c0 if op == "LSTM" else None
    )
    np.testing.assert_allclose(Y, expected[0], atol=2e-6, err_msg="Y")
    np.testing.assert_allclose(Y_h, expected[1], atol=2e-6, err_msg="Y_h")
    if op == "LSTM":
        np.testing.assert_allclose(Y_c, expected[2], atol=2e-6, err_msg="Y_c")


def test_layout_1_is_the_transpose_of_layout_0() -> None:
    rng = np.random.default_rng(3)
    arrays = {"W": rng.standard_normal((2, 4 * H, I)), "R": rng.standard_normal((2, 4 * H, H)), "B": rng.standard_normal((2, 8 * H))}
    node0 = _node("LSTM", {"direction": "bidirectional"}, arrays)
    node1 = OnnxRecurrentNode(**{**node0.__dict__, "layout": 1})
    X = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2, B, H))
    Y0, Yh0, _ = onnx_forward(node0, X, initial_h=h0)
    Y1, Yh1, _ = onnx_forward(node1, X.transpose(1, 0, 2), initial_h=h0.transpose(1, 0, 2))
    np.testing.assert_array_equal(Y1, Y0.transpose(2, 0, 1, 3))
    np.testing.assert_array_equal(Yh1, Yh0.transpose(1, 0, 2))


# The numeric check's shapes (batch 4, 3 steps) with R of 4096 x 1024 float32 per direction: products in blocks
LARGE_HIDDEN, LARGE_FEATURES, CHECK_BATCH, CHECK_STEPS = 1024, 96, 4, 3


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_onnx_reference_with_large_weights_matches_onnxruntime(op: str) -> None:
    rng = np.random.default_rng(3)
    gates = 4 if op == "LSTM" else 3
    f32 = lambda *shape: rng.uniform(-0.05, 0.05, shape).astype(np.float32)  # noqa: E731
    arrays = {"W": f32(2, gates * LARGE_HIDDEN, LARGE_FEATURES), "R": f32(2, gates * LARGE_HIDDEN, LARGE_HIDDEN), "B": f32(2, 2 * gates * LARGE_HIDDEN)}
    assert arrays["R"][0].nbytes // gates >= common._BLOCKED_FROM_BYTES  # GRU multiplies by one gate's block at a time
    x = rng.standard_normal((CHECK_STEPS, CHECK_BATCH, LARGE_FEATURES)).astype(np.float32)
    h0 = rng.standard_normal((2, CHECK_BATCH, LARGE_HIDDEN)).astype(np.float32)
    attrs = {"direction": "bidirectional"}
    model = one_node_model(op, {**arrays, "X": None, "initial_h": None}, ["X", "initial_h"], {"hidden_size": LARGE_HIDDEN, **attrs})
    expected = run_ort(model, {"X": x, "initial_h": h0})
    Y, Y_h, _ = onnx_forward(_node(op, attrs, arrays), x, initial_h=h0)  # float32 input: computed in float32
    np.testing.assert_allclose(Y, expected[0], atol=1e-5)
    np.testing.assert_allclose(Y_h, expected[1], atol=1e-5)
