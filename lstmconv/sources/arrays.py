"""Arrays handed over in memory (``get_weights()``, a ``state_dict``): numbers only, in the machine's byte order."""

from __future__ import annotations

from typing import Any

import numpy as np

from lstmconv.errors import ConfigError

__all__ = ["numeric_array", "native_order"]


def native_order(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (a copy only when it is not): writers copy raw bytes."""
    native = array.dtype.newbyteorder("=")
    return array if array.dtype == native else array.astype(native)


def numeric_array(value: Any, source: str, tensor: str) -> np.ndarray:
    """``value`` as a NumPy array of numbers (object, string and empty values refused by name)."""
    if value is None:
        raise ConfigError("the array is None", file=source, tensor=tensor)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"not an array: {error}", file=source, tensor=tensor) from None
    if array.dtype.kind not in "fiub":
        raise ConfigError(f"the array holds {array.dtype}, not numbers", file=source, tensor=tensor)
    return array
