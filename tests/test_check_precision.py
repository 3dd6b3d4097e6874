"""The numeric check runs in float64 except for layers too large to widen (see lstmconv.verify)."""

from __future__ import annotations

import numpy as np

import lstmconv
from lstmconv.schema import RecurrentLayer
from lstmconv.verify import check_dtype, random_inputs
from tests.conftest import DATA


def test_small_layers_are_checked_in_float64_and_large_float32_layers_at_their_own_precision() -> None:
    layer = next(layer for layer in lstmconv.load(DATA / "keras2" / "stacked_lstm.h5").model.layers if isinstance(layer, RecurrentLayer))
    meta = layer.meta()
    assert meta.dtype == "float32"
    assert check_dtype(meta) is np.float64
    assert random_inputs(meta)[0].dtype == np.float64
    # 4 gates x 1024 x (1024 + 1024) float32 weights: 32 MiB, 64 MiB widened
    large = meta.model_copy(update={"input_size": 1024, "hidden_size": 1024})
    assert check_dtype(large) is np.float32
    assert random_inputs(large)[0].dtype == np.float32
    assert check_dtype(large.model_copy(update={"dtype": "float64"})) is np.float64
