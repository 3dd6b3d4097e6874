"""ONNX ``LSTM`` / ``GRU`` / ``RNN`` nodes as lstmconv reads and writes them (``onnx/defs/rnn/defs.cc``).

Tensors (matrices ``(out, in)``, dim 0 = direction, forward then reverse)::

    W [D, G*H, I]   R [D, G*H, H]   B [D, 2*G*H] = [Wb, Rb]   P [D, 3H] (LSTM peepholes i, o, f)

Gates: LSTM i, o, f, c; GRU z, r, h; RNN one block. Activations are listed per direction (LSTM f, g, h;
GRU f, g; RNN f). ``activation_alpha`` holds one value for each listed activation that *takes* an alpha, in
list order across both directions, and ``activation_beta`` likewise for betas (how onnxruntime consumes them:
``Tanh, HardSigmoid`` with ``alpha=[0.3]`` gives HardSigmoid alpha 0.3; checked in the tests). ``layout=0``: X ``[T, B, I]``, Y ``[T, D, B, H]``;
``layout=1``: X ``[B, T, I]``, Y ``[B, T, D, H]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmconv.activations import Activation

__all__ = [
    "OnnxRecurrentNode",
    "ONNX_ACTIVATIONS",
    "STANDALONE_OPS",
    "ACTIVATION_COUNT",
    "DEFAULT_ACTIVATIONS",
    "ONNX_OPS",
    "onnx_activation",
    "activation_to_onnx",
    "parse_activations",
    "activation_attributes",
]

#: Activations that one ONNX op computes on its own (Dense and Activation layers), canonical name -> op. The
#: parameterised ones (HardSigmoid, Elu, LeakyRelu, ThresholdedRelu) take ``alpha``/``beta`` attributes; the
#: softmaxes work on the last axis.
STANDALONE_OPS: dict[str, str] = {
    "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus",
    "exponential": "Exp", "hard_sigmoid": "HardSigmoid", "elu": "Elu", "leaky_relu": "LeakyRelu",
    "thresholded_relu": "ThresholdedRelu", "softmax": "Softmax", "log_softmax": "LogSoftmax",
}

#: The ONNX operator of each cell kind.
ONNX_OPS: dict[str, str] = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}

#: The activations each op lists per direction when its ``activations`` attribute is absent (the spec's defaults).
DEFAULT_ACTIVATIONS: dict[str, tuple[str, ...]] = {"lstm": ("Sigmoid", "Tanh", "Tanh"), "gru": ("Sigmoid", "Tanh"), "rnn": ("Tanh",)}

#: How many activations each op lists per direction.
ACTIVATION_COUNT: dict[str, int] = {cell: len(listed) for cell, listed in DEFAULT_ACTIVATIONS.items()}

#: ONNX activation name -> (canonical name, default alpha, default beta); None: the activation takes none.
ONNX_ACTIVATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "Sigmoid": ("sigmoid", None, None),
    "Tanh": ("tanh", None, None),
    "Relu": ("relu", None, None),
    "Softsign": ("softsign", None, None),
    "Softplus": ("softplus", None, None),
    "Affine": ("affine", 1.0, 0.0),
    "LeakyRelu": ("leaky_relu", 0.01, None),
    "ThresholdedRelu": ("thresholded_relu", 1.0, None),
    "ScaledTanh": ("scaled_tanh", 1.0, 1.0),
    "HardSigmoid": ("hard_sigmoid", 0.2, 0.5),
    "Elu": ("elu", 1.0, None),
}
_CASE = {name.lower(): name for name in ONNX_ACTIVATIONS}


@dataclass(frozen=True)
class OnnxRecurrentNode:
    """One recurrent node: op, attributes and constant weight inputs (``None`` when absent)."""

    op: str  # 'LSTM' | 'GRU' | 'RNN'
    name: str
    hidden_size: int
    direction: str = "forward"
    activations: tuple[Activation, ...] = ()  # per direction, concatenated
    clip: float | None = None
    input_forget: bool = False
    linear_before_reset: bool = False
    layout: int = 0
    W: np.ndarray = field(default_factory=lambda: np.zeros(0))
    R: np.ndarray = field(default_factory=lambda: np.zeros(0))
    B: np.ndarray | None = None
    P: np.ndarray | None = None

    @property
    def cell(self) -> str:
        """'lstm', 'gru' or 'rnn'."""
        return self.op.lower()

    @property
    def num_directions(self) -> int:
        """2 for bidirectional, else 1."""
        return 2 if self.direction == "bidirectional" else 1


def onnx_activation(name: str, alpha: float | None, beta: float | None) -> Activation:
    """Canonical activation of an ONNX activation name with its (possibly defaulted) parameters."""
    canonical, default_alpha, default_beta = ONNX_ACTIVATIONS[_CASE[name.lower()]]
    if canonical == "affine" and (alpha if alpha is not None else default_alpha) == 1.0 and (
        beta if beta is not None else default_beta
    ) == 0.0:
        return Activation(name="linear")
    return Activation(
        name=canonical,  # type: ignore[arg-type]
        alpha=None if default_alpha is None else (default_alpha if alpha is None else alpha),
        beta=None if default_beta is None else (default_beta if beta is None else beta),
    )


def activation_to_onnx(activation: Activation) -> tuple[str, float, float] | None:
    """(ONNX name, alpha, beta) for an activation an ONNX recurrent op can apply; ``None`` when it cannot."""
    if activation.name == "linear":
        return ("Affine", 1.0, 0.0)
    for onnx_name, (canonical, _, _) in ONNX_ACTIVATIONS.items():
        if canonical == activation.name:
            return (onnx_name, activation.alpha or 0.0, activation.beta or 0.0)
    return None


def is_known_activation(name: str) -> bool:
    """Whether ``name`` is an activation the ONNX recurrent ops define (case-insensitive)."""
    return name.lower() in _CASE


def parse_activations(names: list[str], alpha: list[float], beta: list[float]) -> tuple[Activation, ...]:
    """Activations of a node from its attributes; alpha/beta lists are consumed only by activations taking them.

    Raises ``ValueError`` when a list is present but its length does not match the activations that take it.
    """
    takes_alpha = [ONNX_ACTIVATIONS[_CASE[n.lower()]][1] is not None for n in names]
    takes_beta = [ONNX_ACTIVATIONS[_CASE[n.lower()]][2] is not None for n in names]
    for label, values, takes in (("activation_alpha", alpha, takes_alpha), ("activation_beta", beta, takes_beta)):
        if values and len(values) != sum(takes):
            raise ValueError(f"{label} has {len(values)} values for {sum(takes)} activations that take one")
    alphas, betas = iter(alpha), iter(beta)
    return tuple(
        onnx_activation(
            name,
            next(alphas) if alpha and uses_alpha else None,
            next(betas) if beta and uses_beta else None,
        )
        for name, uses_alpha, uses_beta in zip(names, takes_alpha, takes_beta)
    )


def activation_attributes(activations: tuple[Activation, ...]) -> dict[str, list[str] | list[float]]:
    """``activations`` / ``activation_alpha`` / ``activation_beta`` attributes, parameters always explicit."""
    names, alpha, beta = [], [], []
    for activation in activations:
        mapped = activation_to_onnx(activation)
        if mapped is None:
            raise ValueError(f"activation {activation} has no ONNX recurrent-op equivalent")
        name, a, b = mapped
        names.append(name)
        _, default_alpha, default_beta = ONNX_ACTIVATIONS[name]
        if default_alpha is not None:
            alpha.append(float(a))
        if default_beta is not None:
            beta.append(float(b))
    attributes: dict[str, list[str] | list[float]] = {"activations": names}
    if alpha:
        attributes["activation_alpha"] = alpha
    if beta:
        attributes["activation_beta"] = beta
    return attributes
