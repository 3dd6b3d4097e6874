"""lstmconv: move trained LSTM/GRU/SimpleRNN weights between Keras, PyTorch, ONNX, TensorFlow and TFLite, checked numerically.

Library use::

    import lstmconv
    report = lstmconv.convert("model.h5", "weights.safetensors")   # target from the suffix (torch)
    loaded = lstmconv.load("model.h5")                    # canonical form + source references
    state = lstmconv.to_torch_state_dict(loaded)          # {"lstm_1.weight_ih_l0": ndarray, ...}
    outcome = lstmconv.verify("model.h5", "weights.safetensors")  # outcome.same, outcome.layers
    found = lstmconv.inspect("model.h5")                  # found.layers, found.left_out, found.refusals

Importing this package imports no framework (torch, keras, tensorflow, onnxruntime); submodules are
loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "__version__",
    "convert",
    "verify",
    "inspect",
    "load",
    "load_keras_weights",
    "load_state_dict",
    "to_torch_state_dict",
    "save_torch",
    "save_onnx",
    "save_canonical",
    "save_keras",
    "LstmconvError",
    "errors",
    "schema",
]
from lstmconv._version import __version__ as __version__

_LAZY = {
    "convert": ("lstmconv.pipeline.convert", "convert"),
    "verify": ("lstmconv.pipeline.verify", "verify"),
    "inspect": ("lstmconv.pipeline.inspect", "inspect"),
    "load": ("lstmconv.pipeline.load", "load_file"),
    "load_keras_weights": ("lstmconv.pipeline.load", "load_keras_weights"),
    "load_state_dict": ("lstmconv.pipeline.load", "load_state_dict"),
    "to_torch_state_dict": ("lstmconv.pipeline.convert", "to_torch_state_dict"),
    "save_torch": ("lstmconv.pipeline.convert", "save_torch"),
    "save_onnx": ("lstmconv.pipeline.convert", "save_onnx"),
    "save_canonical": ("lstmconv.pipeline.convert", "save_canonical"),
    "save_keras": ("lstmconv.pipeline.convert", "save_keras"),
    "LstmconvError": ("lstmconv.errors", "LstmconvError"),
    "errors": ("lstmconv.errors", None),
    "schema": ("lstmconv.schema", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lstmconv' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
