"""torch state dicts as sources: .pt/.pth (weights_only=True only, legacy pickles too) and .safetensors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError
from tests.conftest import assert_close, corpus_file

torch = pytest.importorskip("torch")
onnxruntime = pytest.importorskip("onnxruntime")

CORPUS_PT = {"multivariate-lstm/gru.pt": "gru", "name-nation/bilstm.pt": "rnn"}


@pytest.mark.parametrize("relative", sorted(CORPUS_PT))
def test_corpus_state_dicts_convert_to_onnx_and_match(relative: str, tmp_path: Path) -> None:
    name = CORPUS_PT[relative]
    out = tmp_path / "m.onnx"
    lstmconv.convert(corpus_file(relative), out, to="onnx")
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {}
    for item in session.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in item.shape]
        feeds[item.name] = expected[f"{name}/x"] if item.name == f"{name}.x" else np.zeros(shape, np.float32)
    results = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    assert_close(results[f"{name}.y"], expected[f"{name}/y"], f"{relative} y")
    # expected h is (batch, levels*directions, hidden); ONNX/torch h_n is (levels*directions, batch, hidden)
    assert_close(results[f"{name}.h_n"].transpose(1, 0, 2), expected[f"{name}/h"], f"{relative} h_n")


@pytest.mark.parametrize("relative", sorted(CORPUS_PT))
def test_state_dict_round_trips_bit_exactly_through_canonical(relative: str, tmp_path: Path) -> None:
    lstmconv.convert(corpus_file(relative), tmp_path / "c.safetensors", to="canonical")
    lstmconv.convert(tmp_path / "c.safetensors", tmp_path / "back.pt", to="torch")
    original = torch.load(corpus_file(relative), weights_only=True, map_location="cpu")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert sorted(back) == sorted(original)
    for key, value in original.items():
        assert back[key].numpy().tobytes() == value.numpy().tobytes(), key


def test_module_prefix_and_layer_keys_are_preserved(tmp_path: Path) -> None:
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    state = {f"encoder.rnn.{k}": v for k, v in module.state_dict().items()}
    torch.save(state, tmp_path / "s.pt")
    loaded = lstmconv.load(tmp_path / "s.pt")
    (layer,) = loaded.model.recurrent_layers()
    assert layer.name == "encoder.rnn" and layer.num_levels == 2 and layer.bidirectional and layer.projection_size == 2
    lstmconv.convert(tmp_path / "s.pt", tmp_path / "again.safetensors", to="torch")
    from safetensors.numpy import load_file

    again = load_file(str(tmp_path / "again.safetensors"))
    assert sorted(again) == sorted(state)
    with pytest.raises(lstmconv.errors.RefusedConversionError, match="projection"):
        lstmconv.convert(tmp_path / "s.pt", tmp_path / "x.onnx", to="onnx")


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.target), "w"))


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "created-by-pickle"
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"weight": _Exploit(target)}, handle)
    with pytest.raises(InputFormatError, match="weights_only=True"):
        lstmconv.load(path)
    assert not target.exists()


def test_in_memory_state_dict_converts_like_a_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    loaded = lstmconv.load_state_dict({f"encoder.{k}": v for k, v in module.state_dict().items()})
    (layer,) = loaded.model.recurrent_layers()
    assert layer.name == "encoder" and layer.num_levels == 2 and layer.bidirectional and layer.reset_after
    lstmconv.save_onnx(loaded, tmp_path / "g.onnx")
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(["encoder.y"], {"encoder.x": x})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    assert_close(y, expected, "in-memory state dict -> ONNX")


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_in_memory_rnn_state_dict_takes_the_nonlinearity_it_is_given(nonlinearity: str, tmp_path: Path) -> None:
    """A state dict does not record nn.RNN's nonlinearity; the caller's word must be used (it was dropped once)."""
    torch.manual_seed(0)
    module = torch.nn.RNN(3, 4, nonlinearity=nonlinearity, batch_first=True)
    loaded = lstmconv.load_state_dict(module.state_dict(), nonlinearity=nonlinearity)
    (layer,) = loaded.model.recurrent_layers()
    assert layer.activations.candidate.name == nonlinearity
    lstmconv.save_onnx(loaded, tmp_path / "r.onnx")
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32) * 3  # negative pre-activations too
    session = onnxruntime.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    y = session.run([f"{layer.name}.y"], {f"{layer.name}.x": x})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    assert_close(y, expected, f"nn.RNN({nonlinearity}) state dict -> ONNX")
