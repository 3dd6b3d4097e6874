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


@pytest.mark.parametrize(
    ("name", "target", "key"),
    [
        ("out.onnx", "onnx", None),
        ("out.keras", "keras", None),
        ("out.weights.h5", "keras", None),
        ("out.h5", "keras", None),
        ("out.safetensors", "torch", "lstm.weight_ih_l0"),
        ("out.pt", "torch", None),
        ("out.lstmconv.safetensors", "canonical", None),
    ],
)
def test_the_target_comes_from_the_destination_suffix(tmp_path: Path, name: str, target: str, key: str | None) -> None:
    out = tmp_path / name
    result = _run("convert", SINE, out)
    assert result.exit_code == 0, result.output
    assert f"({target}" in result.output and out.exists()
    if key is not None:
        from safetensors.numpy import load_file

        assert key in load_file(out)


def test_an_unknown_suffix_asks_for_to_and_names_the_suffixes(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.bin")
    assert result.exit_code == 2 and "--to" in result.output and ".onnx" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_suffix_of_another_target_names_both_fixes(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.onnx", "--to", "torch")
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "out.safetensors" in text and "--to onnx" in text, text
    assert list(tmp_path.iterdir()) == []


def test_errors_raised_to_python_callers_name_the_keyword(tmp_path: Path) -> None:
    import lstmconv

    out = tmp_path / "sine.onnx"
    out.write_bytes(b"keep")
    with pytest.raises(lstmconv.errors.OutputExistsError, match=r"force=True"):
        lstmconv.convert(SINE, out)
    with pytest.raises(lstmconv.LstmconvError, match=r"skip_unsupported=True"):
        lstmconv.convert(DATA / "keras2" / "char_lstm_sigmoid.h5", tmp_path / "c.safetensors")
    assert out.read_bytes() == b"keep"
