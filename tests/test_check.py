"""The numeric check: it tells wrong mappings from right ones (gate order, biases, directions, time order),
and runs in float64 except for layers too large to widen (see lstmconv.pipeline.numeric_check)."""

from __future__ import annotations

import numpy as np
import pytest

import lstmconv
from lstmconv.adapters.torch import layer_from_canonical
from lstmconv.reference.common import LayerOutput, LayerStates
from lstmconv.schema import RecurrentLayer
from lstmconv.reference.torch_function import torch_layer_function
from lstmconv.pipeline.numeric_check import check_dtype, check_layer, random_inputs, tolerance
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


def _layer(fixture: str) -> tuple[RecurrentLayer, object]:
    loaded = lstmconv.load(DATA / "keras2" / fixture)
    layer = next(layer for layer in loaded.model.layers if isinstance(layer, RecurrentLayer))
    return layer, loaded.references[layer.name]


def _swap_rows(weight: np.ndarray, gates: int, a: int, b: int) -> np.ndarray:
    blocks = list(np.split(weight, gates, axis=0))
    blocks[a], blocks[b] = blocks[b], blocks[a]
    return np.concatenate(blocks, axis=0)


MISTAKES = {
    "forget and cell gates swapped": lambda p: {**p, "weight_ih_l0": _swap_rows(p["weight_ih_l0"], 4, 1, 2)},
    "recurrent gates swapped": lambda p: {**p, "weight_hh_l0": _swap_rows(p["weight_hh_l0"], 4, 0, 3)},
    "bias dropped": lambda p: {**p, "bias_ih_l0": np.zeros_like(p["bias_ih_l0"])},  # Keras' one bias went here
    "bias gates swapped": lambda p: {**p, "bias_ih_l0": _swap_rows(p["bias_ih_l0"], 4, 0, 1)},
    "directions swapped": lambda p: {
        **p,
        **{key: p[key + "_reverse"] for key in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")},
        **{key + "_reverse": p[key] for key in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")},
    },
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_the_check_catches_mapping_mistakes(mistake: str) -> None:
    layer, reference = _layer("bidirectional_concat.h5")
    params = layer_from_canonical(layer)
    meta = layer.meta()
    tol = tolerance(meta.dtype)
    assert check_layer(meta, reference, torch_layer_function(meta, params)) <= tol
    assert check_layer(meta, reference, torch_layer_function(meta, MISTAKES[mistake](params))) > 100 * tol


@pytest.mark.parametrize("fixture", ["go_backwards_lstm.h5", "bidirectional_concat.h5"])
def test_the_check_catches_time_order_mistakes(fixture: str) -> None:
    layer, reference = _layer(fixture)
    meta = layer.meta()
    right = torch_layer_function(meta, layer_from_canonical(layer))
    tol = tolerance(meta.dtype)

    def reversed_output(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        out = right(x, initial)
        return LayerOutput(y=out.y[:, ::-1], states=out.states)

    def reversed_input(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        return right(x[:, ::-1], initial)

    assert check_layer(meta, reference, right) <= tol
    for wrong in (reversed_output, reversed_input):
        assert check_layer(meta, reference, wrong) > 100 * tol
    if meta.go_backwards:  # forgetting go_backwards altogether
        forgot = torch_layer_function(meta.model_copy(update={"go_backwards": False}), layer_from_canonical(layer))
        assert check_layer(meta, reference, forgot) > 100 * tol
