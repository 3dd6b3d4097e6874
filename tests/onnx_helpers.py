"""Build one-node ONNX models and run them in onnxruntime (test helper)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def one_node_model(op: str, inputs: dict[str, np.ndarray | None], runtime: list[str], attrs: dict[str, Any], opset: int = 14) -> onnx.ModelProto:
    """A model computing one recurrent node; ``runtime`` inputs are graph inputs, the rest initializers."""
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    names = [name if inputs.get(name) is not None or name in runtime else "" for name in order]
    while names and names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outputs, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT, [None] * (1 if n == "sequence_lens" else 3))
        for n in runtime
    ]
    initializers = [
        numpy_helper.from_array(np.asarray(v, dtype=np.float32), n)
        for n, v in inputs.items()
        if v is not None and n not in runtime
    ]
    graph = helper.make_graph(
        [node], "g", graph_inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * (4 if o == "Y" else 3)) for o in outputs], initializers
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def random_weights(op: str, directions: int, hidden: int, features: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """W, R and B of a node, random with scale 0.5 (so that activations do not saturate)."""
    gates = GATES[op]
    return {
        "W": rng.normal(size=(directions, gates * hidden, features)) * 0.5,
        "R": rng.normal(size=(directions, gates * hidden, hidden)) * 0.5,
        "B": rng.normal(size=(directions, 2 * gates * hidden)) * 0.5,
    }


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
