"""Load: a source's layers collected in memory, as the canonical model plus each layer's source reference.

``load`` collects the same layer stream that ``convert`` writes (:func:`lstmconv.pipeline.read.open_layers`);
models handed over in memory (a ``state_dict``, one Keras layer's ``get_weights()``) are collected from their
sources' items the same way. :func:`loaded_layers` turns a loaded model back into a layer stream for the targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.errors import LstmconvError
from lstmconv.pipeline.read import open_layers, refuse_nothing_read, refuse_without_recurrent
from lstmconv.protocols import LayerItem, LayerSource, Options
from lstmconv.reference.common import ReferenceFn
from lstmconv.schema import CanonicalModel, Layer, Wiring

__all__ = ["LoadedModel", "load_file", "load_state_dict", "load_keras_weights", "loaded_layers"]


@dataclass(frozen=True)
class LoadedModel:
    """The canonical model plus, per layer name, the reference computing it in the source's own layout."""

    model: CanonicalModel
    references: Mapping[str, ReferenceFn] = field(default_factory=dict)
    source: str = ""
    source_format: str = "keras"


def load_file(
    path: str | Path,
    *,
    config: str | Path | None = None,
    source_format: str | None = None,
    skip_unsupported: bool = False,
    allow_nonfinite: bool = False,
) -> LoadedModel:
    """Read ``path`` into the canonical form.

    ``config`` is an architecture JSON (``model.to_json()``) for weights-only Keras files.
    ``skip_unsupported`` leaves out recurrent layers lstmconv cannot read instead of refusing the file;
    layers with weights that lstmconv does not convert (BatchNormalization, Conv1D, custom layers) are
    always left out and listed in ``model.skipped``. Weights holding NaN or Inf are refused unless
    ``allow_nonfinite``.

    Every failure is an :class:`~lstmconv.errors.LstmconvError` naming the file: an error raised by h5py, onnx,
    protobuf, zipfile or numpy on a damaged file becomes an :class:`~lstmconv.errors.InputFormatError`.
    """
    options = Options(
        config=Path(config) if config is not None else None,
        source_format=source_format,
        skip_unsupported=skip_unsupported,
        allow_nonfinite=allow_nonfinite,
    )
    with open_layers(path, options) as opened:
        return collect(opened.layers, opened.skipped, opened.source, opened.source_format, opened.wiring)


def load_state_dict(state_dict: Mapping[str, Any], *, nonlinearity: str | None = None) -> LoadedModel:
    """Canonical form of a torch ``state_dict`` held in memory (tensors or arrays), e.g. ``module.state_dict()``.

    Modules are found from the keys (``<prefix>.weight_ih_l0`` ...). ``nonlinearity`` states ``nn.RNN``'s
    activation ('tanh' or 'relu'), which a state dict does not record.
    """
    from lstmconv.sources.torch import state_dict_layers

    return collect(state_dict_layers(state_dict, nonlinearity=nonlinearity), [], "<state_dict>", "torch", None)


def load_keras_weights(
    weights: Sequence[np.ndarray],
    *,
    class_name: str,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    keras_version: str = "3",
) -> LoadedModel:
    """Canonical form of one Keras layer given as ``layer.get_weights()`` plus its class and config.

    ``config`` is ``layer.get_config()`` (``None``: infer from shapes with the defaults of ``keras_version``).
    ``keras_version`` decides what ``hard_sigmoid`` means ('2.x': 0.2x+0.5; '3.x': x/6+0.5).
    """
    from lstmconv.sources.keras import keras_weights_layers

    items = keras_weights_layers(weights, class_name=class_name, config=config, name=name, keras_version=keras_version)
    return collect(items, [], "<arrays>", "keras", None)


def collect(
    items: Iterable[LayerItem | str], skipped: list[str], source: str, source_format: str, wiring: Wiring | None
) -> LoadedModel:
    """Every layer of ``items`` (a str is a layer left out, added to ``skipped``) as one loaded model; refuses
    a source with no layer read or no recurrent layer."""
    layers: list[Layer] = []
    references: dict[str, ReferenceFn] = {}
    for item in items:
        if isinstance(item, str):
            skipped.append(item)
            continue
        layer, reference = item
        layers.append(layer)
        if reference is not None:
            references[layer.name] = reference
    refuse_nothing_read(layers, skipped, source)
    refuse_without_recurrent(layers, skipped, source)
    try:
        model = CanonicalModel(layers=tuple(layers), skipped=tuple(skipped), wiring=wiring)
    except LstmconvError as error:
        raise error.with_context(file=source) from None
    return LoadedModel(model=model, references=references, source=source, source_format=source_format)


def loaded_layers(loaded: LoadedModel) -> LayerSource:
    """A model already in memory as a layer stream for the targets."""
    layers = loaded.model.layers
    return LayerSource(
        loaded.source,
        loaded.source_format,
        ((layer, loaded.references.get(layer.name)) for layer in layers),
        list(loaded.model.skipped),
        loaded.model.wiring,
        [layer.name for layer in layers],
    )
