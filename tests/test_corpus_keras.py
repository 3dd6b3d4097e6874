"""The real-world Keras corpus: every recurrent layer is read exactly, then converted or refused for the right reason.

Ground truth is ``../shared/corpus/*.expected.npz``, computed by the real frameworks (tf_keras for Keras 1/2
files, Keras 3 for Keras 3 files). For every recurrent layer of every Keras file:

1. the Keras reference cell on the arrays as read reproduces the recorded outputs (reading is right);
2. the layer either converts to torch and the real ``torch.nn`` module built from the written file
   reproduces the recorded outputs within 1e-5 (float32), or it is refused with the reason below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import RefusedConversionError
from tests.conftest import assert_close, corpus_file

SIDE_CARS = {"chen-sentiment/bidirectional_lstm_softmax_weights.h5": "chen-sentiment/bidirectional_lstm_softmax_architecture.json"}

# file -> {layer: words the refusal must contain}; every other recurrent layer must convert.
REFUSED = {
    "aind2-rnn/best_RNN_large_textdata_weights.hdf5": {"lstm_1": "hard_sigmoid(alpha=0.2"},
    "aind2-rnn/best_RNN_small_textdata_weights.hdf5": {"lstm_15": "hard_sigmoid(alpha=0.2"},
    "process-seq-pred/model_89-1.50.h5": {n: "hard_sigmoid(alpha=0.2" for n in ("lstm_1", "lstm_2", "lstm_3")},
    "chen-sentiment/bidirectional_lstm_softmax_weights.h5": {"bidirectional_1": "hard_sigmoid(alpha=0.2"},
    "mycroft-precise/hey-mycroft.net": {"net": "activation linear"},
    "medaka/medaka_model.hdf5": {n: "reset_after=False" for n in ("bidirectional_1", "bidirectional_2")},
    "katakana-seq2seq/model.h5": {n: "hard_sigmoid(alpha=0.2" for n in ("lstm_1", "lstm_2")},
}
CONVERTED = {
    "textgenrnn/textgenrnn_weights.hdf5": ["rnn_1", "rnn_2"],
    "poreplex/demux-tetra-r4.hdf5": ["bidirectional_2", "rnn_1"],
    "lstm-multi/model.h5": ["lstm_1"],
    "imdb-rnn-compare/simplernn_model.h5": ["simple_rnn"],
    "electricity-prices/gru_model.h5": ["gru", "gru_1", "gru_2"],
    "stock-rnn-lstm-gru/gru_model.h5": ["gru"],
    "water-forecast/lstm_model.keras": ["lstm_4", "lstm_5"],
    "bilstm-nifty50/bilstm_model.keras": ["bidirectional", "bidirectional_1"],
}
FILES = sorted({*REFUSED, *CONVERTED})


def _load(relative: str) -> lstmconv.pipeline.load.LoadedModel:
    sidecar = SIDE_CARS.get(relative)
    return lstmconv.load(corpus_file(relative), config=corpus_file(sidecar) if sidecar else None)


def _entries(expected: np.lib.npyio.NpzFile, layer: str) -> list[str]:
    """Whole-layer entries of ``layer`` ('lstm_1', 'lstm_1@T12'), not its per-direction entries."""
    return sorted({k.rsplit("/", 1)[0] for k in expected if k.split("/")[0].split("@")[0] == layer and k.count("/") == 1})


def _directions(expected: np.lib.npyio.NpzFile, entry: str) -> list[str]:
    """Per-direction entries of a bidirectional layer, forward first (the order of states)."""
    found = {k.rsplit("/", 1)[0] for k in expected if k.startswith(entry + "/") and k.count("/") == 2}
    return sorted(found, key=lambda d: (not d.rsplit("/", 1)[-1].startswith("forward"), d))


# The reference runs in float64; the recorded outputs come from float32 frameworks whose rounding over
# 128-wide dot products and 12 steps reaches ~2e-5 (textgenrnn): 5e-5, the corpus verifier's own bound.
REFERENCE_ATOL = 5e-5


@pytest.mark.parametrize("relative", FILES)
def test_keras_reference_reproduces_the_framework(relative: str) -> None:
    loaded = _load(relative)
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    layers = loaded.model.recurrent_layers()
    assert sorted(layer.name for layer in layers) == sorted([*REFUSED.get(relative, {}), *CONVERTED.get(relative, [])])
    for layer in layers:
        reference = loaded.references[layer.name]
        entries = _entries(expected, layer.name)
        assert entries, f"no expected outputs for {layer.name}"
        for entry in entries:
            out = reference(expected[f"{entry}/x"], None)
            assert_close(out.y, expected[f"{entry}/y"], f"{relative} {entry} y", REFERENCE_ATOL)
            directions = _directions(expected, entry) or [entry]
            for (h, c), direction in zip(out.states[0], directions):
                assert_close(h, expected[f"{direction}/h"], f"{relative} {direction} h", REFERENCE_ATOL)
                if layer.cell == "lstm":
                    assert_close(c, expected[f"{direction}/c"], f"{relative} {direction} c", REFERENCE_ATOL)


@pytest.mark.parametrize("relative", FILES)
def test_torch_conversion_matches_the_framework_or_is_refused(relative: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from lstmconv.torch_modules import load_torch_modules

    sidecar = SIDE_CARS.get(relative)
    config = corpus_file(sidecar) if sidecar else None
    destination = tmp_path / "out.safetensors"
    refused = REFUSED.get(relative, {})
    if refused:
        with pytest.raises(RefusedConversionError) as caught:
            lstmconv.convert(corpus_file(relative), destination, to="torch", config=config)
        assert not destination.exists()
        reasons = {error.layer: str(error) for error in caught.value.refusals}
        assert set(reasons) == set(refused)
        for layer, words in refused.items():
            assert words in reasons[layer], reasons[layer]
    converted = CONVERTED.get(relative, [])
    if not converted:
        return
    report = lstmconv.convert(corpus_file(relative), destination, to="torch", config=config, skip_unsupported=True)
    checked = {r.name: r.max_abs_error for r in report.layers}
    expected = np.load(str(corpus_file(relative)) + ".expected.npz")
    modules = load_torch_modules(destination)
    for name in converted:
        assert checked[name] is not None and checked[name] <= 1e-5, (name, checked[name])
        module = modules[name]
        for entry in _entries(expected, name):
            with torch.no_grad():
                y, state = module(torch.from_numpy(expected[f"{entry}/x"]))
            assert_close(y.numpy(), expected[f"{entry}/y"], f"{relative} {entry} y (torch)")
            h_n = (state[0] if isinstance(state, tuple) else state).numpy()
            c_n = state[1].numpy() if isinstance(state, tuple) else None
            for index, direction in enumerate(_directions(expected, entry) or [entry]):
                assert_close(h_n[index], expected[f"{direction}/h"], f"{relative} {direction} h (torch)")
                if c_n is not None:
                    assert_close(c_n[index], expected[f"{direction}/c"], f"{relative} {direction} c (torch)")
