"""The canonical schema: JSON Schema kept in sync, shape validation naming the tensor, gate slicing in one place."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lstmconv.activations import Activation
from lstmconv.errors import ConfigError, ShapeMismatchError
from lstmconv.gates import split_gates, stack_gates
from lstmconv.schema import CellActivations, DirectionWeights, GateWeights, RecurrentLayer, SourceInfo, StackLevel
from lstmconv.schema_export import metadata_json_schema
from tests.conftest import ROOT


def test_json_schema_file_is_in_sync() -> None:
    committed = (ROOT / "schemas" / "lstmconv-metadata.schema.json").read_text()
    assert committed == metadata_json_schema(), "run: python -m lstmconv.schema_export > schemas/lstmconv-metadata.schema.json"


def _lstm(w_input_shape: tuple[int, int] = (3, 2)) -> RecurrentLayer:
    gate = GateWeights(w_input=np.zeros(w_input_shape, np.float32), w_recurrent=np.zeros((3, 3), np.float32))
    acts = CellActivations(gate=Activation(name="sigmoid"), candidate=Activation(name="tanh"), cell_output=Activation(name="tanh"))
    return RecurrentLayer(
        name="lstm",
        cell="lstm",
        input_size=2,
        hidden_size=3,
        activations=acts,
        use_bias=False,
        source=SourceInfo(framework="arrays", layout="test"),
        levels=(StackLevel(forward=DirectionWeights(gates=dict.fromkeys(("input", "forget", "cell", "output"), gate))),),
    )


def test_shape_mismatch_names_layer_tensor_and_shapes() -> None:
    with pytest.raises(ShapeMismatchError) as caught:
        _lstm((2, 3))
    message = str(caught.value)
    assert "layer 'lstm'" in message and "levels[0].forward" in message and "w_input" in message
    assert "expected (3, 2), got (2, 3)" in message


def test_canonical_arrays_are_read_only_views_and_callers_arrays_untouched() -> None:
    kernel = np.arange(6, dtype=np.float32).reshape(3, 2)
    gate = GateWeights(w_input=kernel, w_recurrent=np.zeros((3, 3), np.float32))
    assert not gate.w_input.flags.writeable
    assert kernel.flags.writeable
    assert np.shares_memory(gate.w_input, kernel)


def test_hard_sigmoid_needs_its_numbers() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Activation(name="hard_sigmoid")


def test_gru_must_state_reset_placement() -> None:
    with pytest.raises(ConfigError, match="reset_after"):
        RecurrentLayer.model_validate({**_lstm().model_dump(), "cell": "gru", "levels": _lstm().levels})


def test_split_and_stack_are_inverse_and_views() -> None:
    stacked = np.arange(24.0).reshape(2, 12)
    blocks = split_gates(stacked, "onnx", "lstm", axis=1)
    assert list(blocks) == ["input", "output", "forget", "cell"]
    assert all(np.shares_memory(b, stacked) for b in blocks.values())
    np.testing.assert_array_equal(stack_gates(blocks, "onnx", "lstm", axis=1), stacked)
    torch_order = stack_gates(blocks, "torch", "lstm", axis=1)
    np.testing.assert_array_equal(split_gates(torch_order, "torch", "lstm", axis=1)["forget"], blocks["forget"])


def test_no_gate_slicing_outside_the_gate_table() -> None:
    """Only lstmconv/gates.py slices stacked gates; everything else calls split_gates/stack_gates.

    Flags slice expressions computed from a hidden size (``w[:, H:2*H]``), splits of weights into equal
    parts, and gate-permutation literals anywhere in the package.
    """
    slice_expression = re.compile(r"\[[^\[\]\n]*:[^\[\]\n]*\]")
    sized = re.compile(r"\b(hidden|hidden_size|units|H)\b")
    permutation = re.compile(r"\[\s*0\s*,\s*3\s*,\s*1\s*,\s*2\s*\]|\[\s*1\s*,\s*0\s*,\s*2\s*\]\s*#.*gate")
    offenders = []
    for path in sorted((ROOT / "lstmconv").rglob("*.py")):
        if path.name == "gates.py":
            continue
        weights_code = path.parent.name in ("adapters", "reference", "targets") or path.name.startswith("keras")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            bad = any(sized.search(m.group(0)) for m in slice_expression.finditer(code))
            bad = bad or bool(permutation.search(line))
            bad = bad or (weights_code and ("np.split(" in code or "array_split(" in code))
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
