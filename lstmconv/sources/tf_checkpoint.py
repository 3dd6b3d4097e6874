"""TensorFlow 2 object-based checkpoints, as Keras ``model.save_weights("prefix")`` writes them (TF format).

SRC is the ``<prefix>.index`` file (:mod:`lstmconv.io.tf_bundle`), the prefix, or a folder whose ``checkpoint``
file names the checkpoint (:meth:`TfCheckpointSource.resolve`). The checkpoint's object graph
(``_CHECKPOINTABLE_OBJECT_GRAPH``, a ``TrackableObjectGraph``) ties each variable to its layer: the root's
children ``layer_with_weights-N`` in model order, each variable under them with its ``full_name``
(``LSTM_1/lstm_cell/kernel``) and ``checkpoint_key``; the optimizer's slots are not a layer's and are left out.
The architecture is not in a checkpoint: with ``--config`` (``model.to_json()``) each layer takes its config;
without it each layer's class and facts are inferred from the names and shapes and reported as inferred, as for
a weights-only Keras file. A checkpoint holds tf.keras 2 layers (Keras 3 writes no TF checkpoints).
Name-based TF1 checkpoints (no object graph) are refused for now.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstmconv.adapters.keras_entries import KerasFileInfo, KerasLayerEntry
from lstmconv.errors import ConfigError, InputFormatError, UnsupportedFeatureError
from lstmconv.io.protobuf_wire import WIRE_LEN, WireFormatError, fields, read_varint
from lstmconv.io.tf_bundle import TensorBundle, open_bundle
from lstmconv.protocols import LayerItem, Options
from lstmconv.schema import Wiring
from lstmconv.sources.keras import keras_layers
from lstmconv.sources.keras_files import flatten_config, model_wiring, read_sidecar

__all__ = ["SOURCE"]

_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_LAYER = re.compile(r"layer_with_weights-(\d+)$")


class TfCheckpointSource:
    def resolve(self, path: Path) -> Path | None:
        """``<prefix>.index`` for a checkpoint prefix, and for a folder the checkpoint its ``checkpoint`` file
        names (``model_checkpoint_path``, relative to the folder, as ``tf.train.latest_checkpoint`` reads it)."""
        if path.is_dir():
            state = path / "checkpoint"
            if not state.is_file() or state.stat().st_size > 1 << 20:
                return None
            found = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', state.read_text(errors="replace"), re.M)
            if found is None:
                return None
            prefix = Path(found.group(1).encode().decode("unicode_escape"))
            return Path(str(prefix if prefix.is_absolute() else path / prefix) + ".index")
        index = Path(str(path) + ".index")
        return index if not path.exists() and index.is_file() else None

    def claims(self, path: Path) -> bool:
        """Whether an ``.index`` file is a tensor bundle's (the table magic ends it)."""
        try:
            with path.open("rb") as handle:
                handle.seek(-8, 2)
                return handle.read(8) == (0xDB4775248B80FB57).to_bytes(8, "little")
        except OSError:
            return False

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        bundle = open_bundle(path)
        if _GRAPH not in bundle.entries:
            raise UnsupportedFeatureError(
                "a name-based (TF1) checkpoint: lstmconv reads TF2 object-based checkpoints (Keras save_weights)",
                file=path,
                hint="TF1 checkpoints of tf.nn.rnn_cell cells are not supported yet",
            )
        model = read_sidecar(options.config)["model"] if options.config is not None else None
        entries = _entries(bundle, model)
        # tf.keras of TF 2 (object-based checkpoints are what it writes): its defaults are sigmoid gates and
        # reset_after=True, reported as inferred where no --config states them
        info = KerasFileInfo(str(path), "2-tf", "tf-checkpoint", model is not None)
        wiring = model_wiring(model)
        yield keras_layers(info, entries, skip_unsupported=options.skip_unsupported), wiring, [e.name for e in entries]


SOURCE = TfCheckpointSource()


def _entries(bundle: TensorBundle, model: dict[str, Any] | None) -> list[KerasLayerEntry]:
    """One entry per layer with weights, in model order, each reading its variables when built."""
    nodes = _object_graph(bundle)
    layers: list[tuple[int, list[tuple[str, str]]]] = []
    for node_id, local_name in nodes[0][0] if nodes else []:
        match = _LAYER.match(local_name)
        if match:
            layers.append((int(match.group(1)), _variables(nodes, node_id, bundle)))
    configs = {name: (cls, cfg) for name, cls, cfg, _ in flatten_config(model)} if model is not None else {}
    entries = []
    for _, variables in sorted(layers):
        if not variables:
            continue
        name = variables[0][0].split("/", 1)[0]
        cls, cfg = configs.get(name, (None, None))
        if model is not None and cls is None:
            raise ConfigError("the checkpoint holds weights of a layer that is not in the model config", file=bundle.index, layer=name)
        keys = [key for _, key in variables]
        entries.append(KerasLayerEntry(name, cls, cfg, [f"{full}:0" for full, _ in variables], _loader(bundle, keys)))
    if model is not None:  # weightless layers (Dropout, Activation...) matter for the wiring
        named = {entry.name for entry in entries}
        order = [name for name, cls, _, _ in flatten_config(model) if cls not in ("Sequential", "Model", "Functional")]
        entries += [KerasLayerEntry(name, *configs[name], [], lambda: []) for name in order if name not in named]
        entries.sort(key=lambda entry: order.index(entry.name) if entry.name in order else len(order))
    if not entries:
        raise InputFormatError("the checkpoint holds no layer's weights (no layer_with_weights-N)", file=bundle.index)
    return entries


def _loader(bundle: TensorBundle, keys: list[str]) -> Callable[[], list[np.ndarray]]:
    def load() -> list[np.ndarray]:
        return [bundle.read(key) for key in keys]

    return load


def _variables(nodes: list[tuple[list[tuple[int, str]], list[tuple[str, str]]]], node_id: int, bundle: TensorBundle) -> list[tuple[str, str]]:
    """(full_name, checkpoint_key) of every variable under ``node_id``, in the order the layer created them."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def walk(current: int, depth: int) -> None:
        if current in seen or depth > 16 or current >= len(nodes):
            return
        seen.add(current)
        children, attributes = nodes[current]
        for full_name, key in attributes:
            if key not in bundle.entries:
                raise InputFormatError("the object graph names a variable the checkpoint does not hold", file=bundle.index, tensor=key)
            found.append((full_name, key))
        for child, _ in children:
            walk(child, depth + 1)

    walk(node_id, 0)
    return found


def _object_graph(bundle: TensorBundle) -> list[tuple[list[tuple[int, str]], list[tuple[str, str]]]]:
    """The ``TrackableObjectGraph``: per node, its children (node id, local name) and its variables
    (full name, checkpoint key)."""
    data = bundle.read_bytes(_GRAPH)
    nodes = []
    try:
        for node in fields(data, 0, len(data)):
            if node.number != 1 or node.wire != WIRE_LEN:
                continue
            children: list[tuple[int, str]] = []
            attributes: list[tuple[str, str]] = []
            for part in fields(data, node.value_start, node.end):
                if part.wire != WIRE_LEN or part.number not in (1, 2):
                    continue
                values: dict[int, Any] = {}
                for item in fields(data, part.value_start, part.end):
                    if item.wire == WIRE_LEN:
                        values[item.number] = bytes(data[item.value_start : item.end]).decode("utf-8", "replace")
                    else:
                        values[item.number] = read_varint(data, item.value_start)[0]
                if part.number == 1:
                    children.append((int(values.get(1, 0)), str(values.get(2, ""))))
                elif values.get(1) == "VARIABLE_VALUE":
                    attributes.append((str(values.get(2, "")), str(values.get(3, ""))))
            nodes.append((children, attributes))
    except WireFormatError as error:
        raise InputFormatError(f"cannot read the checkpoint's object graph: {error}", file=bundle.index) from None
    return nodes
