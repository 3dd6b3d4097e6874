"""What every Keras reader produces: one entry per layer, with its config (if known) and its arrays.

The legacy ``.h5`` reader, the Keras 3 reader and in-memory ``get_weights()`` callers all produce
:class:`KerasLayerEntry` objects; :mod:`lstmconv.adapters.keras_layers` turns them into canonical layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KerasLayerEntry", "KerasFileInfo", "keras_major", "CONFIG_ATTRIBUTE"]

#: The attribute of a layer's group in which lstmconv's Keras writers keep the layer's Keras config (JSON
#: ``{"class_name", "config"}``) when the file has no model config to hold it; Keras ignores it.
CONFIG_ATTRIBUTE = "lstmconv_config"


#: Keras's own ways of holding layers: legacy HDF5 files, Keras 3 archives and weights files, in-memory arrays
KERAS_LAYOUTS = ("keras-h5", "keras3-zip", "keras3-weights", "arrays")


@dataclass(frozen=True)
class KerasFileInfo:
    """Facts about the whole file that change how layers are read."""

    path: str
    keras_version: str | None  # as recorded; None for Keras 1 files, which record none
    layout: str  # one of KERAS_LAYOUTS, or the source format that holds Keras layers in its own files
    has_config: bool

    @property
    def framework(self) -> str:
        """The source format the layers are reported from: Keras for Keras's own files, else the format
        (tfjs, a TensorFlow checkpoint or SavedModel) named by the layout."""
        return "keras" if self.layout in KERAS_LAYOUTS else self.layout

    @property
    def major(self) -> int:
        """Keras major version that wrote the file (1 when the file records none)."""
        return keras_major(self.keras_version)


def keras_major(version: str | None) -> int:
    """'2.2.4-tf' -> 2, '3.13.2' -> 3, None (Keras 1 files record no version) -> 1."""
    if not version:
        return 1
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 2


@dataclass
class KerasLayerEntry:
    """One Keras layer: name, class and config when known, and a loader for its arrays in file order."""

    name: str
    class_name: str | None
    config: dict[str, Any] | None
    array_names: list[str]
    load_arrays: Callable[[], list[np.ndarray]]
    notes: list[str] = field(default_factory=list)
