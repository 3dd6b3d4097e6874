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

__all__ = ["KerasLayout", "KerasCellArrays", "KerasRecurrentArrays"]

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
