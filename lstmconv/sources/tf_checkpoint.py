"""TensorFlow 2 object-based checkpoints, as Keras ``model.save_weights("prefix")`` writes them (TF format).

SRC is the ``<prefix>.index`` file (:mod:`lstmconv.io.tf_bundle`), the prefix, or a folder whose ``checkpoint``
file names the checkpoint (:meth:`TfCheckpointSource.resolve`). The checkpoint's object graph
(``_CHECKPOINTABLE_OBJECT_GRAPH``, a ``TrackableObjectGraph``) ties each variable to its layer: the root's
children ``layer_with_weights-N`` in model order, each variable under them with its ``full_name``
(``LSTM_1/lstm_cell/kernel``) and ``checkpoint_key``; the optimizer's slots are not a layer's and are left out.
The architecture is not in a checkpoint: with ``--config`` (``model.to_json()``) each layer takes its config;
without it each layer's class and facts are inferred from the names and shapes and reported as inferred, as for
a weights-only Keras file. A checkpoint holds tf.keras 2 layers (Keras 3 writes no TF checkpoints).
Name-based TF1 checkpoints (no object graph) are :mod:`lstmconv.sources.tf1_checkpoint`'s.
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
from lstmconv.io.tf_bundle import TensorBundle, open_bundle
from lstmconv.io.tf_objects import checkpoint_graph, variables_under
from lstmconv.protocols import LayerItem, Options
from lstmconv.schema import Wiring
from lstmconv.sources.keras import keras_layers
from lstmconv.sources.keras_files import flatten_config, model_wiring, read_sidecar

__all__ = ["SOURCE", "checkpoint_entries", "layer_entries"]

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
                "a name-based (TF1) checkpoint, not a TF2 object-based one (Keras save_weights)",
                file=path,
                hint="read it as a TF1 checkpoint of tf.nn.rnn_cell cells: --from tf1-checkpoint (source_format='tf1-checkpoint')",
            )
        model = read_sidecar(options.config)["model"] if options.config is not None else None
        entries = checkpoint_entries(bundle, model)
        # tf.keras of TF 2 (object-based checkpoints are what it writes): its defaults are sigmoid gates and
        # reset_after=True, reported as inferred where no --config states them
        info = KerasFileInfo(str(path), "2-tf", "tf-checkpoint", model is not None)
        wiring = model_wiring(model)
        yield keras_layers(info, entries, skip_unsupported=options.skip_unsupported), wiring, [e.name for e in entries]


SOURCE = TfCheckpointSource()


def checkpoint_entries(bundle: TensorBundle, model: dict[str, Any] | None) -> list[KerasLayerEntry]:
    """One entry per ``layer_with_weights-N`` of the root, in model order; its name is its variables' scope."""
    nodes = checkpoint_graph(bundle.read_bytes(_GRAPH), bundle.index)
    numbered = sorted((int(match.group(1)), child) for child, local_name in (nodes[0].children if nodes else ()) if (match := _LAYER.match(local_name)))
    layers = []
    for _, node_id in numbered:
        variables = variables_under(nodes, node_id, bundle.entries, bundle.index)
        if variables:
            layers.append((variables[0][0].split("/", 1)[0], variables))
    configs = {name: (cls, cfg) for name, cls, cfg, _ in flatten_config(model)} if model is not None else {}
    return layer_entries(bundle, layers, configs, model)


def layer_entries(
    bundle: TensorBundle,
    layers: list[tuple[str, list[tuple[str, str]]]],
    configs: dict[str, tuple[str, dict[str, Any]]],
    model: dict[str, Any] | None,
) -> list[KerasLayerEntry]:
    """One entry per layer with variables: ``layers`` are (name, its variables' full names and checkpoint keys,
    :func:`lstmconv.io.tf_objects.variables_under`) in model order, ``configs`` the known (class, config) of each
    name; with a ``model`` config its weightless layers are added in order (they matter for the wiring) and every
    layer with weights must be in it."""
    entries = []
    for name, variables in layers:
        if not variables:
            continue
        cls, cfg = configs.get(name, (None, None))
        if model is not None and cls is None:
            raise ConfigError("the checkpoint holds weights of a layer that is not in the model config", file=bundle.index, layer=name)
        keys = [key for _, key in variables]
        entries.append(KerasLayerEntry(name, cls, cfg, [f"{full}:0" for full, _ in variables], _loader(bundle, keys)))
    if model is not None:
        named = {entry.name for entry in entries}
        order = [name for name, cls, _, _ in flatten_config(model) if cls not in ("Sequential", "Model", "Functional")]
        entries += [KerasLayerEntry(name, *configs[name], [], lambda: []) for name in order if name not in named]
        entries.sort(key=lambda entry: order.index(entry.name) if entry.name in order else len(order))
    if not entries:
        raise InputFormatError("no Keras layer's weights found through the object graph", file=bundle.index)
    return entries


def _loader(bundle: TensorBundle, keys: list[str]) -> Callable[[], list[np.ndarray]]:
    def load() -> list[np.ndarray]:
        return [bundle.read(key) for key in keys]

    return load
