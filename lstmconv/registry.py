"""The formats lstmconv reads and the targets it writes, named once.

Each entry names its module lazily (``"lstmconv.targets.onnx"``): nothing is imported until a conversion needs
it, and nothing here imports a framework. The CLI's ``--from`` and ``--to`` choices, the library's
``source_format=`` and ``to=`` checks, the destination's suffix check, the choice of a target from the
destination's name and the detection of a source's format all come from :data:`SOURCES` and :data:`TARGETS`.
Adding a format or a target is one module (``lstmconv/sources/<name>.py`` with ``SOURCE``,
``lstmconv/targets/<name>.py`` with ``TARGET``; see :mod:`lstmconv.protocols`) and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lstmconv.errors import InputFormatError, OutputNameError, UnsupportedFeatureError

if TYPE_CHECKING:
    from lstmconv.protocols import Source, Target

__all__ = [
    "SourceSpec",
    "SOURCES",
    "SOURCE_NAMES",
    "source_named",
    "detect_format",
    "resolve_source",
    "TargetSpec",
    "TARGETS",
    "TARGET_NAMES",
    "target_named",
    "target_for_destination",
    "suffix_of",
]

HDF5 = b"\x89HDF\r\n\x1a\n"
ZIP = b"PK\x03\x04"
PICKLE = b"\x80\x02"  # a legacy (pre-1.6) torch.save pickle


@dataclass(frozen=True)
class SourceSpec:
    """One source format (``--from NAME``) and how its files are recognised.

    ``signatures``: (first bytes, suffixes) pairs; a file matches one when it starts with the bytes (b"": any)
    and its name ends with one of the suffixes (none given: any name). ``confirms``: the module's
    ``SOURCE.claims(path)`` decides between formats that share a signature (lstmconv's canonical
    ``.safetensors`` and torch's).
    """

    name: str
    module: str
    signatures: tuple[tuple[bytes, tuple[str, ...]], ...]
    describes: str  # what its files are, for messages
    confirms: bool = False
    resolves: bool = False  # SOURCE.resolve(path) names the file a folder or a prefix stands for
    def load(self) -> Source:
        return importlib.import_module(self.module).SOURCE  # type: ignore[no-any-return]

    def matches(self, head: bytes, name: str) -> bool:
        return any(head.startswith(magic) and (not suffixes or name.endswith(suffixes)) for magic, suffixes in self.signatures)


#: In the order detection asks them: the first whose signature matches (and that confirms, where asked) wins.
SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("keras", "lstmconv.sources.keras", ((HDF5, ()), (ZIP, (".keras",))), "Keras .h5, .weights.h5 or .keras"),
    SourceSpec("canonical", "lstmconv.sources.canonical", ((b"", (".safetensors",)),), "lstmconv's canonical .safetensors", confirms=True),
    SourceSpec(
        "torch",
        "lstmconv.sources.torch",
        ((ZIP, ()), (PICKLE, ()), (b"", (".pt", ".pth", ".bin", ".safetensors"))),
        "a torch .pt/.pth/.bin or .safetensors",
    ),
    SourceSpec("onnx", "lstmconv.sources.onnx", ((b"", (".onnx",)),), "an ONNX model"),
    SourceSpec("tfjs", "lstmconv.sources.tfjs", ((b"", (".json",)),), "a TensorFlow.js model.json", confirms=True),
    SourceSpec("ml5", "lstmconv.sources.ml5", ((b"", (".json",)),), "an ml5.js charRNN manifest.json", confirms=True),
    # a name-based (TF1) checkpoint is a bundle without an object graph: asked before the object-based reader
    SourceSpec(
        "tf1-checkpoint", "lstmconv.sources.tf1_checkpoint", ((b"", (".index",)),), "a TensorFlow 1 checkpoint's .index",
        confirms=True,
    ),
    SourceSpec(
        "tf-checkpoint", "lstmconv.sources.tf_checkpoint", ((b"", (".index",)),), "a TensorFlow checkpoint's .index",
        confirms=True, resolves=True,
    ),
    SourceSpec("tflite", "lstmconv.sources.tflite", ((b"", (".tflite",)),), "a TFLite model", confirms=True),
    SourceSpec(
        "saved-model", "lstmconv.sources.saved_model", ((b"", ("saved_model.pb",)),), "a Keras SavedModel directory",
        confirms=True, resolves=True,
    ),
)
SOURCE_NAMES: tuple[str, ...] = tuple(source.name for source in SOURCES)


def source_named(name: str, file: str | Path | None = None) -> SourceSpec:
    """The source format called ``name``; an unknown name fails naming the choices."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise UnsupportedFeatureError(
        f"unknown source format {name!r}", file=file, hint=f"choose one of {', '.join(SOURCE_NAMES)}"
    )


def resolve_source(path: Path) -> Path:
    """The file ``path`` names: itself when it is a file, else what a source format makes of a folder or a
    prefix (a TensorFlow checkpoint folder's latest checkpoint, ``<prefix>.index``), else ``path`` unchanged."""
    if path.is_file():
        return path
    for source in SOURCES:
        if source.resolves and (found := source.load().resolve(path)) is not None:  # type: ignore[attr-defined]
            return found  # type: ignore[no-any-return]
    return path


def detect_format(path: Path) -> SourceSpec:
    """The source format of ``path``, from its first bytes and its name (see :data:`SOURCES`)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except IsADirectoryError:
        raise InputFormatError("is a directory, not a model file", file=path) from None
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror or error}", file=path) from None
    if not head:
        raise InputFormatError("file is empty", file=path)
    for source in SOURCES:
        if source.matches(head, path.name) and (not source.confirms or source.load().claims(path)):  # type: ignore[attr-defined]
            return source
    raise InputFormatError(
        "unrecognised file: not " + ", ".join(source.describes for source in SOURCES),
        file=path,
        hint="pass --from (source_format=...) to say what it is",
    )


@dataclass(frozen=True)
class TargetSpec:
    """One target: its name (``--to NAME``), the suffixes of the files it writes (the first the usual one), the
    options only it takes (:data:`lstmconv.protocols.TARGET_OPTIONS`) and its module."""

    name: str
    suffixes: tuple[str, ...]
    writes: str  # what the files are, for messages
    module: str
    options: tuple[str, ...] = ()

    def load(self) -> Target:
        return importlib.import_module(self.module).TARGET  # type: ignore[no-any-return]


TARGETS: tuple[TargetSpec, ...] = (
    # A plain .safetensors is torch's (the headline conversion); lstmconv's own file has its double suffix.
    TargetSpec("torch", (".safetensors", ".pt", ".pth"), "PyTorch parameters", "lstmconv.targets.torch", ("emit_module",)),
    TargetSpec("keras", (".weights.h5", ".h5", ".keras"), "Keras weights or a Keras model", "lstmconv.targets.keras"),
    TargetSpec("onnx", (".onnx",), "an ONNX model", "lstmconv.targets.onnx", ("external_data",)),
    TargetSpec("canonical", (".lstmconv.safetensors", ".safetensors"), "lstmconv's canonical file", "lstmconv.targets.canonical"),
    TargetSpec("tfjs", (".json",), "a TensorFlow.js layers model (model.json and its .bin)", "lstmconv.targets.tfjs"),
    TargetSpec("tflite", (".tflite",), "a TFLite model", "lstmconv.targets.tflite"),
)
TARGET_NAMES: tuple[str, ...] = tuple(target.name for target in TARGETS)


def target_named(name: str) -> TargetSpec:
    """The target called ``name``; an unknown name fails naming the choices."""
    for target in TARGETS:
        if target.name == name:
            return target
    raise UnsupportedFeatureError(f"unknown target {name!r}", hint=f"choose one of {', '.join(TARGET_NAMES)}")


def suffix_of(destination: Path, target: TargetSpec) -> str | None:
    """The longest of ``target``'s suffixes that ``destination``'s name ends with, if any."""
    matching = [suffix for suffix in target.suffixes if destination.name.endswith(suffix)]
    return max(matching, key=len) if matching else None


def target_for_destination(destination: Path, *, required: bool = True) -> TargetSpec | None:
    """The target whose suffix ``destination`` ends with (the longest match: ``m.lstmconv.safetensors`` is the
    canonical file, ``m.safetensors`` torch's). With ``required``, a name no target writes is an error that
    lists the suffixes and ``--to``."""
    best: tuple[int, TargetSpec] | None = None
    for target in TARGETS:
        suffix = suffix_of(destination, target)
        if suffix is not None and (best is None or len(suffix) > best[0]):
            best = (len(suffix), target)
    if best is not None:
        return best[1]
    if not required:
        return None
    known = "; ".join(f"{', '.join(target.suffixes)} for {target.name}" for target in TARGETS)
    raise OutputNameError(
        f"cannot tell the target from the name '{destination.name}'",
        file=destination,
        hint=f"name the output with a suffix a target writes ({known}), or pass --to (to=...)",
    )
