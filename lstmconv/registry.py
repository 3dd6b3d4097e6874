"""The formats lstmconv reads and the targets it writes, named once.

The CLI's ``--from`` and ``--to`` choices, the library's ``source_format=`` and ``to=`` checks, the
destination's suffix check and the choice of a target from the destination's name all come from
:data:`SOURCE_NAMES` and :data:`TARGETS`. Nothing here imports a framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lstmconv.errors import InputFormatError, UnsupportedFeatureError

__all__ = [
    "SOURCE_NAMES",
    "TargetSpec",
    "TARGETS",
    "TARGET_NAMES",
    "target_named",
    "target_for_destination",
    "suffix_of",
]

#: The source formats (``--from NAME``); each is detected from a file's content when not named.
SOURCE_NAMES: tuple[str, ...] = ("keras", "torch", "onnx", "canonical")


@dataclass(frozen=True)
class TargetSpec:
    """One target: its name (``--to NAME``) and the suffixes of the files it writes, the first the usual one."""

    name: str
    suffixes: tuple[str, ...]
    writes: str  # what the files are, for messages


TARGETS: tuple[TargetSpec, ...] = (
    # A plain .safetensors is torch's (the headline conversion); lstmconv's own file has its double suffix.
    TargetSpec("torch", (".safetensors", ".pt", ".pth"), "PyTorch parameters"),
    TargetSpec("keras", (".weights.h5", ".h5", ".keras"), "Keras weights or a Keras model"),
    TargetSpec("onnx", (".onnx",), "an ONNX model"),
    TargetSpec("canonical", (".lstmconv.safetensors", ".safetensors"), "lstmconv's canonical file"),
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
    raise InputFormatError(
        f"cannot tell the target from the name '{destination.name}'",
        file=destination,
        hint=f"name the output with a suffix a target writes ({known}), or pass --to (to=...)",
    )
