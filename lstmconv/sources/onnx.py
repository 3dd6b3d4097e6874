"""ONNX models: LSTM/GRU/RNN nodes with their weights, and the Dense (MatMul/Gemm + Add + activation) and
Embedding (Gather) patterns around them (:mod:`lstmconv.sources.onnx_graph`); each node reads its weights from
the file only when its layer is built."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lstmconv.errors import LstmconvError
from lstmconv.protocols import LayerItem, Options
from lstmconv.schema import SourceInfo, Wiring
from lstmconv.sources.onnx_graph import OnnxFile, read_onnx

__all__ = ["SOURCE", "onnx_layers"]


class OnnxSource:
    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        onnx_file = read_onnx(path)
        yield onnx_layers(onnx_file), None, [entry.name for entry in onnx_file.entries]


SOURCE = OnnxSource()


def onnx_layers(onnx_file: OnnxFile) -> Iterator[LayerItem]:
    """Build the file's recurrent and Dense layers one at a time, each reading only its own weights from the file."""
    from lstmconv.activations import Activation
    from lstmconv.adapters.onnx import node_to_canonical
    from lstmconv.reference.onnx_function import onnx_dense_function, onnx_layer_function
    from lstmconv.schema import DenseLayer, EmbeddingLayer
    from lstmconv.sources.onnx_graph import OnnxDenseEntry, OnnxEmbeddingEntry

    for entry in onnx_file.entries:
        source = SourceInfo(
            framework="onnx", layout=f"onnx-opset{onnx_file.opset}", version=onnx_file.producer or None, notes=entry.notes
        )
        if isinstance(entry, OnnxEmbeddingEntry):
            table = entry.load()
            embedding = EmbeddingLayer(
                name=entry.name,
                vocabulary_size=int(table.shape[0]),
                embedding_size=int(table.shape[1]),
                dtype=str(table.dtype),
                source=source,
                weight=table,
            )
            yield embedding, None
            del embedding, table
            continue
        if isinstance(entry, OnnxDenseEntry):
            kernel, bias = entry.load()
            name, alpha, beta = entry.activation
            activation = Activation(name=name, alpha=alpha, beta=beta)  # type: ignore[arg-type]
            dense = DenseLayer(
                name=entry.name,
                input_size=int(kernel.shape[0]),
                units=int(kernel.shape[1]),
                activation=activation,
                use_bias=bias is not None,
                dtype=str(kernel.dtype),
                source=source,
                weight=kernel.T,
                bias=bias,
            )
            yield dense, onnx_dense_function(activation, kernel, bias)
            del dense, kernel, bias
            continue
        node = entry.node
        try:
            layer = node_to_canonical(node, source)
            if entry.runtime_inputs:
                layer = layer.model_copy(update={"runtime_inputs": entry.runtime_inputs})
            if entry.processing_order:  # the graph flips the reverse node's output: Keras go_backwards
                layer = layer.model_copy(update={"time_aligned_output": False})
            if entry.merge_mode:  # the graph merges the directions as a Keras Bidirectional does
                layer = layer.model_copy(update={"merge_mode": entry.merge_mode})
        except LstmconvError as error:
            raise error.with_context(file=onnx_file.path) from None
        # The node's own function; layout only changes how X/Y are arranged, so check in layout 0.
        yield layer, onnx_layer_function(layer, [dataclasses.replace(node, layout=0)])
        del layer, node  # not held while the next layer is read
