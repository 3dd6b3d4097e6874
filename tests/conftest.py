"""Shared test helpers: where the third-party corpus lives, and small comparison utilities."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
# The corpus of real third-party models sits beside the checkout (../shared/corpus); never committed.
CORPUS = Path(os.environ.get("LSTMCONV_CORPUS", ROOT.parent / "shared" / "corpus"))


def corpus_file(relative: str) -> Path:
    """Path of a corpus file, skipping the test when the corpus is not present."""
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"corpus file {relative} not present at {CORPUS}")
    return path


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str, atol: float = 1e-5) -> None:
    """float32 framework outputs: 1e-5 absolute, plus 1e-5 relative for large values such as LSTM cells."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=1e-5, err_msg=what)
