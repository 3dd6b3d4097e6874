"""The tfjs target: model.json files that real ``@tensorflow/tfjs`` 4.22 loads in Node and that predict what the
source computes, or a refusal that says why.

tfjs comes from the test set-up (the README's test command installs ``@tensorflow/tfjs@4.22.0`` into ``.tfjs``;
``LSTMCONV_TFJS_MODULES`` names another ``node_modules``); without Node or tfjs these tests skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from tests.conftest import DATA, assert_close
from tests.tfjs_helpers import tfjs_predict

FIXTURES = sorted(
    p.stem for p in (DATA / "keras2").glob("*.h5")
    if p.with_suffix(".outputs.npz").exists() and "__model__/y" in np.load(p.with_suffix(".outputs.npz")).files
)
# what tfjs 4.22 cannot compute, and why (its GRUCell throws on reset_after=True, the Keras 2.3+ default)
REFUSED = {case: "GRU reset_after=True" for case in ("gru_reset_after", "cudnn_gru", "bidirectional_sum", "go_backwards_gru")}


@pytest.mark.parametrize("case", FIXTURES)
def test_keras2_fixtures_load_in_tfjs_and_predict_what_tf_keras_predicted(case: str, tmp_path: Path) -> None:
    source = DATA / "keras2" / f"{case}.h5"
    out = tmp_path / "model.json"
    if case in REFUSED:
        with pytest.raises(lstmconv.LstmconvError, match=REFUSED[case]) as refused:
            lstmconv.convert(source, out)
        assert "--skip-unsupported" not in str(refused.value)  # a layers model is the whole model
        assert not list(tmp_path.iterdir())
        return
    try:
        lstmconv.convert(source, out)
    except lstmconv.LstmconvError as error:
        assert "how the layers connect" in str(error), error  # a weights-only fixture: no model to write
        return
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.json"]
    expected = np.load(DATA / "keras2" / f"{case}.outputs.npz")
    inputs = [expected[k] for k in sorted(k for k in expected.files if k.startswith("__model__/x"))]
    (y, *_) = tfjs_predict(out, inputs, tmp_path)
    assert_close(y, expected["__model__/y"], f"{case} in tfjs")
    assert lstmconv.verify(source, out).same  # and read back by lstmconv's tfjs reader


def test_a_keras3_model_is_written_in_the_dialect_tfjs_reads(tmp_path: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    pytest.importorskip("torch")
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4, return_sequences=True), keras.layers.Dense(2)])
    source = tmp_path / "m.keras"
    model.save(source)
    out = tmp_path / "tfjs" / "model.json"
    out.parent.mkdir()
    lstmconv.convert(source, out)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    (y,) = tfjs_predict(out, [x], tmp_path)
    assert_close(y, keras.ops.convert_to_numpy(model(x)), "Keras 3 model in tfjs")


def test_a_source_without_a_model_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(lstmconv.LstmconvError, match="how the layers connect"):
        lstmconv.convert(DATA / "keras2" / "weights_only_stacked.h5", tmp_path / "model.json")
    assert not list(tmp_path.iterdir())
