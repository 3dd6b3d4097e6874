"""Rebuild ``torch.nn`` modules from a file lstmconv wrote (needs torch; imported on first call).

>>> modules = load_torch_modules("weights.safetensors")
>>> output, (h_n, c_n) = modules["lstm_1"](x)            # batch-first

Each recurrent layer becomes ``nn.LSTM/GRU/RNN(..., batch_first=True)``, Dense ``nn.Linear``, Embedding
``nn.Embedding``, loaded with ``strict=True``. The wrapper steps a layer needs around its module
(``go_backwards``, a non-concat ``merge_mode``, a Dense activation) are in its metadata; see
:mod:`lstmconv.reference.torch_function`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lstmconv.errors import InputFormatError

__all__ = ["load_torch_modules", "build_torch_module"]


def build_torch_module(meta: dict[str, Any]) -> Any:
    """An untrained ``torch.nn`` module matching one layer's lstmconv metadata."""
    from torch import nn

    kind = meta["type"]
    if kind == "recurrent":
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[meta["cell"]]
        kwargs: dict[str, Any] = {
            "num_layers": meta["num_levels"],
            "bias": meta["use_bias"],
            "batch_first": True,
            "bidirectional": meta["bidirectional"],
        }
        if meta.get("projection_size"):
            kwargs["proj_size"] = meta["projection_size"]
        if meta["cell"] == "rnn":
            kwargs["nonlinearity"] = meta["activations"]["candidate"]["name"]
        return cls(meta["input_size"], meta["hidden_size"], **kwargs)
    if kind == "dense":
        return nn.Linear(meta["input_size"], meta["units"], bias=meta["use_bias"])
    if kind == "embedding":
        return nn.Embedding(meta["vocabulary_size"], meta["embedding_size"])
    return nn.Identity()


def load_torch_modules(path: str | Path) -> dict[str, Any]:
    """``{layer name: nn.Module}`` for every layer of a ``.safetensors`` file written by lstmconv."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = (handle.metadata() or {}).get("lstmconv")
    if header is None:
        raise InputFormatError("no lstmconv metadata in this file", file=path, hint="was it written by lstmconv?")
    metadata = json.loads(header)
    custom = metadata.get("custom_modules", {})
    if custom:
        names = ", ".join(sorted(custom))
        raise InputFormatError(
            f"layers {names} need the module file written with --emit-module, not torch.nn",
            file=path,
            hint="use that file's build_modules() and load_state()",
        )
    tensors = load_file(str(path))
    modules: dict[str, Any] = {}
    for meta in metadata["layers"]:
        module = build_torch_module(meta)
        prefix = meta["name"] + "."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        with torch.no_grad():
            module.load_state_dict(state, strict=True)
        modules[meta["name"]] = module.eval()
    return modules
