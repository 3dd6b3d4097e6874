"""Activation functions of recurrent cells, as numbers rather than names.

A name alone is ambiguous across frameworks: Keras 2 ``hard_sigmoid`` is ``clip(0.2x + 0.5, 0, 1)`` while
Keras 3 ``hard_sigmoid`` is ``relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1)``. The canonical form therefore stores
every activation with its numeric parameters (``Activation("hard_sigmoid", alpha=0.2, beta=0.5)``), and
framework adapters translate their own names into it according to the file's framework version.

:func:`apply` is the NumPy definition of each activation, used by the reference cells.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from lstmconv.errors import ConfigError

__all__ = ["Activation", "ActivationName", "apply", "SIGMOID", "TANH", "RELU", "LINEAR"]

ActivationName = Literal[
    "sigmoid",
    "tanh",
    "relu",
    "linear",
    "hard_sigmoid",  # clip(alpha * x + beta, 0, 1)
    "softsign",
    "softplus",
    "elu",  # alpha
    "selu",
    "exponential",
    "silu",  # x * sigmoid(x), Keras 'swish'
    "gelu",  # exact, x * Phi(x)
    "gelu_tanh",  # tanh approximation
    "relu6",
    "leaky_relu",  # alpha = negative slope
    "mish",
    "hard_silu",  # x * hard_sigmoid(x) with alpha/beta
    "softmax",  # over the last axis
    "log_softmax",
    "affine",  # alpha * x + beta
    "scaled_tanh",  # alpha * tanh(beta * x)
    "thresholded_relu",  # x if x > alpha else 0
    "hard_tanh",
    "log_sigmoid",
]

# Activations whose numeric parameters must be given explicitly (no framework-neutral default exists).
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "hard_sigmoid": ("alpha", "beta"),
    "hard_silu": ("alpha", "beta"),
    "elu": ("alpha",),
    "leaky_relu": ("alpha",),
    "affine": ("alpha", "beta"),
    "scaled_tanh": ("alpha", "beta"),
    "thresholded_relu": ("alpha",),
}


class Activation(BaseModel):
    """One activation function with its numeric parameters."""

    model_config = ConfigDict(frozen=True)

    name: ActivationName
    alpha: float | None = None
    beta: float | None = None

    @model_validator(mode="after")
    def _parameters_present(self) -> Activation:
        needed = _PARAMETERS.get(self.name, ())
        for parameter in ("alpha", "beta"):
            value = getattr(self, parameter)
            if parameter in needed and value is None:
                raise ValueError(f"activation {self.name!r} needs an explicit {parameter}")
            if parameter not in needed and value is not None:
                raise ValueError(f"activation {self.name!r} takes no {parameter}")
            if value is not None and not math.isfinite(value):  # a ConfigError passes through pydantic as it is
                raise ConfigError(f"activation {self.name!r} has a non-finite {parameter}", actual=value)
        return self

    def __str__(self) -> str:
        parameters = [f"{p}={getattr(self, p):.6g}" for p in ("alpha", "beta") if getattr(self, p) is not None]
        return f"{self.name}({', '.join(parameters)})" if parameters else self.name


SIGMOID = Activation(name="sigmoid")
TANH = Activation(name="tanh")
RELU = Activation(name="relu")
LINEAR = Activation(name="linear")

_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows: exact in float64 over the whole range.
    positive = x >= 0
    z = np.exp(np.where(positive, -x, x))
    return np.where(positive, 1.0 / (1.0 + z), z / (1.0 + z))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def apply(activation: Activation, x: np.ndarray) -> np.ndarray:
    """Evaluate ``activation`` on ``x`` (NumPy, dtype preserved for float inputs)."""
    name, alpha, beta = activation.name, activation.alpha, activation.beta
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "linear":
        return x
    if name == "hard_sigmoid":
        return np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "softsign":
        return x / (1.0 + np.abs(x))
    if name == "softplus":
        return _softplus(x)
    if name == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
    if name == "selu":
        scale, selu_alpha = 1.0507009873554805, 1.6732632423543772
        return scale * np.where(x > 0, x, selu_alpha * np.expm1(np.minimum(x, 0.0)))
    if name == "exponential":
        return np.exp(x)
    if name == "silu":
        return x * _sigmoid(x)
    if name == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if name == "relu6":
        return np.clip(x, 0.0, 6.0)
    if name == "leaky_relu":
        return np.where(x >= 0, x, alpha * x)
    if name == "mish":
        return x * np.tanh(_softplus(x))
    if name == "hard_silu":
        return x * np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "softmax":
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if name == "log_softmax":
        shifted = x - x.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    if name == "affine":
        return alpha * x + beta
    if name == "scaled_tanh":
        return alpha * np.tanh(beta * x)
    if name == "thresholded_relu":
        return np.where(x > alpha, x, 0.0)
    if name == "hard_tanh":
        return np.clip(x, -1.0, 1.0)
    if name == "log_sigmoid":
        return -_softplus(-x)
    raise AssertionError(f"unhandled activation {name}")  # pragma: no cover - Literal is exhaustive
