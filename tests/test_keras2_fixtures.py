"""Keras 2 models made and run by the real tensorflow/tf_keras 2.21 (fixtures from scripts/make_keras2_fixtures.py).

For every recurrent layer: the Keras reference on the arrays lstmconv reads reproduces tf_keras' own output
and states; the layer converts to torch and the real ``torch.nn`` module (with the wrapper steps stated in
the file's metadata) reproduces them too, or it is refused for the reason listed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import RefusedConversionError
from lstmconv.schema import RecurrentLayer
from tests.conftest import DATA, assert_close

FIXTURES = DATA / "keras2"
CASES = sorted(p.name[: -len(".h5")] for p in FIXTURES.glob("*.h5"))
REFUSED = {
    "char_lstm_sigmoid": {"lstm": "hard-codes tanh for the candidate, this layer uses activation sigmoid"},
    "lstm_hard_sigmoid": {"lstm": "hard_sigmoid(alpha=0.2, beta=0.5)"},
    "gru_hard_sigmoid_reset_before": {"gru": "reset_after=False"},
    "gru_reset_before": {"gru": "reset_after=False"},
    "functional_two_branches": {"right_gru": "reset_after=False"},
}


def _keras_states(layer: RecurrentLayer, states: list) -> list[np.ndarray]:
    """Flatten reference states into Keras' return_state order: h[, c] forward, then backward."""
    flat = []
    for h, c in states[0]:
        flat.append(h)
        if layer.cell == "lstm":
            flat.append(c)
    return flat


def test_every_fixture_is_covered() -> None:
    assert len(CASES) >= 20, CASES
    assert (FIXTURES / "versions.json").exists()


@pytest.mark.parametrize("case", CASES)
def test_keras_reference_reproduces_tf_keras(case: str) -> None:
    loaded = lstmconv.load(FIXTURES / f"{case}.h5")
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    layers = loaded.model.recurrent_layers()
    assert layers
    for layer in layers:
        out = loaded.references[layer.name](expected[f"{layer.name}/x"], None)
        y = np.stack(out.y) if isinstance(out.y, tuple) else out.y
        assert_close(y, expected[f"{layer.name}/y"], f"{case} {layer.name} y")
        for index, state in enumerate(_keras_states(layer, out.states)):
            assert_close(state, expected[f"{layer.name}/states"][index], f"{case} {layer.name} state {index}")


def _run_torch(module, layer: RecurrentLayer, x: np.ndarray):  # type: ignore[no-untyped-def]
    """The real torch module plus the wrapper steps the metadata states (go_backwards, merge_mode)."""
    import torch

    fed = torch.from_numpy(np.ascontiguousarray(x[:, ::-1] if layer.go_backwards else x))
    with torch.no_grad():
        y, state = module(fed)
    y = y.numpy()
    if layer.bidirectional and layer.merge_mode != "concat":
        forward, backward = y[..., : layer.hidden_size], y[..., layer.hidden_size :]
        y = {
            "sum": lambda: forward + backward,
            "mul": lambda: forward * backward,
            "ave": lambda: (forward + backward) / 2,
            "none": lambda: np.stack([forward, backward]),
        }[layer.merge_mode]()
    h_n = (state[0] if isinstance(state, tuple) else state).numpy()
    c_n = state[1].numpy() if isinstance(state, tuple) else None
    flat = []
    for index in range(h_n.shape[0]):
        flat.append(h_n[index])
        if c_n is not None:
            flat.append(c_n[index])
    return y, flat


@pytest.mark.parametrize("case", CASES)
def test_torch_module_reproduces_tf_keras_or_is_refused(case: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    destination = tmp_path / f"{case}.safetensors"
    refused = REFUSED.get(case, {})
    loaded = lstmconv.load(FIXTURES / f"{case}.h5")
    names = [layer.name for layer in loaded.model.recurrent_layers()]
    if refused:
        with pytest.raises(RefusedConversionError) as caught:
            lstmconv.convert(FIXTURES / f"{case}.h5", destination, to="torch")
        assert not destination.exists()
        reasons = {error.layer: str(error) for error in caught.value.refusals}
        assert set(reasons) == set(refused)
        for layer, words in refused.items():
            assert words in reasons[layer]
    if not set(names) - set(refused):
        return
    lstmconv.convert(FIXTURES / f"{case}.h5", destination, to="torch", skip_unsupported=bool(refused))
    modules = load_torch_modules(destination)
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    for layer in loaded.model.recurrent_layers():
        if layer.name in refused:
            assert layer.name not in modules
            continue
        y, states = _run_torch(modules[layer.name], layer, expected[f"{layer.name}/x"])
        assert_close(y, expected[f"{layer.name}/y"], f"{case} {layer.name} y (torch)")
        for index, state in enumerate(states):
            assert_close(state, expected[f"{layer.name}/states"][index], f"{case} {layer.name} state {index} (torch)")
