"""TFLite's names and slots: the inputs of its fused sequence operators and the activations they take.

Sources: ``tensorflow/lite/schema/schema.fbs`` and ``tensorflow/lite/kernels/lstm_shared.h`` (the 24 inputs of
``UNIDIRECTIONAL_SEQUENCE_LSTM``; an optional one left out is -1), ``unidirectional_sequence_rnn.cc`` (input,
weights, recurrent weights, bias, hidden state). Matrices are ``(units, inputs)``; the LSTM gates are sigmoid, its
``fused_activation_function`` is applied to the cell candidate and to the cell state before the output gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmconv.activations import Activation

__all__ = [
    "LSTM_INPUTS",
    "LSTM_INPUT_WEIGHTS",
    "LSTM_RECURRENT_WEIGHTS",
    "LSTM_PEEPHOLES",
    "LSTM_BIASES",
    "LSTM_PROJECTION",
    "LSTM_OUTPUT_STATE",
    "LSTM_CELL_STATE",
    "RNN_INPUTS",
    "FUSED_ACTIVATIONS",
    "ACTIVATION_OPS",
    "TfliteRecurrentOp",
]

LSTM_INPUTS = 24
#: gate -> input index of its matrices, peephole (cell_to_*) and bias; input 0 is the sequence
LSTM_INPUT_WEIGHTS = {"input": 1, "forget": 2, "cell": 3, "output": 4}
LSTM_RECURRENT_WEIGHTS = {"input": 5, "forget": 6, "cell": 7, "output": 8}
LSTM_PEEPHOLES = {"input": 9, "forget": 10, "output": 11}
LSTM_BIASES = {"input": 12, "forget": 13, "cell": 14, "output": 15}
LSTM_PROJECTION = 16  # (outputs, units); 17, its bias, is never written
LSTM_OUTPUT_STATE, LSTM_CELL_STATE = 18, 19  # variable tensors; 20-23, layer norm, never written
RNN_INPUTS = 5  # input, weights (units, inputs), recurrent weights (units, units), bias, hidden state

#: canonical activation -> the ActivationFunctionType a fused op applies exactly (the enum has no sigmoid)
FUSED_ACTIVATIONS = {"linear": "NONE", "relu": "RELU", "hard_tanh": "RELU_N1_TO_1", "relu6": "RELU6", "tanh": "TANH"}
#: canonical activation -> the builtin op computing it alone (Dense and Activation layers); the others are
#: composed of builtin ops (silu, hard_sigmoid, gelu) or refused
ACTIVATION_OPS = {
    "relu": "RELU", "relu6": "RELU6", "hard_tanh": "RELU_N1_TO_1", "tanh": "TANH", "sigmoid": "LOGISTIC",
    "softmax": "SOFTMAX", "log_softmax": "LOG_SOFTMAX", "elu": "ELU", "exponential": "EXP",
}


@dataclass(frozen=True)
class TfliteRecurrentOp:
    """One fused op (or the GRU loop): its level, direction and arrays in TFLite's layout."""

    cell: str
    level: int
    backward: bool
    units: int
    outputs: int  # the projection's size, else the units
    slots: dict[int, np.ndarray] = field(default_factory=dict)  # LSTM inputs by index
    named: dict[str, np.ndarray] = field(default_factory=dict)  # RNN: weights, recurrent, bias; GRU: w_z...
    activation: str = "TANH"  # the fused ActivationFunctionType (LSTM, RNN)
    gate: Activation | None = None  # GRU: canonical activations, applied by builtin ops
    candidate: Activation | None = None
    reset_after: bool = False
    cell_clip: float = 0.0  # LSTM: the cell state's clamp (0: none)
    looped: bool = False  # an LSTM the fused op cannot compute, written as a WHILE loop like a GRU
    cell_output: Activation | None = None  # a looped LSTM's activation of the cell state
