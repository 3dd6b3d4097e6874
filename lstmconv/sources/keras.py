"""Keras files: legacy ``.h5`` (Keras 1 and 2, tf.keras), Keras 3 ``.weights.h5`` and ``.keras`` archives
(:mod:`lstmconv.sources.keras_files`), and one layer's ``get_weights()`` held in memory. Each layer's arrays
are read when its layer is built (:mod:`lstmconv.adapters.keras_layers`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.adapters.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.adapters.keras_layers import RECURRENT_CLASSES, build_layer
from lstmconv.errors import ConfigError, UnsupportedFeatureError
from lstmconv.protocols import LayerItem, LeftOut, Options
from lstmconv.schema import Wiring
from lstmconv.sources.arrays import native_order, numeric_array
from lstmconv.sources.keras_files import open_keras

__all__ = ["SOURCE", "keras_layers", "keras_weights_layers"]


class KerasSource:
    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        """``meanwhile`` runs while the file's HDF5 structure is vetted in a forked child."""
        with open_keras(path, options.config, meanwhile=meanwhile) as (info, entries, wiring):
            items = keras_layers(info, entries, skip_unsupported=options.skip_unsupported)
            yield items, wiring, [entry.name for entry in entries]


SOURCE = KerasSource()


def keras_layers(
    info: KerasFileInfo, entries: list[KerasLayerEntry], *, skip_unsupported: bool
) -> Iterator[LayerItem | str]:
    """Build the entries' layers one at a time (each reads only its own arrays); a str is a left-out layer."""
    for entry in entries:
        try:
            built = build_layer(entry, info)
        except UnsupportedFeatureError as error:
            if entry.class_name in RECURRENT_CLASSES and not skip_unsupported:
                raise
            yield LeftOut(entry.name, error.message, entry.class_name or "no config")
            continue
        if built is not None:
            yield built.layer, built.reference
        del built  # not held while the next layer is read


def keras_weights_layers(
    weights: Sequence[np.ndarray],
    *,
    class_name: str,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    keras_version: str = "3",
) -> Iterator[LayerItem | str]:
    """The layer items of one Keras layer given as ``layer.get_weights()`` plus its class and config.

    ``config`` is ``layer.get_config()`` (``None``: infer from shapes with the defaults of ``keras_version``).
    ``keras_version`` decides what ``hard_sigmoid`` means ('2.x': 0.2x+0.5; '3.x': x/6+0.5).
    """
    if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Sequence | np.ndarray):
        raise ConfigError(f"weights are a list of arrays (layer.get_weights()); got a {type(weights).__name__}", file="<arrays>")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"config is a mapping (layer.get_config()); got a {type(config).__name__}", file="<arrays>")
    if not isinstance(keras_version, str) or not isinstance(class_name, str):
        raise ConfigError("class_name and keras_version are strings ('LSTM', '2.2.4')", file="<arrays>", actual=(class_name, keras_version))
    arrays = [native_order(numeric_array(w, "<arrays>", f"weights[{k}]")) for k, w in enumerate(weights)]
    layer_name = name or (config or {}).get("name") or class_name.lower()
    entry = KerasLayerEntry(
        name=layer_name,
        class_name=class_name,
        config=dict(config) if config is not None else None,
        array_names=[f"weights[{i}]" for i in range(len(arrays))],
        load_arrays=lambda: arrays,
    )
    info = KerasFileInfo("<arrays>", keras_version, "arrays", config is not None)
    return keras_layers(info, [entry], skip_unsupported=False)
