"""The torch-layout NumPy reference against the real torch.nn.LSTM / GRU / RNN (CPU, float64)."""

from __future__ import annotations

import numpy as np
import pytest

from lstmconv.reference import common
from lstmconv.reference.torch import torch_forward

torch = pytest.importorskip("torch")

CASES = [
    # mode, layers, bidirectional, bias, proj, nonlinearity
    ("lstm", 1, False, True, 0, "tanh"),
    ("lstm", 2, True, True, 0, "tanh"),
    ("lstm", 2, True, False, 0, "tanh"),
    ("lstm", 2, True, True, 3, "tanh"),
    ("gru", 1, False, True, 0, "tanh"),
    ("gru", 3, True, True, 0, "tanh"),
    ("gru", 1, False, False, 0, "tanh"),
    ("rnn", 2, True, True, 0, "tanh"),
    ("rnn", 1, False, True, 0, "relu"),
]


@pytest.mark.parametrize(("mode", "layers", "bidirectional", "bias", "proj", "nonlinearity"), CASES)
def test_reference_matches_torch(mode: str, layers: int, bidirectional: bool, bias: bool, proj: int, nonlinearity: str) -> None:
    torch.manual_seed(0)
    kwargs = {"num_layers": layers, "bias": bias, "batch_first": True, "bidirectional": bidirectional}
    if mode == "lstm":
        module = torch.nn.LSTM(4, 5, proj_size=proj, **kwargs)
    elif mode == "gru":
        module = torch.nn.GRU(4, 5, **kwargs)
    else:
        module = torch.nn.RNN(4, 5, nonlinearity=nonlinearity, **kwargs)
    module = module.double()
    directions = 2 if bidirectional else 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 4))
    out_size = proj or 5
    h0 = rng.standard_normal((layers * directions, 3, out_size))
    c0 = rng.standard_normal((layers * directions, 3, 5))
    with torch.no_grad():
        if mode == "lstm":
            y, (h_n, c_n) = module(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
        else:
            y, h_n = module(torch.from_numpy(x), torch.from_numpy(h0))
            c_n = None
    initial = [
        [(h0[k * directions + d], c0[k * directions + d] if mode == "lstm" else None) for d in range(directions)]
        for k in range(layers)
    ]
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    out = torch_forward(state, mode=mode, num_layers=layers, bidirectional=bidirectional, x=x, initial=initial, nonlinearity=nonlinearity)
    np.testing.assert_allclose(out.y, y.numpy(), atol=1e-12)
    for k in range(layers):
        for d in range(directions):
            h, c = out.states[k][d]
            np.testing.assert_allclose(h, h_n[k * directions + d].numpy(), atol=1e-12)
            if c_n is not None:
                np.testing.assert_allclose(c, c_n[k * directions + d].numpy(), atol=1e-12)


# The numeric check's shapes (batch 4, 3 steps) with weight_hh of 4096 x 1024 float32 (16 MiB): products in blocks
LARGE_HIDDEN, LARGE_FEATURES, CHECK_BATCH, CHECK_STEPS = 1024, 96, 4, 3


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_torch_reference_with_large_weights_matches_torch(mode: str) -> None:
    torch.manual_seed(0)
    module = (torch.nn.LSTM if mode == "lstm" else torch.nn.GRU)(LARGE_FEATURES, LARGE_HIDDEN, batch_first=True, bidirectional=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((CHECK_BATCH, CHECK_STEPS, LARGE_FEATURES)).astype(np.float32)
    h0 = rng.standard_normal((2, CHECK_BATCH, LARGE_HIDDEN)).astype(np.float32)
    c0 = rng.standard_normal((2, CHECK_BATCH, LARGE_HIDDEN)).astype(np.float32)
    with torch.no_grad():
        if mode == "lstm":
            y, (h_n, c_n) = module(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
        else:
            y, h_n = module(torch.from_numpy(x), torch.from_numpy(h0))
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    assert state["weight_hh_l0"].nbytes >= common._BLOCKED_FROM_BYTES  # the blocked path is the one tested
    initial = [[(h0[d], c0[d] if mode == "lstm" else None) for d in range(2)]]
    out = torch_forward(state, mode=mode, num_layers=1, bidirectional=True, x=x, initial=initial, dtype=np.float32)
    np.testing.assert_allclose(out.y, y.numpy(), atol=1e-5)
    for d in range(2):
        np.testing.assert_allclose(out.states[0][d][0], h_n[d].numpy(), atol=1e-5)
        if mode == "lstm":
            np.testing.assert_allclose(out.states[0][d][1], c_n[d].numpy(), atol=1e-5)
