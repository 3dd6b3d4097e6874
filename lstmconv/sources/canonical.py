"""lstmconv's canonical ``.safetensors``: every layer in the canonical form, gate-named tensors and its
description (:mod:`lstmconv.io.canonical_file`)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lstmconv.io.canonical_file import is_canonical_file, open_canonical
from lstmconv.protocols import LayerItem, Options
from lstmconv.reference.common import ReferenceFn
from lstmconv.schema import Layer, Wiring

__all__ = ["SOURCE", "canonical_reference"]


class CanonicalSource:
    def claims(self, path: Path) -> bool:
        """Whether a ``.safetensors`` file is lstmconv's canonical file rather than torch's."""
        return is_canonical_file(path)

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        with open_canonical(path) as (metadata, canonical):
            items = ((layer, canonical_reference(layer)) for layer in canonical)
            yield items, metadata.wiring, [meta.name for meta in metadata.layers]


SOURCE = CanonicalSource()


def canonical_reference(layer: Layer) -> ReferenceFn | None:
    """What a canonical file's layer computes, from its gate-named weights (None for weightless layers)."""
    from lstmconv.reference.canonical import canonical_forward
    from lstmconv.reference.torch_function import torch_layer_function
    from lstmconv.schema import DenseLayer, RecurrentLayer

    if isinstance(layer, RecurrentLayer):
        return functools.partial(canonical_forward, layer)
    if isinstance(layer, DenseLayer):  # canonical Dense is (units, in), nn.Linear's orientation
        return torch_layer_function(layer, {"weight": layer.weight, **({"bias": layer.bias} if layer.bias is not None else {})})
    return None
