"""Every fixture and corpus file converted to every Keras target reads back as the same function: what a Keras
file does not hold (the model config; in a weights file, each layer's class and options) is written beside the
weights, and ``verify`` compares every layer."""

from __future__ import annotations

from pathlib import Path

import pytest

import lstmconv
from tests.conftest import CORPUS, DATA, ROOT

KERAS_TARGETS = (".weights.h5", ".h5", ".keras")
# Formats lstmconv reads today, found in the fixtures and in the third-party corpus (when present).
_SUFFIXES = (".h5", ".hdf5", ".keras", ".net", ".onnx", ".pt", ".pth")
_NOT_MODELS = ("model.pt",)  # sarcasm-keras-pickled-pt/lstm/model.pt holds a pickled Keras model, not tensors


def _sources() -> list[Path]:
    found = [ROOT / "examples" / "sine_lstm.h5", *sorted((DATA / "keras2").glob("*.h5")), *sorted((DATA / "tf2onnx").glob("*.onnx"))]
    if CORPUS.exists():
        found += sorted(
            p for p in CORPUS.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES) and p.name not in _NOT_MODELS
        )
    return found


def _id(path: Path) -> str:
    return str(path.relative_to(CORPUS if path.is_relative_to(CORPUS) else ROOT))


@pytest.mark.parametrize("suffix", KERAS_TARGETS)
@pytest.mark.parametrize("source", _sources(), ids=_id)
def test_a_written_keras_file_reads_back_as_the_same_function(source: Path, suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"out{suffix}"
    try:
        lstmconv.convert(source, out, to="keras")
    except lstmconv.LstmconvError as refused:  # refused with its reason (tests elsewhere): nothing to read back
        assert not out.exists(), refused
        pytest.skip(f"refused: {refused.message}")
    outcome = lstmconv.verify(source, out)
    assert outcome.same, [(r.left, r.right, r.max_abs_error, r.note) for r in outcome.layers]
