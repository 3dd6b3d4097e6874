"""What a source and a target provide, and what travels between them and the pipeline.

A **source** module (``lstmconv/sources/<format>.py``) has ``SOURCE``, a :class:`Source`: it opens a file and
yields its layers one at a time, each in the canonical form with the function it computes in the source's own
layout (its reference), or the text of a layer it leaves out (:class:`LeftOut`).

A **target** module (``lstmconv/targets/<name>.py``) has ``TARGET``, a :class:`Target`: it says why it refuses a
layer, and makes a :class:`Writer` for one destination, which plans each layer's tensors with the function they
compute and writes them to its stream.

The pipeline (:mod:`lstmconv.pipeline`) owns everything between: detection, the checks every source gets (names,
non-finite weights), the refusals, the numeric check, the background planning, the atomic write and the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from lstmconv.reference.common import ReferenceFn
    from lstmconv.schema import Layer, Wiring

__all__ = [
    "Options",
    "TARGET_OPTIONS",
    "LeftOut",
    "LayerItem",
    "LayerSource",
    "Source",
    "Planned",
    "Refusal",
    "TensorStream",
    "Writer",
    "Target",
    "TargetBase",
]


@dataclass(frozen=True)
class Options:
    """Everything a conversion is asked to do besides its source and destination (the CLI's flags)."""

    verify: bool = True  # check each layer numerically against its source
    force: bool = False  # replace existing outputs
    skip_unsupported: bool = False  # leave out the layers a target refuses instead of refusing the file
    allow_nonfinite: bool = False  # convert weights holding NaN or Inf (those layers are not checked)
    config: Path | None = None  # an architecture JSON for weights-only Keras files
    source_format: str | None = None  # the source's format, when not detected
    per_layer: bool = False  # every layer on its own even when the wiring is known (ONNX: its own subgraph)
    external_data: bool = False  # onnx: the weights in <destination>.data
    emit_module: Path | None = None  # torch: a module file computing what torch.nn cannot

    def given(self) -> list[str]:
        """The target-specific options (:data:`TARGET_OPTIONS`) given, by keyword."""
        defaults = Options()
        return [name for name in TARGET_OPTIONS if getattr(self, name) != getattr(defaults, name)]


#: the options only some targets take (``TargetSpec.options`` says which): keyword -> (flag, library spelling)
TARGET_OPTIONS: dict[str, tuple[str, str]] = {
    "external_data": ("--external-data", "external_data=True"),
    "emit_module": ("--emit-module", "emit_module=..."),
}


class LeftOut(str):
    """A layer (or a tensor) left out of a conversion, with why: the text ``"name (Class): reason"`` that reports
    print, with its parts kept for ``--json``."""

    layer: str
    kind: str | None
    reason: str

    def __new__(cls, layer: str, reason: str, kind: str | None = None) -> LeftOut:
        text = f"{layer} ({kind}): {reason}" if kind else f"{layer}: {reason}"
        made = super().__new__(cls, text)
        made.layer, made.kind, made.reason = layer, kind, reason
        return made


#: One layer read: its canonical form and the function it computes in the source's layout (None: not checked).
LayerItem = tuple["Layer", "ReferenceFn | None"]


@dataclass
class LayerSource:
    """A source's layers as targets take them, read one at a time from a file or from a model in memory."""

    source: str  # the file, or what a model in memory came from (for messages and metadata)
    source_format: str  # a registry source name
    layers: Iterator[LayerItem]
    skipped: list[str]  # what is left out, with why; grows while ``layers`` is consumed
    wiring: Wiring | None = None
    names: Sequence[str] = ()  # the layers' names where known before their weights are read (a size hint)
    known_finite: bool = False  # non-finite weights were refused as the layers were read


class Source(Protocol):
    """A source format's reader (``SOURCE`` in its module)."""

    def open(
        self, path: Path, options: Options, meanwhile: Callable[[], object] | None
    ) -> AbstractContextManager[tuple[Iterator[LayerItem | str], Wiring | None, Sequence[str]]]:
        """Open ``path``: its layer items (a str is a layer left out), its wiring if known, and the names of
        its layers where known before any weight is read. ``meanwhile`` may be run while the file is vetted."""
        ...


@dataclass
class Planned:
    """One layer as a target writes it.

    ``tensors`` are written in their order under their names; ``function`` computes the layer from them (the
    target half of the numeric check; None: not checked); ``became`` is its report row's "became" (None: no
    row, e.g. a Dropout inside an ONNX graph); ``notes`` go to the report row.
    """

    layer: Layer  # the layer planned, whole (the source half of the check reads its weights)
    tensors: dict[str, np.ndarray]
    function: ReferenceFn | None
    became: str | None
    notes: tuple[str, ...] = ()
    payload: object = None  # anything else the writer's own stream needs (Keras: the layer's groups)


class TensorStream(Protocol):
    """An output file being written one tensor at a time."""

    def add(self, name: str, array: np.ndarray, /) -> None: ...
    def flush_behind(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class Refusal:
    """Why a target refuses a layer; ``hint`` None: the pipeline names the ways out that work."""

    reasons: list[str]
    hint: str | None = None
    hint_suffix: str = ""


class Writer(Protocol):
    """One target writing one destination. The pipeline calls :meth:`refuse` and :meth:`plan` for each layer in
    its planning thread, then :meth:`open`, :meth:`write` for each planned layer, :meth:`finish` and
    :meth:`check` in the writing thread, and renames the files into place."""

    label: str  # the report's "target", e.g. "onnx (whole model)"
    what: str  # what computes the layers, for a failed check: "the ONNX operators"
    refusing: str  # the refusal's subject: "torch.nn cannot compute {count} layer(s) exactly"
    all_or_nothing: bool  # a refused layer refuses the file even with --skip-unsupported
    companions: tuple[Path, ...]  # files written beside the destination
    refused: list[Exception]  # refusals known before any layer is read (the wiring's)

    def refuse(self, layer: Layer) -> Refusal | None: ...
    def plan(self, layer: Layer) -> Iterable[Planned]: ...
    def open(self, path: Path, *companions: Path) -> TensorStream: ...
    def write(self, stream: TensorStream, planned: Planned) -> None: ...
    def finish(self, stream: TensorStream) -> None: ...
    def check(self, path: Path, *companions: Path) -> None: ...
    def report(self) -> dict[str, object]: ...


class Target(Protocol):
    """A target (``TARGET`` in its module)."""

    def rule_sets(self) -> dict[str, str]:
        """The target's sets of refusal rules, by the label users know them by, each with how to ask for it
        (Keras has two: a Keras 3 file and a legacy .h5)."""
        ...

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        """Why ``layer`` cannot be written exactly under ``rule_set`` (empty: it can)."""
        ...

    def rule_set_for(self, destination: Path) -> str:
        """The rule set a file named ``destination`` is written under."""
        ...

    def way_out(self, layer: Layer) -> str | None:
        """A way out this target itself offers for a layer it refuses (an option), if any."""
        ...

    def companions(self, destination: Path, options: Options) -> dict[Path, tuple[tuple[str, ...], str]]:
        """The files written beside ``destination`` with ``options``: path -> (suffixes it must have, or none;
        what it is, for messages)."""
        ...

    #: the modules its writer imports on first use, imported ahead while a source is vetted
    preload: tuple[str, ...]

    def writer(self, destination: Path, layers: LayerSource, options: Options) -> Writer:
        """A writer for ``destination``; may refuse at once what no layer can change (a missing wiring)."""
        ...


class TargetBase:
    """What most targets say alike: one rule set, no way out of their own, no file beside the destination,
    nothing to import ahead."""

    preload: tuple[str, ...] = ()

    def rule_sets(self) -> dict[str, str]:
        raise NotImplementedError

    def rule_set_for(self, destination: Path) -> str:
        return next(iter(self.rule_sets()))

    def way_out(self, layer: Layer) -> str | None:
        return None

    def companions(self, destination: Path, options: Options) -> dict[Path, tuple[tuple[str, ...], str]]:
        return {}

