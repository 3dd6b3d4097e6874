"""TensorFlow 1's ``tf.nn.rnn_cell`` cells as a checkpoint names them, and their defaults.

A cell's variables sit under its variable scope, whose last part is the cell's own name (``lstm_cell``,
``basic_lstm_cell``, ``gru_cell``, ``basic_rnn_cell``; ``MultiRNNCell`` adds ``cell_N/`` above it,
``bidirectional_dynamic_rnn`` ``fw/`` and ``bw/``). TF < 1.2 named the same variables ``weights``/``biases``.
``LSTMBlockCell`` (contrib) shares ``lstm_cell``'s names and meaning. Sources:
``tensorflow/python/ops/rnn_cell_impl.py`` (1.x), ``tensorflow/contrib/rnn/python/ops/lstm_ops.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Tf1CellKind", "TF1_CELLS", "TF1_ACTIVATION_OPS", "TF1_BLOCK_OPS"]


@dataclass(frozen=True)
class Tf1CellKind:
    """One cell class: its scope name, canonical cell, variables (relative to the scope) and defaults."""

    scope: str
    cls: str
    cell: str  # 'lstm' | 'gru' | 'rnn'
    kernels: tuple[str, ...]  # concatenated along axis 1 in this order (GRUCell: gates, then candidate)
    biases: tuple[str, ...]
    forget_bias: float | None  # added to the forget gate at run time (LSTM cells), stored nowhere


_LSTM = (("kernel",), ("bias",))
#: scope name -> cell class; the pre-1.2 names (weights, biases) are tried when these are absent
TF1_CELLS: dict[str, Tf1CellKind] = {
    kind.scope: kind
    for kind in (
        Tf1CellKind("lstm_cell", "LSTMCell", "lstm", *_LSTM, forget_bias=1.0),
        Tf1CellKind("basic_lstm_cell", "BasicLSTMCell", "lstm", *_LSTM, forget_bias=1.0),
        Tf1CellKind("gru_cell", "GRUCell", "gru", ("gates/kernel", "candidate/kernel"), ("gates/bias", "candidate/bias"), None),
        Tf1CellKind("basic_rnn_cell", "BasicRNNCell", "rnn", *_LSTM, forget_bias=None),
    )
}
#: graph op type -> activation name, for the cell activations a graph shows
TF1_ACTIVATION_OPS: dict[str, str] = {
    "Tanh": "tanh", "Relu": "relu", "Sigmoid": "sigmoid", "Elu": "elu", "Selu": "selu", "Softplus": "softplus",
    "Softsign": "softsign", "Identity": "linear",
}
#: LSTMBlockCell's fused ops: their attributes state forget_bias, cell_clip and use_peephole
TF1_BLOCK_OPS = frozenset({"LSTMBlockCell", "BlockLSTM", "BlockLSTMV2"})
