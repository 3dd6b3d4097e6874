"""The function an ONNX graph computes for one layer: its recurrent node(s) plus the surrounding ops.

lstmconv's ONNX graphs feed a batch-first ``x`` through ``Transpose`` to time-major, one fused node per
stacked level (directions concatenated between levels), then back to batch-first; a Keras ``go_backwards``
layer (reverse node) flips the output sequence into processing order, and a bidirectional layer merges its
directions with ``merge_mode``. This module computes exactly that with the ONNX reference cell, for the
numeric check of both ONNX sources and ONNX targets.
"""

from __future__ import annotations

import numpy as np

from lstmconv.activations import Activation, apply
from lstmconv.layouts.onnx import OnnxRecurrentNode
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn, compute_dtype, merge_directions, project
from lstmconv.reference.onnx import onnx_forward
from lstmconv.schema import RecurrentMeta

__all__ = ["onnx_layer_function", "onnx_dense_function"]


def onnx_dense_function(activation: Activation, kernel: np.ndarray, bias: np.ndarray | None) -> ReferenceFn:
    """``MatMul(x, kernel)`` (kernel ``(in, units)``), ``Add(bias)``, then the activation: a Dense layer as an
    ONNX graph computes it."""

    def run(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        y = project(np.asarray(x), kernel.astype(compute_dtype(x), copy=False))
        if bias is not None:
            y = y + bias
        return LayerOutput(y=apply(activation, y), states=[])

    return run


def onnx_layer_function(meta: RecurrentMeta, nodes: list[OnnxRecurrentNode]) -> ReferenceFn:
    """``(x batch-first, initial states) -> LayerOutput`` for a layer made of ``nodes`` (one per level)."""

    def run(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        sequence = np.asarray(x).transpose(1, 0, 2)  # [T, B, I]; precision follows x
        states: LayerStates = []
        last: np.ndarray | None = None
        for k, node in enumerate(nodes):
            h0 = c0 = None
            if initial is not None:
                h0 = np.stack([h for h, _ in initial[k]])
                if meta.cell == "lstm":
                    c0 = np.stack([c for _, c in initial[k]])
            Y, Y_h, Y_c = onnx_forward(node, sequence, initial_h=h0, initial_c=c0)
            states.append([(Y_h[d], None if Y_c is None else Y_c[d]) for d in range(node.num_directions)])
            last = Y
            sequence = Y.transpose(0, 2, 1, 3).reshape(Y.shape[0], Y.shape[2], -1)  # [T, B, D*H]
        assert last is not None
        by_direction = [last[:, d].transpose(1, 0, 2) for d in range(last.shape[1])]  # each [B, T, H]
        if meta.bidirectional:
            assert meta.merge_mode is not None
            y = merge_directions(by_direction[0], by_direction[1], meta.merge_mode)
        else:
            y = by_direction[0]
            if meta.go_backwards and not meta.time_aligned_output:
                y = y[:, ::-1]  # Keras go_backwards returns the sequence in processing order
        return LayerOutput(y=y, states=states)

    return run
