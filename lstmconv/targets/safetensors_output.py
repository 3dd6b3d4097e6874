"""What the torch and canonical targets share: a ``.safetensors`` written one layer at a time, its header last
(:class:`~lstmconv.io.safetensors_stream.SafetensorsStream`), and read back for the tensors it lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstmconv.errors import VerificationError
from lstmconv.io.safetensors_stream import SafetensorsStream

__all__ = ["open_safetensors", "add_tensors", "check_safetensors"]


def open_safetensors(path: Path, names: Sequence[str]) -> SafetensorsStream:
    """A stream for a file of the layers ``names``, with generous room for its header (every tensor's name,
    shape and offset, and each layer's description); the stream moves the data up once if it was not enough."""
    layers = max(len(names), 1)
    reserve = 8192 + 24 * 1024 * layers + 4 * sum(map(len, names)) + 600 * 16 * layers
    return SafetensorsStream(path, reserve)


def add_tensors(stream: SafetensorsStream, tensors: dict[str, np.ndarray]) -> None:
    """A layer's tensors in name order, each flushed behind as the next is written (the disk works meanwhile)."""
    for name in sorted(tensors):
        stream.add(name, tensors[name])
        stream.flush_behind()


def check_safetensors(path: Path, written: list[str]) -> None:
    """The finished file parses as safetensors and lists exactly the tensors written."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        if set(handle.keys()) != set(written):  # noqa: SIM118 - not a dict
            raise VerificationError("the written file does not list the tensors written", file=path)
