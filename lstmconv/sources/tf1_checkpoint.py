"""TensorFlow 1 name-based checkpoints of ``tf.nn.rnn_cell`` cells (``tf.train.Saver``, V2 format).

SRC is the ``<prefix>.index`` (or the prefix, or a folder whose ``checkpoint`` file names it: see
:mod:`lstmconv.sources.tf_checkpoint`). Each cell is found by its variable scope (``.../cell_0/lstm_cell/kernel``;
:mod:`lstmconv.layouts.tf1`) and becomes one layer named by that scope. What the checkpoint does not store is
read from the graph beside it (``<prefix>.meta``, :mod:`lstmconv.io.tf_graph`), as the ops TensorFlow runs:

- ``forget_bias``: the constant added to the third block of the gates' ``Split`` (``.../lstm_cell/add/y``),
  or the ``forget_bias`` attribute of an ``LSTMBlockCell`` op;
- the activation: the op applied to the candidate block (LSTM), or to the ``BiasAdd`` (BasicRNNCell, and
  GRUCell's candidate), in the graph or in a ``while`` body function of its library;
- a ``cell_clip``/``proj_clip`` (``clip_by_value`` ops in the cell's scope), refused: it clamps the state
  itself, which no target lstmconv writes computes.

Ops are tied to a cell by the longest tail of its variable scope found in their names (op scopes differ from
variable scopes: ``rnnlm_1/rnn_decoder/rnn_decoder/multi_rnn_cell/cell_0/lstm_cell/add/y`` for the variables of
``rnnlm/rnn_decoder/multi_rnn_cell/cell_0/lstm_cell``; a loop body's ops are named ``basic_rnn_cell/Relu``).
Without a graph each cell takes its class's defaults, reported as inferred; ``--config`` may state them as
``{"tf1_cells": {"<scope>" or "*": {"forget_bias": 0.0, "activation": "relu"}}}``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lstmconv.activations import Activation
from lstmconv.adapters.tf1 import Tf1Cell, tf1_cell_to_canonical
from lstmconv.errors import ConfigError, InputFormatError, UnsupportedFeatureError
from lstmconv.io.reading import regular_file
from lstmconv.io.tf_bundle import open_bundle
from lstmconv.io.tf_graph import GraphOps, MetaGraph, read_meta_graph
from lstmconv.layouts.tf1 import TF1_ACTIVATION_OPS, TF1_BLOCK_OPS, TF1_CELLS, Tf1CellKind
from lstmconv.protocols import LayerItem, LeftOut, Options
from lstmconv.reference.common import LayerOutput, LayerStates
from lstmconv.reference.tf1 import tf1_forward
from lstmconv.schema import RecurrentLayer, SourceInfo, StackLevel, Wiring

__all__ = ["SOURCE", "Variables", "tf1_cells", "stated_cells"]

_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SLOTS = re.compile(r"(^|/)(Adam(_\d+)?|Momentum|RMSProp(_\d+)?|Adagrad(DA)?|Adadelta(_\d+)?|Ftrl(_\d+)?|beta[12]_power|global_step)$")
_PRE_1_2 = {"kernel": "weights", "bias": "biases"}  # TF < 1.2 named the same variables so


class Tf1CheckpointSource:
    def claims(self, path: Path) -> bool:
        """A tensor bundle without an object graph: a name-based checkpoint."""
        try:
            return _GRAPH not in open_bundle(path).entries
        except (InputFormatError, UnsupportedFeatureError, OSError):
            return False

    @contextlib.contextmanager
    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None = None
    ) -> Iterator[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        bundle = open_bundle(path)
        meta = Path(str(path)[: -len(".index")] + ".meta") if str(path).endswith(".index") else None
        graph = read_meta_graph(meta) if meta is not None and meta.exists() else None
        items, names = tf1_cells(bundle, path, "tf1-checkpoint", graph=graph, stated=stated_cells(options.config))
        yield items, None, names


class Variables(Protocol):
    """Named arrays: a tensor bundle, or the files an ml5 manifest lists."""

    @property
    def entries(self) -> Mapping[str, object]: ...

    def read(self, name: str) -> np.ndarray: ...


def tf1_cells(
    variables: Variables, path: Path, framework: str, *, graph: MetaGraph | None, stated: dict[str, dict[str, Any]],
    runtime: str | None = None, lstm_only: bool = False,
) -> tuple[Iterator[LayerItem | str], list[str]]:
    """The layers of the TF1 cells among ``variables`` (read one layer at a time), and their names. ``stated``:
    facts given for cells (``"*"``: every cell); ``runtime``: the note of a runtime that fixes them and runs only
    LSTM cells if ``lstm_only`` (ml5)."""
    cells = _find_cells(variables)
    if lstm_only and (other := [scope for scope, kind in cells if kind.cell != "lstm"]):
        raise UnsupportedFeatureError(
            f"cells its runtime cannot run: {', '.join(other)}", file=path, hint=f"{runtime}; only its LSTM cells are read",
        )
    if not cells:
        raise UnsupportedFeatureError(
            "no tf.nn.rnn_cell cell's variables here (LSTMCell, BasicLSTMCell, GRUCell, BasicRNNCell)",
            file=path,
            hint="lstmconv reads the recurrent cells of TF1 checkpoints; other layers are not named so that they can be read",
        )
    facts = _graph_facts(graph, [scope for scope, _ in cells]) if graph is not None else {}
    owned = {name for scope, kind in cells for name in _variable_names(variables, scope, kind)}
    left = [name for name in variables.entries if name not in owned and not _SLOTS.search(name) and name != ""]
    groups = _stacks(cells)
    pairs = {name for name, members in groups if len(members) == 2 and _PAIR.match(members[0][0])}
    reading = _Reading(variables, path, framework, graph, stated, runtime)

    def items() -> Iterator[LayerItem | str]:
        yield from (LeftOut(name, "not a variable of a tf.nn.rnn_cell cell") for name in left)
        for name, members in groups:
            built = [_layer(reading, scope, kind, facts.get(scope)) for scope, kind in members]
            if len(built) == 1:
                yield from built
            elif name in pairs:
                yield from _paired(name, built)
            else:
                yield from _stacked(name, built)

    return items(), [name for name, _ in groups]


@dataclass(frozen=True)
class _Reading:
    variables: Variables
    path: Path
    framework: str
    graph: MetaGraph | None
    stated: dict[str, dict[str, Any]]
    runtime: str | None


SOURCE = Tf1CheckpointSource()


# ---------------------------------------------------------------------------------------------------
# The cells


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _find_cells(variables: Variables) -> list[tuple[str, Tf1CellKind]]:
    """(scope, class) of every cell whose first kernel is held, ``cell_2`` before ``cell_10``."""
    found = []
    for name in variables.entries:
        for kind in TF1_CELLS.values():
            for kernel in (kind.kernels[0], _old(kind.kernels[0])):
                if name.endswith("/" + kernel):
                    scope = name[: -len(kernel) - 1]
                    if scope.rsplit("/", 1)[-1] == kind.scope:
                        found.append((scope, kind))
    return sorted(set(found), key=lambda item: _natural(item[0]))


_MULTI = re.compile(r"^(?P<stack>(?:.*/)?multi_rnn_cell)/cell_(?P<index>\d+)/[^/]+$")
_PAIR = re.compile(r"^(?P<pair>.+)/(?P<side>fw|bw)/(?P<cell>[^/]+)$")  # bidirectional_dynamic_rnn's two cells


def _stacks(cells: list[tuple[str, Tf1CellKind]]) -> list[tuple[str, list[tuple[str, Tf1CellKind]]]]:
    """Layers to build: a ``MultiRNNCell``'s cells ``cell_0..cell_N-1`` of one class as one stack named by the
    ``MultiRNNCell``'s scope (torch's ``num_layers``), every other cell alone. A stack whose cells turn out not
    to stack (different sizes or activations) is yielded cell by cell (:func:`_stacked`)."""
    stacks: dict[str, list[tuple[int, str, Tf1CellKind]]] = {}
    alone: list[tuple[str, list[tuple[str, Tf1CellKind]]]] = []
    sides: dict[tuple[str, str], dict[str, tuple[str, Tf1CellKind]]] = {}
    for scope, kind in cells:
        pair = _PAIR.match(scope)
        if pair:
            sides.setdefault((pair.group("pair"), pair.group("cell")), {})[pair.group("side")] = (scope, kind)
    paired = {member[0] for found in sides.values() if len(found) == 2 and found["fw"][1] == found["bw"][1] for member in found.values()}
    for (prefix, _), found in sides.items():
        if len(found) == 2 and found["fw"][0] in paired:
            alone.append((prefix, [found["fw"], found["bw"]]))
    for scope, kind in cells:
        if scope in paired:
            continue
        match = _MULTI.match(scope)
        if match:
            stacks.setdefault(match.group("stack"), []).append((int(match.group("index")), scope, kind))
        else:
            alone.append((scope, [(scope, kind)]))
    groups = list(alone)
    for stack, members in stacks.items():
        members.sort()
        if [index for index, _, _ in members] == list(range(len(members))) and len({kind.cls for _, _, kind in members}) == 1 and len(members) > 1:
            groups.append((stack, [(scope, kind) for _, scope, kind in members]))
        else:
            groups.extend((scope, [(scope, kind)]) for _, scope, kind in members)
    return sorted(groups, key=lambda group: _natural(group[0]))


def _paired(name: str, built: list[LayerItem]) -> list[LayerItem]:
    """``bidirectional_dynamic_rnn``'s forward and backward cells as one bidirectional layer with two outputs
    (``merge_mode=None``): TensorFlow returns the pair, the backward outputs put back in input time order. Cells
    of different sizes or activations are yielded one by one."""
    (forward, run_forward), (backward, run_backward) = built
    assert isinstance(forward, RecurrentLayer) and isinstance(backward, RecurrentLayer)
    if forward.meta().model_copy(update={"name": "", "source": None}) != backward.meta().model_copy(update={"name": "", "source": None}):
        return built
    notes = tuple(note for note in forward.source.notes if "backward cell" not in note)
    inferred = tuple(dict.fromkeys((*forward.source.inferred, *backward.source.inferred)))
    pair = forward.model_copy(update={
        "name": name, "bidirectional": True, "merge_mode": "none",
        "levels": (StackLevel(forward=forward.levels[0].forward, backward=backward.levels[0].forward),),
        "source": forward.source.model_copy(update={"notes": notes, "inferred": inferred}),
    })
    pair = RecurrentLayer.model_validate({**dict(pair), "levels": pair.levels})

    def reference(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        assert run_forward is not None and run_backward is not None
        ahead = run_forward(x, None if initial is None else [[initial[0][0]]])
        behind = run_backward(np.ascontiguousarray(x[:, ::-1]), None if initial is None else [[initial[0][1]]])
        y_back = behind.y[:, ::-1]  # type: ignore[index]
        return LayerOutput(y=(ahead.y, y_back), states=[[ahead.states[0][0], behind.states[0][0]]])  # type: ignore[arg-type]

    return [(pair, reference)]


def _stacked(name: str, built: list[LayerItem]) -> list[LayerItem]:
    """One layer of several cells, level k the k-th cell's: each feeds the next, as ``MultiRNNCell`` does; the
    cells one by one when they differ in size or activation (torch's levels share both)."""
    layers = [layer for layer, _ in built]
    first = layers[0]
    assert isinstance(first, RecurrentLayer)
    same = all(
        isinstance(layer, RecurrentLayer) and layer.hidden_size == first.hidden_size and layer.activations == first.activations
        and layer.projection_size == first.projection_size and layer.input_size == (first.input_size if k == 0 else first.output_size)
        for k, layer in enumerate(layers)
    )
    if not same:
        return built
    references = [reference for _, reference in built]
    inferred = tuple(dict.fromkeys(f"{layer.name}: {fact}" for layer in layers for fact in layer.source.inferred))  # type: ignore[union-attr]
    stack = first.model_copy(update={
        "name": name, "num_levels": len(layers), "levels": tuple(level for layer in layers for level in layer.levels),  # type: ignore[union-attr]
        "source": first.source.model_copy(update={"inferred": inferred}),
    })
    stack = RecurrentLayer.model_validate({**dict(stack), "levels": stack.levels})

    def reference(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        states: LayerStates = []
        y = x
        for k, run in enumerate(references):
            assert run is not None
            out = run(y, None if initial is None else [initial[k]])
            y = out.y  # type: ignore[assignment]
            states.extend(out.states)
        return LayerOutput(y=y, states=states)

    return [(stack, reference)]


def _old(name: str) -> str:
    """The name TF < 1.2 gave the variable ``name`` (``kernel`` -> ``weights``); ``name`` itself if it had no other."""
    head, _, leaf = name.rpartition("/")
    return f"{head}/{_PRE_1_2.get(leaf, leaf)}" if head else _PRE_1_2.get(leaf, leaf)


def _variable(variables: Variables, scope: str, name: str) -> str | None:
    """The key of the cell's variable ``name`` under ``scope``, by its current or pre-1.2 name, if held."""
    return next((key for key in (f"{scope}/{name}", f"{scope}/{_old(name)}") if key in variables.entries), None)


def _variable_names(variables: Variables, scope: str, kind: Tf1CellKind) -> list[str]:
    names = [*kind.kernels, *kind.biases, "w_i_diag", "w_f_diag", "w_o_diag", "projection/kernel"]
    return [found for name in names if (found := _variable(variables, scope, name)) is not None]


@dataclass
class _Facts:
    """What a graph's ops say of one cell."""

    forget_bias: set[float] = field(default_factory=set)
    activations: set[str] = field(default_factory=set)
    clipped: bool = False
    clips: set[float] = field(default_factory=set)  # the bounds of its clip_by_value ops
    block: dict[str, float | bool] = field(default_factory=dict)
    seen: bool = False


def _layer(reading: _Reading, scope: str, kind: Tf1CellKind, facts: _Facts | None) -> LayerItem:
    variables, path, graph, stated = reading.variables, reading.path, reading.graph, reading.stated

    def read(name: str) -> np.ndarray:
        found = _variable(variables, scope, name)
        if found is None:
            raise InputFormatError(f"the {kind.cls} has no {name}", file=path, layer=scope, tensor=f"{scope}/{name}")
        return variables.read(found)

    kernels = tuple(read(name) for name in kind.kernels)
    biases = tuple(read(name) for name in kind.biases)
    peepholes = {name: variables.read(found) for name in ("w_i_diag", "w_f_diag", "w_o_diag") if (found := _variable(variables, scope, name))}
    projection_name = _variable(variables, scope, "projection/kernel")
    projection = variables.read(projection_name) if projection_name else None
    units = biases[-1].shape[0] // (4 if kind.cell == "lstm" else 1) if biases[-1].ndim == 1 else 0
    recurrent = projection.shape[1] if projection is not None and projection.ndim == 2 else units
    inputs = kernels[0].shape[0] - recurrent if kernels[0].ndim == 2 else 0
    if units <= 0 or inputs <= 0:
        raise InputFormatError(
            f"the {kind.cls}'s kernel and bias do not fit (kernel rows = input + units)",
            file=path, layer=scope, tensor=f"{scope}/{kind.kernels[0]}", actual=(kernels[0].shape, biases[-1].shape),
        )
    inferred: list[str] = []
    own = {**stated.get("*", {}), **stated.get(scope, {})}
    where = "its graph" if graph is not None else "no .meta graph beside the checkpoint"
    state_clip = None
    if facts is not None and facts.clipped:
        # an LSTMCell without num_proj has one clip: cell_clip on the cell state; with num_proj it may be proj_clip
        if kind.cell != "lstm" or projection is not None or len(facts.clips) != 1:
            raise UnsupportedFeatureError(
                f"the {kind.cls} clips its cell state or projection (clip_by_value ops in the graph: bounds "
                f"{sorted(facts.clips)}), and lstmconv cannot tell which", file=path, layer=scope,
                hint="lstmconv reads an LSTMCell's cell_clip without num_proj; retrain without proj_clip or export the graph",
            )
        state_clip = facts.clips.pop()
    if facts is not None and float(facts.block.get("cell_clip", -1.0)) > 0:
        state_clip = float(facts.block["cell_clip"])
    forget_bias = 0.0
    if kind.forget_bias is not None:
        seen = set(facts.forget_bias) if facts is not None else set()
        if facts is not None and "forget_bias" in facts.block:
            seen.add(float(facts.block["forget_bias"]))
        if "forget_bias" in own:
            forget_bias = float(own["forget_bias"])
        elif len(seen) > 1:
            raise InputFormatError(
                f"the graph adds different forget_bias constants to this cell: {sorted(seen)}", file=path, layer=scope,
                hint='state the one to use: --config with {"tf1_cells": {"<scope>": {"forget_bias": ...}}}',
            )
        elif seen:
            forget_bias = seen.pop()
        else:
            forget_bias = kind.forget_bias
            inferred.append(f"forget_bias={forget_bias} ({kind.cls} default; {where} shows it; pass --config to state it)")
    activation_name = own.get("activation")
    if activation_name is None:
        ops = facts.activations if facts is not None else set()
        unknown = sorted(op for op in ops if op not in TF1_ACTIVATION_OPS)
        if unknown or len(ops) > 1:
            raise UnsupportedFeatureError(
                f"the graph applies {', '.join(sorted(ops))} as the {kind.cls}'s activation", file=path, layer=scope,
                hint="lstmconv reads tanh, relu, sigmoid, elu, selu, softplus, softsign or identity activations",
            )
        if ops:
            activation_name = TF1_ACTIVATION_OPS[ops.pop()]
        else:
            activation_name = "tanh"
            inferred.append(f"activation=tanh ({kind.cls} default; {where} shows it; pass --config to state it)")
    if "use_peephole" in (facts.block if facts is not None else {}) and bool(facts.block["use_peephole"]) != bool(peepholes):  # type: ignore[union-attr]
        raise InputFormatError("the graph's use_peephole and the checkpoint's peephole variables disagree", file=path, layer=scope)
    try:
        activation = Activation(name=activation_name)
    except ValueError:
        raise ConfigError(f"unknown activation {activation_name!r}", file=path, layer=scope) from None
    # a bw cell alone (its fw twin differs): bidirectional_dynamic_rnn feeds it the reversed sequence
    notes = ["a bidirectional_dynamic_rnn backward cell: TensorFlow feeds it the reversed sequence"] if "/bw/" in f"/{scope}/" else []
    if reading.runtime:
        notes.append(reading.runtime)
    cell = Tf1Cell(scope, kind, kernels, biases, int(inputs), int(units), activation, forget_bias, peepholes, projection, state_clip)
    source = SourceInfo(
        framework=reading.framework, layout="tf1", version=graph.tensorflow_version if graph else None,
        inferred=tuple(inferred), notes=tuple(notes),
    )
    layer = tf1_cell_to_canonical(cell, source)

    def reference(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
        return tf1_forward(
            kind.cell, kernels, biases, x=x, initial=initial, forget_bias=forget_bias, activation=activation,
            peepholes=peepholes, projection=projection, cell_clip=state_clip,
        )

    return layer, reference


def stated_cells(config: Path | None) -> dict[str, dict[str, Any]]:
    """The cells' facts a ``--config`` states (``{"tf1_cells": {scope or "*": {...}}}``)."""
    if config is None:
        return {}
    regular_file(config, "cells JSON")
    try:
        data = json.loads(Path(config).read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise ConfigError(f"cannot read the cells JSON: {error}", file=config) from None
    cells = data.get("tf1_cells") if isinstance(data, dict) else None
    if not isinstance(cells, dict) or not all(isinstance(v, dict) for v in cells.values()):
        raise ConfigError(
            "a TF1 checkpoint's --config states its cells' facts", file=config,
            expected='{"tf1_cells": {"<variable scope>" or "*": {"forget_bias": 1.0, "activation": "tanh"}}}',
        )
    for scope, facts in cells.items():
        extra = set(facts) - {"forget_bias", "activation"}
        if extra:
            raise ConfigError(f"unknown cell facts {sorted(extra)}", file=config, layer=scope, expected="forget_bias, activation")
    return cells


# ---------------------------------------------------------------------------------------------------
# The graph's facts


def _graph_facts(graph: MetaGraph, scopes: list[str]) -> dict[str, _Facts]:
    facts = {scope: _Facts() for scope in scopes}
    tails = {scope: scope.split("/") for scope in scopes}
    for part in graph.parts:
        _part_facts(part, tails, facts)
    return facts


def _owner(name: str, tails: dict[str, list[str]]) -> str | None:
    """The cell whose variable scope's longest tail is a run of ``name``'s scope parts (ties: no owner)."""
    parts = name.split("/")[:-1]
    best, best_length, tie = None, 0, False
    for scope, scope_parts in tails.items():
        if scope_parts[-1] not in parts:
            continue
        length = 0
        for size in range(len(scope_parts), 0, -1):
            tail = scope_parts[-size:]
            if any(parts[i : i + size] == tail for i in range(len(parts) - size + 1)):
                length = size
                break
        if length > best_length:
            best, best_length, tie = scope, length, False
        elif length == best_length and length:
            tie = True
    return None if tie else best


def _part_facts(part: GraphOps, tails: dict[str, list[str]], facts: dict[str, _Facts]) -> None:
    by_name = {node.name: node for node in part.nodes}
    consumers: dict[str, list[Any]] = {}
    for node in part.nodes:
        for reference in node.inputs:
            consumers.setdefault(reference, []).append(node)
    kinds = {scope: TF1_CELLS[scope.rsplit("/", 1)[-1]].cell for scope in tails}
    for node in part.nodes:
        scope = _owner(node.name, tails)
        if scope is None:
            continue
        cell_facts, cell = facts[scope], kinds[scope]
        cell_facts.seen = True
        if node.op == "ClipByValue" or "clip_by_value" in node.name.split("/"):
            cell_facts.clipped = True
            if node.op == "Minimum":  # clip_by_value(c, -clip, clip) = Maximum(Minimum(c, clip), -clip)
                for reference in node.inputs:
                    constant = by_name.get(reference.split(":")[0])
                    if constant is not None and constant.op == "Const" and len(constant.value) == 1:
                        cell_facts.clips.add(float(constant.value[0]))
        if node.op in TF1_BLOCK_OPS:
            cell_facts.block.update(node.floats)
            cell_facts.block.update(node.flags)
        if cell == "lstm" and node.op in ("Split", "SplitV"):
            for consumer in consumers.get(f"{node.name}:2", []):
                if consumer.op in ("Add", "AddV2"):
                    other = next((i for i in consumer.inputs if i != f"{node.name}:2"), "")
                    constant = by_name.get(other.split(":")[0])
                    if constant is not None and constant.op == "Const" and len(constant.value) == 1:
                        cell_facts.forget_bias.add(float(constant.value[0]))
            cell_facts.activations.update(c.op for c in consumers.get(f"{node.name}:1", []))
        if cell in ("rnn", "gru") and node.op == "BiasAdd":
            for consumer in consumers.get(f"{node.name}:0", []):
                gates = cell == "gru" and consumer.op == "Sigmoid" and any(
                    c.op in ("Split", "SplitV") for c in consumers.get(f"{consumer.name}:0", [])
                )
                if not gates:
                    cell_facts.activations.add(consumer.op)
