"""The architecture's rules, read from the code: which part of lstmconv may import which.

Every module's imports are read with :mod:`ast` (function-level ones too, which is where lazy imports are), so a
new module is held to its folder's rule the day it is added. The parts, from the bottom:

- ``_fast``: speed code; imports nothing else of lstmconv.
- the facts (``errors``, ``activations``, ``gates``, ``schema``, ``layouts/``): one table per fact.
- ``io``: bytes in and out (HDF5 guard, zip, protobuf, safetensors, pickles, atomic files); no framework semantics.
- ``reference``: NumPy cells in each framework's own layout; never the adapters that they check.
- ``adapters``: each framework's semantics, array to array; they touch no files.
- ``sources`` and ``targets``: one module per file format and per target, built from the parts below.
- ``registry`` and ``protocols``: the names, suffixes and lazy references of sources and targets, and what a
  source and a target provide; nothing below the pipeline imports the pipeline.
- ``pipeline``: read, refuse, plan, check, write, report; the public functions.
- ``cli`` and ``lstmconv/__init__.py``: the surface.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "lstmconv"
FACTS = ("errors", "activations", "gates", "schema", "schema_export", "layouts", "_version")

#: part -> the parts it may import (itself always)
ALLOWED: dict[str, set[str]] = {
    "_fast": set(),
    "facts": {"_fast", "registry"},  # the schema's source frameworks are the registry's source names
    "io": {"facts", "_fast"},
    "reference": {"facts", "_fast"},
    "adapters": {"facts", "_fast", "reference"},
    "registry": {"facts", "_fast"},
    "protocols": {"facts", "_fast", "registry"},
    "sources": {"facts", "_fast", "io", "reference", "adapters", "protocols"},
    # a target reads its file back the way the source reader of that format does
    "targets": {"facts", "_fast", "io", "reference", "adapters", "protocols", "registry", "sources"},
    "pipeline": {"facts", "_fast", "io", "reference", "adapters", "protocols", "registry", "sources", "targets"},
    "surface": {"facts", "registry", "pipeline", "protocols", "_fast", "surface"},
    "templates": set(),
    "torch_modules": {"facts"},
}
#: third-party modules that touch files; adapters and reference cells import none of them
FILE_LIBRARIES = {"h5py", "safetensors", "zipfile", "mmap", "tempfile", "shutil", "onnx"}
#: the frameworks, imported only inside the functions that need them
FRAMEWORKS = {"torch", "keras", "tensorflow", "onnxruntime", "tf_keras", "jax"}


def part_of(module: str) -> str:
    """The part a dotted module name of lstmconv belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "surface"
    head = parts[1]
    if head in FACTS:
        return "facts"
    if head in ("cli", "__init__", "__main__"):
        return "surface"
    return head


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        name = ".".join(relative.parts)
        found.append((name.removesuffix(".__init__"), path))
    return found


def imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in ``path``; relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports under `if TYPE_CHECKING:` or try/except at module level run at import
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(child) for child in ast.walk(node)}
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join([*package, base]) if base else ".".join(package)
            found.append((base, node.lineno, id(node) in top_level))
            # `from lstmconv.io import atomic` imports lstmconv.io.atomic
            found += [(f"{base}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
    return found


def _type_checking_only(path: Path) -> set[int]:
    tree = ast.parse(path.read_text())
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {child.lineno for child in ast.walk(node) if hasattr(child, "lineno")}
    return lines


ALL = modules()
KNOWN = {name for name, _ in ALL}


@pytest.mark.parametrize(("module", "path"), ALL, ids=[name for name, _ in ALL])
def test_each_part_imports_only_the_parts_below_it(module: str, path: Path) -> None:
    mine = part_of(module)
    allowed = ALLOWED[mine] | {mine}
    typing_only = _type_checking_only(path)
    wrong = []
    for imported, line, _ in imports(path, module):
        if not imported.startswith("lstmconv") or line in typing_only:
            continue
        if imported not in KNOWN and imported != "lstmconv":
            continue  # `from lstmconv.x import name`: the module itself is checked as its own entry
        theirs = part_of(imported)
        if imported == "lstmconv" and mine != "surface":
            if path.name == "__init__.py":
                continue
            wrong.append(f"line {line}: lstmconv (the package surface)")
            continue
        if theirs not in allowed:
            wrong.append(f"line {line}: {imported} ({theirs})")
    assert not wrong, f"{module} ({mine}) may import only {sorted(allowed)}; it imports " + "; ".join(wrong)


@pytest.mark.parametrize(
    ("module", "path"),
    [(name, path) for name, path in ALL if part_of(name) in ("adapters", "reference", "facts")],
    ids=[name for name, _ in ALL if part_of(name) in ("adapters", "reference", "facts")],
)
def test_adapters_reference_cells_and_facts_touch_no_files(module: str, path: Path) -> None:
    touching = [f"line {line}: {name}" for name, line, _ in imports(path, module) if name.split(".")[0] in FILE_LIBRARIES]
    assert not touching, f"{module} imports file libraries: {touching}"
    tree = ast.parse(path.read_text())
    opens = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) in ("open", "Path.open")]
    assert not opens, f"{module} opens files at lines {opens}"


#: the emitted module's template is text written for users (it imports torch), read as a resource, never imported
IMPORTED = [(name, path) for name, path in ALL if part_of(name) != "templates"]


@pytest.mark.parametrize(("module", "path"), IMPORTED, ids=[name for name, _ in IMPORTED])
def test_frameworks_are_imported_lazily(module: str, path: Path) -> None:
    eager = [f"line {line}: {name}" for name, line, top in imports(path, module) if top and name.split(".")[0] in FRAMEWORKS]
    typing_only = _type_checking_only(path)
    eager = [entry for entry in eager if int(entry.split(":")[0].removeprefix("line ")) not in typing_only]
    assert not eager, f"{module} imports a framework when it is imported: {eager}"


def test_nothing_imports_the_template() -> None:
    users = [name for name, path in ALL for imported, _, _ in imports(path, name) if imported.startswith("lstmconv.templates.")]
    assert not users


def test_the_rules_cover_every_part() -> None:
    assert {part_of(name) for name in KNOWN} <= set(ALLOWED), sorted({part_of(name) for name in KNOWN} - set(ALLOWED))
