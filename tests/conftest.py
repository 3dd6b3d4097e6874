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


@pytest.fixture(autouse=True, scope="session")
def _every_written_onnx_model_passes_the_onnx_checker() -> object:
    """lstmconv checks the structure of the graphs it writes itself (importing the onnx package would cost a
    conversion 0.8 s of start-up); here every model any test writes is also checked by ``onnx.checker`` with
    full shape inference, before it is put in place."""
    try:
        import onnx
    except ImportError:
        yield None
        return
    from lstmconv.targets.onnx import OnnxWriter

    own_check = OnnxWriter.check

    def check(self: OnnxWriter, path: Path, *companions: Path) -> None:
        own_check(self, path, *companions)
        model = onnx.load(str(path), load_external_data=False)
        # the data file still has its temporary name: its tensors are checked as typed inputs instead
        external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        for tensor in external:
            model.graph.initializer.remove(tensor)
            model.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        onnx.checker.check_model(model, full_check=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OnnxWriter, "check", check)
        yield None
