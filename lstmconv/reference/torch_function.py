"""The torch target: canonical layers -> prefixed torch parameters, their check function, and the file.

What a user rebuilds from the file (stated in each layer's metadata):

* a recurrent layer is ``nn.LSTM/GRU/RNN(..., batch_first=True)`` holding ``<layer>.*`` parameters;
* ``go_backwards`` (unidirectional Keras layer): feed ``x.flip(1)``; the output is in that reversed order
  (``time_aligned_output``, an ONNX ``direction=reverse`` node: flip the output back too);
* a bidirectional ``merge_mode`` other than ``concat``: split torch's output in halves and merge them;
* ``return_sequences=False``: take the last step of the output (bidirectional: the forward half at the last
  step and the backward half at step 0);
* Dense: ``nn.Linear`` followed by the activation named in the metadata.
"""

from __future__ import annotations

import numpy as np

from lstmconv.activations import apply
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn, compute_dtype, merge_directions, project
from lstmconv.reference.torch import torch_forward
from lstmconv.schema import DenseMeta, RecurrentMeta

__all__ = ["torch_layer_function", "usage_notes"]


def torch_layer_function(meta: RecurrentMeta | DenseMeta, params: dict[str, np.ndarray]) -> ReferenceFn:
    """The function a torch user computes with ``params`` and the documented wrapper steps."""
    if isinstance(meta, DenseMeta):
        weight = params["weight"]
        bias = params.get("bias")

        def linear(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
            y = project(np.asarray(x), weight.astype(compute_dtype(x), copy=False).T)
            if bias is not None:
                y = y + bias
            return LayerOutput(y=apply(meta.activation, y), states=[])

        return linear

    nonlinearity = "relu" if meta.cell == "rnn" and meta.activations.candidate.name == "relu" else "tanh"

    def recurrent(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        fed = x[:, ::-1] if meta.go_backwards else x
        out = torch_forward(
            params,
            mode=meta.cell,
            num_layers=meta.num_levels,
            bidirectional=meta.bidirectional,
            x=fed,
            initial=initial,
            nonlinearity=nonlinearity,
        )
        y = out.y
        if meta.time_aligned_output:
            y = y[:, ::-1]
        if meta.bidirectional and meta.merge_mode != "concat":
            assert isinstance(y, np.ndarray) and meta.merge_mode is not None
            width = meta.output_size
            y = merge_directions(y[..., :width], y[..., width:], meta.merge_mode)
        return LayerOutput(y=y, states=out.states)

    return recurrent


def usage_notes(meta: RecurrentMeta | DenseMeta) -> list[str]:
    """What a torch user must do around the module to compute the source layer's function."""
    notes = []
    if isinstance(meta, DenseMeta):
        if meta.activation.name != "linear":
            notes.append(f"apply {meta.activation} after nn.Linear")
        return notes
    if meta.go_backwards and meta.time_aligned_output:
        notes.append("reverse direction: feed x.flip(1) and flip the output sequence back (output.flip(1))")
    elif meta.go_backwards:
        notes.append("go_backwards: feed x.flip(1); the output sequence comes out in that reversed order")
    if meta.bidirectional and meta.merge_mode != "concat":
        notes.append(f"merge_mode={meta.merge_mode}: split the output in forward/backward halves and merge them")
    if not meta.return_sequences:
        notes.append("return_sequences=False: the layer's output is the last step of the sequence")
    return notes
