"""Where outputs go: each is named as its target writes it, is not the source, and exists only with --force.

Checked before anything is read, so a wrong name fails at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lstmconv.errors import OutputExistsError, OutputNameError
from lstmconv.registry import suffix_of, target_for_destination, target_named

__all__ = ["check_suffix", "check_named", "check_destination", "refuse_overwriting_source"]


def check_suffix(destination: Path, target: str, force: bool) -> None:
    """Check that ``target`` writes files named like ``destination`` (the registry's suffixes), then
    :func:`check_destination`. A suffix of another target is named as the other way out."""
    spec = target_named(target)
    if suffix_of(destination, spec) is None:
        fixes = f"name the output e.g. {destination.with_suffix(spec.suffixes[0]).name}"
        other = target_for_destination(destination, required=False)
        if other is not None:
            fixes += f", or pass --to {other.name} (to={other.name!r}) to write {other.writes}"
        raise OutputNameError(
            f"the {spec.name} target writes {', '.join(spec.suffixes)} files, not '{destination.suffix or 'no suffix'}'",
            file=destination,
            hint=fixes,
        )
    check_destination(destination, force)


def check_named(destination: Path, suffixes: tuple[str, ...], what: str, force: bool) -> None:
    """Check that ``destination`` (a companion output such as ``--emit-module``'s) ends with one of ``suffixes``."""
    if not destination.name.endswith(suffixes):
        raise OutputNameError(
            f"{what} is a {', '.join(suffixes)} file, not '{destination.suffix or 'no suffix'}'",
            file=destination,
            hint=f"name it e.g. {destination.with_suffix(suffixes[0]).name}",
        )
    check_destination(destination, force)


def check_destination(destination: Path, force: bool) -> None:
    if os.path.lexists(destination) and not force:  # a dangling link is an existing name too
        raise OutputExistsError("destination exists", file=destination, hint="pass --force (force=True) to overwrite it")
    if destination.is_dir():
        raise OutputExistsError("destination is a directory", file=destination)
    if not destination.parent.exists():
        raise OutputNameError("destination folder does not exist", file=destination.parent)


def refuse_overwriting_source(sources: Sequence[str | Path | None], outputs: Sequence[Path | None]) -> None:
    """Refuse to write an output over one of the inputs: the same path, another spelling of it, a hard link or a
    symbolic link to it. ``--force`` does not change this: replacing the source loses what the conversion did not
    carry over (the rest of an ONNX graph, a Keras config), and a failed check would leave nothing at all."""
    for output in outputs:
        if output is None or not os.path.exists(output):
            continue
        for source in sources:
            if source is None or not os.path.exists(source):
                continue
            if os.path.samefile(output, source):  # any spelling, hard or symbolic link
                raise OutputExistsError(
                    "the destination is the source file itself (the same file under this name)",
                    file=output,
                    expected="a new file or a different existing one",
                    actual=f"the same file as {source}",
                    hint="write to another file name; --force does not replace the file being read",
                )
