"""TensorFlow.js's names: the activations tfjs-layers 4.22 has a class for, by their Keras 2 config names (tfjs reads
``hard_sigmoid`` as ``hardSigmoid``; ``swish`` is Keras 2's name of silu; ``gelu`` is the exact one)."""

from __future__ import annotations

__all__ = ["TFJS_ACTIVATIONS"]

TFJS_ACTIVATIONS: frozenset[str] = frozenset(
    {"elu", "selu", "relu", "relu6", "linear", "sigmoid", "hard_sigmoid", "softplus", "softsign", "tanh", "softmax",
     "log_softmax", "gelu", "mish", "swish"}
)
