"""ml5.js charRNN models: a ``manifest.json`` naming one raw file per TF1 variable (deeplearn.js's
``CheckpointLoader`` format, dumped from a TF1 char-RNN checkpoint).

``manifest.json`` maps each TensorFlow variable name to ``{"filename", "shape"}``; the file beside it holds the
values as raw little-endian float32, nothing else (``CheckpointLoader`` makes a ``Float32Array`` of the whole
file, so its size must be the shape's). The cells are TF1 ``BasicLSTMCell``s (:mod:`lstmconv.sources.tf1_checkpoint`);
ml5 runs each with tfjs ``basicLSTMCell(forgetBias = 1.0)`` and tanh, facts of its runtime, not of the file (a
``--config`` cells file may still state others). Pre-TF 1.2 dumps name the variables ``weights``/``biases``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.errors import InputFormatError
from lstmconv.io.reading import read_into, read_json, regular_file
from lstmconv.protocols import LayerItem, Options
from lstmconv.schema import Wiring
from lstmconv.sources.tf1_checkpoint import stated_cells, tf1_cells

__all__ = ["SOURCE"]

#: what ml5's charRNN does with every cell (ml5-library src/CharRNN: tf.basicLSTMCell(tf.tensor(1.0), ...))
_RUNTIME = "ml5's charRNN runs each cell as tfjs basicLSTMCell with forgetBias 1.0 and tanh"
_RUNTIME_FACTS = {"forget_bias": 1.0, "activation": "tanh"}


@dataclass(frozen=True)
class _Variable:
    file: Path
    shape: tuple[int, ...]


class Ml5Variables:
    """The variables a manifest lists, each read from its file when asked for."""

    def __init__(self, manifest: Path, entries: dict[str, _Variable]) -> None:
        self.manifest = manifest
        self.entries: Mapping[str, _Variable] = entries

    def read(self, name: str) -> np.ndarray:
        variable = self.entries[name]
        regular_file(variable.file, "variable file")
        size = variable.file.stat().st_size
        expected = math.prod(variable.shape) * 4
        if size != expected:
            raise InputFormatError(
                "the variable's file does not hold its shape's float32 values", file=variable.file, tensor=name,
                expected=f"{expected} bytes for shape {list(variable.shape)}", actual=f"{size} bytes",
            )
        array = np.empty(variable.shape, dtype="<f4")
        with variable.file.open("rb") as handle:
            if not read_into(handle, array, 0):
                raise InputFormatError("the variable's file ended early", file=variable.file, tensor=name)
        return array


def _manifest(path: Path) -> Any:
    return read_json(path, "manifest.json")


def _listed(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("filename"), str) and isinstance(value.get("shape"), list)


class Ml5Source:
    def claims(self, path: Path) -> bool:
        """A ``.json`` mapping names to ``{"filename", "shape"}``."""
        try:
            manifest = _manifest(path)
        except InputFormatError:
            return False
        return isinstance(manifest, dict) and bool(manifest) and all(_listed(value) for value in manifest.values())

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        manifest = _manifest(path)
        if not isinstance(manifest, dict) or not all(_listed(value) for value in manifest.values()):
            raise InputFormatError("not an ml5 manifest: each variable needs a filename and a shape", file=path)
        entries = {}
        for name, value in manifest.items():
            filename, shape = value["filename"], value["shape"]
            if Path(filename).name != filename or filename in ("", ".", ".."):
                raise InputFormatError(
                    "a variable's file is outside the manifest's folder", file=path, tensor=name, actual=filename,
                    hint="ml5 fetches each file beside manifest.json; lstmconv reads nothing else",
                )
            if not all(isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 1 << 31 for size in shape):
                raise InputFormatError("a variable's shape is not a list of sizes", file=path, tensor=name, actual=shape)
            entries[name] = _Variable(path.parent / filename, tuple(shape))
        user = stated_cells(options.config)
        stated = {**user, "*": {**_RUNTIME_FACTS, **user.get("*", {})}}
        items, names = tf1_cells(Ml5Variables(path, entries), path, "ml5", graph=None, stated=stated, runtime=_RUNTIME, lstm_only=True)
        yield items, None, names


SOURCE = Ml5Source()
