"""ONNX ``Loop`` nodes that tf2onnx writes for a Keras SimpleRNN or GRU (it has a fused op only for LSTM and some
GRUs), read as the recurrent node they compute, or not at all.

tf2onnx lowers ``keras.layers.SimpleRNN`` / ``GRU`` to TensorFlow's ``while`` loop: a ``Loop`` whose carried values
are the step ``t``, the state ``h``, the length and the cell's weights (the outer graph's constants), whose body
``Gather``\\ s step ``t`` of the time-major sequence from the outer graph and emits ``h'`` as its scan output. This
module finds the weights by the body's use of them (the matrix multiplied with the gathered step is the kernel,
the other the recurrent kernel, a vector the bias), proposes the Keras cells those shapes can be (SimpleRNN with
tanh, relu, sigmoid or linear; GRU with sigmoid or hard_sigmoid gates, tanh or relu candidate, reset before or
after the product), and keeps the one that computes what the body computes: the body is run here, op by op, on
random inputs and states over several steps and compared with the ONNX reference of the proposed node. A body
no proposal reproduces, or one with an op this evaluator does not know, is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lstmconv.activations import Activation
from lstmconv.io import onnx_proto
from lstmconv.io.onnx_proto import attribute_value
from lstmconv.layouts.onnx import OnnxRecurrentNode
from lstmconv.reference.onnx import onnx_forward

__all__ = ["read_loop"]

_STEPS, _BATCH = 4, 3
_HARD_SIGMOIDS = (Activation(name="hard_sigmoid", alpha=0.2, beta=0.5), Activation(name="hard_sigmoid", alpha=1 / 6, beta=0.5))
_CAST = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


class _Unknown(Exception):
    """The body holds an op (or a form of one) this evaluator does not run."""


def read_loop(
    node: onnx_proto.NodeProto, value: Callable[[str], np.ndarray | None], name: str,
    tensor: Callable[[onnx_proto.TensorProto], np.ndarray],
) -> OnnxRecurrentNode | str:
    """The recurrent node ``node`` (a ``Loop``) computes, or why it is not read as one; ``value(name)`` gives the
    outer graph's constants, ``tensor(proto)`` the values of the body's own (which may be in the file)."""
    body = next((a.g for a in node.attribute if a.name == "body"), None)
    if body is None or len(node.input) < 3:
        return "a Loop without a body or carried values"
    carried_outer = list(node.input[2:])
    carried_inner = [i.name for i in body.input[2:]]
    if len(carried_inner) != len(carried_outer):
        return "its body's inputs do not match its carried values"
    constants = {inner: value(outer) for inner, outer in zip(carried_inner, carried_outer) if outer}
    constants = {k: v for k, v in constants.items() if v is not None}
    produced = {out for n in body.node for out in n.output} | {i.name for i in body.input} | {t.name for t in body.initializer}
    gathers = [n for n in body.node if n.op_type == "Gather" and n.input[0] not in produced and n.input[1] in carried_inner]
    if len(gathers) != 1:
        return "its body does not read one step of an outer sequence (one Gather by the loop's step)"
    step_input = gathers[0].output[0]
    matrices = {k: v for k, v in constants.items() if v.ndim == 2 and v.dtype.kind == "f"}
    vectors = {k: v for k, v in constants.items() if v.ndim == 1 and v.dtype.kind == "f" and v.size > 1}
    kernel_name = next((n.input[1] for n in body.node if n.op_type == "MatMul" and n.input[0] == step_input and n.input[1] in matrices), None)
    if kernel_name is None or len(matrices) not in (2, 3):
        return "its body multiplies the step by no constant kernel"
    kernel = matrices.pop(kernel_name)
    recurrent_name, recurrent = next(((k, v) for k, v in matrices.items() if v.shape[1] == kernel.shape[1]), (None, None))
    if recurrent is None:
        return "no recurrent kernel as wide as the kernel among its carried constants"
    matrices.pop(recurrent_name)  # type: ignore[arg-type]
    units = recurrent.shape[0]
    gates = kernel.shape[1] // units if units else 0
    if gates not in (1, 3) or kernel.shape[1] != gates * units or recurrent.shape != (units, gates * units):
        return f"weights of shapes {kernel.shape}, {recurrent.shape} are not a SimpleRNN's or a GRU's"
    biases = [v for v in [*vectors.values(), *matrices.values()] if v.size in (gates * units, 2 * gates * units)]
    step_name = gathers[0].input[1]
    h_name = next((n.input[0] for n in body.node if n.op_type == "MatMul" and n.input[0] in carried_inner and n.input[0] not in constants), None)
    if h_name is None or h_name == step_name:
        return "its body multiplies no carried state by the recurrent kernel"
    scans = body.output[1 + len(carried_inner):]
    if len(scans) != 1:
        return "its body emits no single output sequence"
    initializers = {t.name: tensor(t) for t in body.initializer}
    for proposal in _proposals(name, gates, units, kernel, recurrent, biases[0] if biases else None):
        try:
            if _reproduces(body, proposal, gathers[0].input[0], constants, initializers, carried_inner, step_name, h_name):
                return proposal
        except _Unknown as unknown:
            return f"its body holds {unknown}, which lstmconv does not run to check a reading"
        except (ValueError, IndexError, TypeError, KeyError, FloatingPointError):
            continue
    return "no SimpleRNN or GRU reading of its weights computes what its body computes"


def _proposals(name: str, gates: int, units: int, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None) -> list[OnnxRecurrentNode]:
    """The recurrent nodes the weights could be: Keras kernels (in, G*H) with gates z, r, h (ONNX's order too)."""
    W = np.ascontiguousarray(kernel.T[None], dtype=np.float32)
    R = np.ascontiguousarray(recurrent.T[None], dtype=np.float32)
    width = gates * units
    if bias is None:
        B = np.zeros((1, 2 * width), np.float32)
    elif bias.size == width:
        B = np.concatenate([bias.reshape(-1), np.zeros(width, bias.dtype)])[None].astype(np.float32)
    else:  # Keras reset_after: (2, 3H), input then recurrent bias
        B = bias.reshape(1, 2 * width).astype(np.float32)
    found = []
    if gates == 1:
        for candidate in ("tanh", "relu", "sigmoid", "linear"):
            activation = Activation(name=candidate)  # type: ignore[arg-type]
            found.append(OnnxRecurrentNode(op="RNN", name=name, hidden_size=units, activations=(activation,), W=W, R=R, B=B))
        return found
    for gate in (Activation(name="sigmoid"), *_HARD_SIGMOIDS):
        for candidate in (Activation(name="tanh"), Activation(name="relu")):
            for after in (False, True):
                found.append(OnnxRecurrentNode(op="GRU", name=name, hidden_size=units, activations=(gate, candidate),
                                               linear_before_reset=after, W=W, R=R, B=B))
    return found


def _reproduces(
    body: onnx_proto.GraphProto, proposal: OnnxRecurrentNode, sequence_name: str, constants: dict[str, np.ndarray],
    initializers: dict[str, np.ndarray], carried: list[str], step_name: str, h_name: str,
) -> bool:
    """Whether running ``body`` over a random sequence gives ``proposal``'s outputs, step by step (the step
    counter ``step_name`` counting from 0, the state ``h_name`` carried, every other carried value the length)."""
    rng = np.random.default_rng(7)
    inputs = proposal.W.shape[2]
    x = (rng.standard_normal((_STEPS, _BATCH, inputs)) * 2).astype(np.float32)
    h0 = rng.standard_normal((_BATCH, proposal.hidden_size)).astype(np.float32)
    expected, _, _ = onnx_forward(proposal, x, initial_h=h0[None])
    h = h0
    for t in range(_STEPS):
        env: dict[str, Any] = {k: np.asarray(_STEPS, np.int32) for k in carried}  # the length, where carried
        env.update(constants)
        env.update(initializers)
        env.update({step_name: np.asarray(t, np.int32), h_name: h, sequence_name: x,
                    body.input[0].name: np.asarray(t, np.int64), body.input[1].name: np.asarray(True)})
        outputs = _run(body, env)
        step_output = outputs[-1]
        if step_output.shape != expected[t, 0].shape or not np.allclose(step_output, expected[t, 0], rtol=1e-5, atol=1e-5):
            return False
        h = dict(zip(carried, outputs[1 : 1 + len(carried)]))[h_name]
    return True


def _run(graph: onnx_proto.GraphProto, env: dict[str, Any]) -> list[np.ndarray]:
    for node in graph.node:
        inputs = [env[n] if n else None for n in node.input]
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        attrs.setdefault("num_outputs", len(node.output))  # an unsized Split splits evenly into its outputs
        results = _op(node.op_type, inputs, attrs)
        env.update(zip(node.output, results))
    return [np.asarray(env[o.name]) for o in graph.output]


def _op(op: str, inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    a = inputs[0]
    unary = {
        "Identity": lambda v: v, "Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "Tanh": np.tanh, "Relu": lambda v: np.maximum(v, 0),
        "Neg": np.negative, "Abs": np.abs, "Exp": np.exp,
    }
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "MatMul": np.matmul,
              "Less": np.less, "Greater": np.greater, "Max": np.maximum, "Min": np.minimum}
    if op in unary:
        return [unary[op](a)]
    if op in binary:
        return [binary[op](a, inputs[1])]
    if op == "Cast":
        return [np.asarray(a).astype(_CAST[int(attrs["to"])])]
    if op == "HardSigmoid":
        return [np.clip(attrs.get("alpha", 0.2) * a + attrs.get("beta", 0.5), 0, 1)]
    if op == "Clip":
        return [np.clip(a, inputs[1] if len(inputs) > 1 and inputs[1] is not None else -np.inf, inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.inf)]
    if op == "Gather":
        return [np.take(a, np.asarray(inputs[1]).astype(np.int64), axis=int(attrs.get("axis", 0)))]
    if op == "Split":
        axis = int(attrs.get("axis", 0))
        sizes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
        if sizes is None:
            return list(np.split(a, int(attrs["num_outputs"]), axis=axis))
        return list(np.split(a, np.cumsum(np.asarray(sizes))[:-1], axis=axis))
    if op == "Slice":
        starts, ends = np.asarray(inputs[1]), np.asarray(inputs[2])
        axes = np.asarray(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
        steps = np.asarray(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts), np.int64)
        index = [slice(None)] * np.ndim(a)
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[int(axis)] = slice(int(start), int(min(end, 2**62)), int(step))
        return [a[tuple(index)]]
    if op == "Concat":
        return [np.concatenate(inputs, axis=int(attrs["axis"]))]
    if op in ("Squeeze", "Unsqueeze"):
        axes = attrs.get("axes") if "axes" in attrs else (list(np.asarray(inputs[1])) if len(inputs) > 1 and inputs[1] is not None else None)
        if op == "Squeeze":
            return [np.squeeze(a, axis=tuple(int(x) for x in axes) if axes is not None else None)]
        out = a
        for axis in sorted(int(x) for x in axes):  # type: ignore[union-attr]
            out = np.expand_dims(out, axis)
        return [out]
    if op == "Reshape":
        return [np.reshape(a, [int(d) if d != 0 else a.shape[k] for k, d in enumerate(np.asarray(inputs[1]))])]
    if op == "Transpose":
        return [np.transpose(a, attrs.get("perm"))]
    return _unknown(f"a {op} op")


def _unknown(what: str) -> Any:
    raise _Unknown(what)
