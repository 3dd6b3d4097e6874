"""Containers for Keras recurrent weights exactly as Keras files store them.

Three storage layouts exist (``../shared/reference/layouts.md`` sections 1-3):

* ``keras``: Keras 1 with ``consume_less='gpu'``, Keras 2, tf.keras and Keras 3. Arrays ``kernel`` ``(in, G*H)``,
  ``recurrent_kernel`` ``(H, G*H)`` and optionally ``bias``: ``(G*H,)``, or ``(2, 3H)`` for GRU
  ``reset_after=True`` (row 0 input bias, row 1 recurrent bias). Gates i,f,c,o (LSTM), z,r,h (GRU).
* ``keras1-per-gate``: Keras 1 ``consume_less='cpu'|'mem'``: one ``(in, H)``/``(H, H)``/``(H,)`` array per gate,
  keyed ``W_i, U_i, b_i, ...`` (LSTM) or ``W_z, U_z, b_z, ...`` (GRU).
* ``cudnn``: CuDNNLSTM/CuDNNGRU. ``kernel`` and ``recurrent_kernel`` have the Keras shapes but each gate block
  holds cuDNN's row-major ``(H, in)`` matrix flattened into the ``(in, H)`` slot; ``bias`` is ``(2*G*H,)`` =
  input biases then recurrent biases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["KERAS_CLASSES", "KERAS_ACTIVATIONS", "keras_activation_numbers", "keras_activation_for", "KerasLayout", "KerasCellArrays", "KerasRecurrentArrays"]

#: The Keras layer class of each cell kind (the cells' names in reports too).
KERAS_CLASSES: dict[str, str] = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}

_BOTH, _KERAS3 = frozenset({1, 2, 3}), frozenset({3})

#: Keras activation names, read both ways: name -> (canonical name, alpha, beta, the Keras majors that have the
#: name). Reading accepts every name whatever the version (a file states what it computes); writing uses the
#: first name that computes the activation in the Keras version written. ``hard_sigmoid``'s slope depends on the
#: version (:func:`keras_activation_numbers`).
KERAS_ACTIVATIONS: dict[str, tuple[str, float | None, float | None, frozenset[int]]] = {
    "sigmoid": ("sigmoid", None, None, _BOTH),
    "tanh": ("tanh", None, None, _BOTH),
    "relu": ("relu", None, None, _BOTH),
    "linear": ("linear", None, None, _BOTH),
    "softsign": ("softsign", None, None, _BOTH),
    "softplus": ("softplus", None, None, _BOTH),
    "selu": ("selu", None, None, _BOTH),
    "exponential": ("exponential", None, None, _BOTH),
    "silu": ("silu", None, None, _KERAS3),
    "swish": ("silu", None, None, frozenset({1, 2})),  # Keras 3 reads it too, as silu
    "gelu": ("gelu", None, None, _BOTH),  # approximate=False, both versions' default
    "relu6": ("relu6", None, None, _BOTH),
    "mish": ("mish", None, None, _BOTH),
    "softmax": ("softmax", None, None, _BOTH),
    "log_softmax": ("log_softmax", None, None, _BOTH),
    "log_sigmoid": ("log_sigmoid", None, None, _KERAS3),
    "hard_tanh": ("hard_tanh", None, None, _KERAS3),
    "hard_sigmoid": ("hard_sigmoid", None, 0.5, _BOTH),  # alpha: 0.2 before Keras 3, 1/6 from Keras 3
    "hard_silu": ("hard_silu", 1.0 / 6.0, 0.5, _KERAS3),
    "hard_swish": ("hard_silu", 1.0 / 6.0, 0.5, frozenset()),  # an alias Keras 3 reads; written as hard_silu
    "elu": ("elu", 1.0, None, _BOTH),
    "leaky_relu": ("leaky_relu", 0.2, None, _KERAS3),
}


def keras_activation_numbers(name: str, keras_major: int) -> tuple[str, float | None, float | None] | None:
    """(canonical name, alpha, beta) of the Keras activation ``name`` as Keras ``keras_major`` computes it."""
    found = KERAS_ACTIVATIONS.get(name.lower())
    if found is None:
        return None
    canonical, alpha, beta, _ = found
    if canonical == "hard_sigmoid":
        alpha = 1.0 / 6.0 if keras_major >= 3 else 0.2
    return canonical, alpha, beta


def keras_activation_for(canonical: str, alpha: float | None, beta: float | None, keras_major: int) -> str | None:
    """The Keras name computing (canonical, alpha, beta) exactly in Keras ``keras_major``, if any."""
    for name, (_, _, _, majors) in KERAS_ACTIVATIONS.items():
        if keras_major in majors and keras_activation_numbers(name, keras_major) == (canonical, alpha, beta):
            return name
    return None

KerasLayout = Literal["keras", "keras1-per-gate", "cudnn"]


@dataclass(frozen=True)
class KerasCellArrays:
    """The arrays of one Keras recurrent layer (one direction of a Bidirectional), by Keras name."""

    layout: KerasLayout
    arrays: Mapping[str, np.ndarray]
    names: Mapping[str, str] = field(default_factory=dict)  # Keras name -> name in the file, for messages


@dataclass(frozen=True)
class KerasRecurrentArrays:
    """A Keras recurrent layer's weights; ``backward`` is set for a Bidirectional wrapper."""

    forward: KerasCellArrays
    backward: KerasCellArrays | None = None
