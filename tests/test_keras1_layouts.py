"""Keras 1 per-gate files, built from a tf_keras GRU/LSTM fixture by splitting its fused arrays the way
Keras 1 stored them (``<layer>_W_z``..., LSTM triples in i, c, f, o order, no keras_version attribute).

Ground truth stays tf_keras' own output of the fused layer (Keras 2's loader fuses Keras 1 files the same
way: ``preprocess_weights_for_loading``); the names-less variant checks the positional fallback.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import lstmconv
from tests.conftest import DATA, assert_close

FIXTURES = DATA / "keras2"
LETTERS = {"gru": "zrh", "lstm": "icfo"}  # Keras 1 file order: GRU z, r, h; LSTM i, c, f, o
FUSED_ORDER = {"gru": "zrh", "lstm": "ifco"}  # Keras 2 kernel column order


def _write_keras1(path: Path, case: str, cell: str, *, named: bool) -> str:
    with h5py.File(FIXTURES / f"{case}.h5") as source:
        group = source["model_weights"][cell]
        kernel, recurrent, bias = (group[n][()] for n in group.attrs["weight_names"])
    units = recurrent.shape[0]
    block = {g: slice(i * units, (i + 1) * units) for i, g in enumerate(FUSED_ORDER[cell])}
    name = f"{cell}_1"
    arrays = []
    for g in LETTERS[cell]:
        arrays += [(f"{name}_W_{g}", kernel[:, block[g]]), (f"{name}_U_{g}", recurrent[:, block[g]]), (f"{name}_b_{g}", bias[block[g]])]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode()]
        g = f.create_group(name)
        stored = [(n if named else f"param_{i}", a) for i, (n, a) in enumerate(arrays)]
        g.attrs["weight_names"] = [n.encode() for n, _ in stored]
        for n, a in stored:
            g.create_dataset(n, data=a)
    return name


@pytest.mark.parametrize("named", [True, False], ids=["named", "positional"])
@pytest.mark.parametrize(("case", "cell"), [("gru_hard_sigmoid_reset_before", "gru"), ("lstm_hard_sigmoid", "lstm")])
def test_keras1_per_gate_file_reads_exactly(tmp_path: Path, case: str, cell: str, named: bool) -> None:
    path = tmp_path / "keras1.h5"
    name = _write_keras1(path, case, cell, named=named)
    loaded = lstmconv.load(path)
    (layer,) = loaded.model.recurrent_layers()
    assert layer.source.layout == "keras1-per-gate" and layer.source.version is None
    assert layer.activations.gate is not None and layer.activations.gate.alpha == pytest.approx(0.2)
    assert any("hard_sigmoid" in fact for fact in layer.source.inferred)
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    out = loaded.references[name](expected[f"{cell}/x"], None)
    assert_close(out.y, expected[f"{cell}/y"], f"{case} keras1 y")
