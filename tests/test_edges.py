"""Promises kept at the edges: nothing lost (the source is never the destination), what the user sees
(target from the suffix, whole reports, JSON, --version) and the library's verbs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmconv.cli import app
from tests.conftest import DATA, ROOT

runner = CliRunner()
SINE = ROOT / "examples" / "sine_lstm.h5"


def _run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def _same_file_spellings(tmp_path: Path, original: Path) -> list[Path]:
    """The source itself, another spelling of its path, a hard link and a symbolic link to it."""
    (tmp_path / "sub").mkdir()
    hard = tmp_path / f"hard{original.suffix}"
    os.link(original, hard)
    symbolic = tmp_path / f"symbolic{original.suffix}"
    symbolic.symlink_to(original)
    return [original, tmp_path / "sub" / ".." / original.name, hard, symbolic]


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize(
    ("name", "to"),
    [("sine_lstm.h5", "keras"), ("sine_lstm.h5", "torch"), ("lstm_stacked.onnx", "onnx")],
)
def test_source_and_destination_the_same_file_is_refused(tmp_path: Path, name: str, to: str, force: bool) -> None:
    original = tmp_path / name
    shutil.copy(SINE if name == "sine_lstm.h5" else DATA / "tf2onnx" / name, original)
    before = original.read_bytes()
    for spelling in _same_file_spellings(tmp_path, original):
        if to == "torch":  # the torch target writes .safetensors / .pt only: a link with that suffix to the source
            spelling = spelling.with_suffix(".safetensors")
            if not spelling.exists():
                spelling.symlink_to(original)
        result = _run("convert", original, spelling, "--to", to, *(["--force"] if force else []))
        assert result.exit_code == 2, result.output
        assert "the source file itself" in result.output and "Traceback" not in result.output
        assert original.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_library_save_refuses_the_file_it_was_loaded_from(tmp_path: Path) -> None:
    import lstmconv

    original = tmp_path / "sine.h5"
    shutil.copy(SINE, original)
    loaded = lstmconv.load(original)
    with pytest.raises(lstmconv.errors.OutputExistsError, match="source file itself"):
        lstmconv.save_keras(loaded, original, force=True)
    assert original.read_bytes() == SINE.read_bytes()
