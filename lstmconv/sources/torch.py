"""torch files: ``.pt``/``.pth``/``.bin`` (zip archives and legacy pickles, read without torch where possible)
and ``.safetensors`` state dicts, and state dicts held in memory. Modules are found from the keys
(``<prefix>.weight_ih_l0`` ...); lstmconv's own metadata, where the file has it, states what keys cannot."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.errors import ConfigError, InputFormatError, LstmconvError, UnsupportedFeatureError
from lstmconv.io.torch_files import open_torch_state
from lstmconv.protocols import LayerItem, LeftOut, Options
from lstmconv.schema import Layer, SourceInfo, Wiring
from lstmconv.sources.arrays import native_order, numeric_array

__all__ = ["SOURCE", "torch_layers", "state_dict_layers"]


class TorchSource:
    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        with open_torch_state(path) as (stand_ins, metadata, notes, load):
            modules = sorted({key.rpartition(".")[0] for key in stand_ins})
            yield torch_layers(stand_ins, metadata, notes, path, load=load), None, modules


SOURCE = TorchSource()


def torch_layers(
    tensors: Mapping[str, np.ndarray],
    metadata: dict[str, Any] | None,
    notes: list[str],
    path: Path | str,
    *,
    nonlinearity: str | None = None,
    load: Callable[[str], np.ndarray] | None = None,
) -> Iterator[LayerItem | str]:
    """Build a state dict's torch.nn modules as layers, one at a time; a str is a key left out (yielded first).

    With ``load``, ``tensors`` holds stand-ins of the right shapes (see ``open_safetensors_state``) and each
    module's parameters are read with ``load(key)`` when its layer is built.
    """
    from lstmconv.adapters.torch import find_torch_modules, recurrent_to_canonical
    from lstmconv.reference.torch_function import torch_layer_function
    from lstmconv.schema import (
        DenseLayer,
        DenseMeta,
        EmbeddingLayer,
        EmbeddingMeta,
        RecurrentLayer,
        RecurrentMeta,
    )

    described = {m["name"]: m for m in (metadata or {}).get("layers", [])}  # written by lstmconv: exact facts
    custom = (metadata or {}).get("custom_modules", {})
    pickled = (metadata or {}).get("pickled_modules", {})  # a whole-module pickle's own attributes
    try:
        modules, leftover = find_torch_modules(dict(tensors))
    except LstmconvError as error:
        raise error.with_context(file=path) from None
    # an nn.Embedding's 'weight' is told from a bias-less nn.Linear's only by what lstmconv recorded
    tables = [key for key in leftover if described.get(key.removesuffix(".weight"), {}).get("type") == "embedding"]
    leftover = [key for key in leftover if key not in tables]
    if not modules:
        raise InputFormatError("no nn.LSTM/GRU/RNN or nn.Linear parameters found", file=path, hint=", ".join(leftover[:8]) or None)
    yield from (LeftOut(key, "not an nn.LSTM/GRU/RNN/Linear parameter") for key in leftover)
    for key in tables:
        facts = EmbeddingMeta.model_validate({**described[key.removesuffix(".weight")], "source": SourceInfo(framework="torch", layout="torch").model_dump()})
        table = load(key) if load is not None else tensors[key]
        yield EmbeddingLayer(**dict(facts), weight=table), None  # type: ignore[misc]
    for module in modules:
        if load is not None:
            module.params = {param: load(key) for param, key in module.keys.items()}
        stated = described.get(module.prefix)
        source = SourceInfo(framework="torch", layout="torch", notes=tuple(notes))
        try:
            if module.kind == "recurrent":
                module_nonlinearity = nonlinearity  # the caller's word for nn.RNN, unless the file records it
                if stated is not None and stated.get("cell") == "rnn":
                    module_nonlinearity = stated["activations"]["candidate"]["name"]
                facts = pickled.get(module.prefix, {})
                if isinstance(facts.get("nonlinearity"), str):
                    module_nonlinearity = facts["nonlinearity"]
                if module.prefix in custom:
                    module.params = {k: v for k, v in module.params.items() if not k.startswith("peephole")}
                    raise UnsupportedFeatureError(
                        "this layer was written for lstmconv's emitted module, not torch.nn; convert the original "
                        "source instead",
                        file=path,
                        layer=module.prefix,
                    )
                layer: Layer = recurrent_to_canonical(module, source, nonlinearity=module_nonlinearity)
                if stated is not None:
                    facts = RecurrentMeta.model_validate({**stated, "source": layer.source.model_dump()})
                    described_fields = {k: v for k, v in dict(layer).items() if k != "levels"}
                    layer = RecurrentLayer(**{**described_fields, **dict(facts)}, levels=layer.levels)
                elif facts:  # a pickled module says what it is; lstmconv's layers are batch-first
                    if facts.get("batch_first") is False:
                        note = "the pickled module is batch_first=False; the converted layer takes (batch, time, features)"
                        layer = layer.model_copy(update={"source": layer.source.model_copy(update={"notes": (*layer.source.notes, note)})})
                else:
                    layer = layer.model_copy(
                        update={"source": layer.source.model_copy(update={"inferred": (*layer.source.inferred, "batch_first, go_backwards and how outputs are used are not recorded in a state dict")})}
                    )
            else:
                weight, bias = module.params["weight"], module.params["bias"]
                facts = DenseMeta.model_validate({**stated, "source": source.model_dump()}) if stated else None
                layer = DenseLayer(
                    **(dict(facts) if facts else {
                        "name": module.prefix, "input_size": int(weight.shape[1]), "units": int(weight.shape[0]),
                        "activation": {"name": "linear"}, "dtype": str(weight.dtype),
                        "source": source.model_copy(update={"inferred": ("nn.Linear: no activation recorded",)}),
                    }),
                    weight=weight,
                    bias=bias,
                )
        except LstmconvError as error:
            raise error.with_context(file=path, layer=module.prefix) from None
        assert isinstance(layer, (RecurrentLayer, DenseLayer))
        yield layer, torch_layer_function(layer, module.params)
        module.params = {}  # read again if asked for: not held while the next module is built
        del layer


def state_dict_layers(state_dict: Mapping[str, Any], *, nonlinearity: str | None = None) -> Iterator[LayerItem | str]:
    """The layer items of a torch ``state_dict`` held in memory (tensors or arrays). ``nonlinearity`` states
    ``nn.RNN``'s activation ('tanh' or 'relu'), which a state dict does not record."""
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"a state dict maps names to tensors; got a {type(state_dict).__name__}", file="<state_dict>")
    arrays: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor; torch itself is never imported here
            value = value.detach().cpu()
            value = value.float().numpy() if str(value.dtype) == "torch.bfloat16" else value.numpy()
        arrays[str(key)] = native_order(numeric_array(value, "<state_dict>", str(key)))
    return torch_layers(arrays, None, [], "<state_dict>", nonlinearity=nonlinearity)
