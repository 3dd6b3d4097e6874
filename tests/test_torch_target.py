"""The torch target's files: .pt is a plain state_dict loadable with weights_only=True; output is deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.io.torch_files import read_torch_file
from tests.conftest import DATA

SOURCE = DATA / "keras2" / "bidirectional_concat.h5"


def test_pt_state_dict_matches_safetensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    lstmconv.convert(SOURCE, tmp_path / "a.safetensors")
    lstmconv.convert(SOURCE, tmp_path / "a.pt")
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    tensors, metadata = read_torch_file(tmp_path / "a.safetensors")
    assert metadata is not None and metadata["layers"][0]["bidirectional"] is True
    assert sorted(state) == sorted(tensors)
    assert "bidirectional.weight_ih_l0_reverse" in state
    for key, value in tensors.items():
        assert state[key].numpy().tobytes() == value.tobytes()


def test_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    lstmconv.convert(SOURCE, tmp_path / "one.safetensors")
    lstmconv.convert(SOURCE, tmp_path / "two.safetensors")
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()


def test_keras_bias_goes_to_bias_ih_and_bias_hh_is_zero(tmp_path: Path) -> None:
    loaded = lstmconv.load(DATA / "keras2" / "stacked_lstm.h5")
    state = lstmconv.to_torch_state_dict(loaded)
    assert not np.any(state["lstm.bias_hh_l0"])
    assert np.any(state["lstm.bias_ih_l0"])
