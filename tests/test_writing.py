"""Outputs are written to a temporary file and renamed into place; an error found on the way names the file the
user asked for, never the temporary file (which is gone by the time the message is read)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import lstmconv
from lstmconv.errors import RefusedConversionError, VerificationError
from lstmconv.io.atomic import write_atomically
from tests.conftest import DATA

SOURCE = DATA / "keras2" / "stacked_lstm.h5"


def _fail_check(error_for_path):  # type: ignore[no-untyped-def]
    def check(path: Path, *companions: Path) -> None:
        raise error_for_path(path)

    return check


def test_an_error_naming_the_temporary_file_names_the_destination(tmp_path: Path) -> None:
    destination = tmp_path / "m.safetensors"

    def error(path: Path) -> VerificationError:
        return VerificationError(f"cannot parse {path}", file=path, tensor="w", hint=f"look at {path}")

    with pytest.raises(VerificationError) as caught:
        write_atomically(destination, lambda path: path.write_bytes(b"x"), _fail_check(error))
    assert caught.value.file == str(destination)
    assert str(caught.value) == f"{destination}: tensor 'w': cannot parse {destination}. look at {destination}"
    assert caught.value.tensor == "w"
    assert list(tmp_path.iterdir()) == []


def test_refusals_inside_an_error_are_renamed_too(tmp_path: Path) -> None:
    destination = tmp_path / "m.onnx"

    def error(path: Path) -> RefusedConversionError:
        return RefusedConversionError("refused", file=path, refusals=[VerificationError("bad", file=path)])

    with pytest.raises(RefusedConversionError) as caught:
        write_atomically(destination, lambda path: path.write_bytes(b"x"), _fail_check(error))
    assert [refusal.file for refusal in caught.value.refusals] == [str(destination)]
    assert ".tmp" not in str(caught.value)


def test_an_os_error_on_the_temporary_file_names_the_destination(tmp_path: Path) -> None:
    destination = tmp_path / "m.onnx"

    def disk_full(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    from lstmconv.errors import OutputWriteError

    with pytest.raises(OutputWriteError) as caught:  # one of lstmconv's errors, naming the output and why
        write_atomically(destination, disk_full, lambda path: None)
    assert caught.value.file == str(destination)
    assert str(caught.value) == f"{destination}: No space left on device writing it. free some space or write it elsewhere"
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_the_original_error_keeps_its_cause(tmp_path: Path) -> None:
    cause = ValueError("underlying")

    def check(path: Path) -> None:
        raise VerificationError("bad", file=path) from cause

    with pytest.raises(VerificationError) as caught:
        write_atomically(tmp_path / "m.onnx", lambda path: path.write_bytes(b"x"), check)
    assert caught.value.__cause__ is cause


@pytest.mark.parametrize(
    "name, options",
    [
        ("m.safetensors", {"to": "torch"}),
        ("m.onnx", {"to": "onnx"}),
        ("m.onnx", {"to": "onnx", "external_data": True}),
        ("m.safetensors", {"to": "canonical"}),
    ],
    ids=["torch", "onnx", "onnx-external-data", "canonical"],
)
def test_a_failed_read_back_names_the_output(
    name: str, options: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every streamed tensor is read back as written; when one is not, the message names the destination (or
    its data file), as the real conversion would leave it."""
    from lstmconv.io import checked_file

    monkeypatch.setattr(checked_file, "_same_bytes", lambda on_disk, written: False)
    destination = tmp_path / name
    with pytest.raises(VerificationError, match="read back differ") as caught:
        lstmconv.convert(SOURCE, destination, **options)  # type: ignore[arg-type]
    named = {str(destination), str(destination) + ".data"}
    assert caught.value.file in named
    assert ".tmp" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# A set of files is replaced whole or not at all; nothing is replaced without force


def _write_pair(path: Path, data_path: Path) -> None:
    path.write_bytes(b"new model")
    data_path.write_bytes(b"new data")


def test_a_set_replaced_with_force_is_restored_when_its_last_file_cannot_be_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmconv.io import atomic as writing

    model, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    model.write_bytes(b"old model")
    data.write_bytes(b"old data")
    real_place = writing._place

    def fails_for_the_model(source: Path, target: Path, *, replace: bool) -> None:
        if Path(target) == model:
            raise OSError(errno.EIO, "rename failed")
        real_place(source, target, replace=replace)

    monkeypatch.setattr(writing, "_place", fails_for_the_model)
    with pytest.raises(OSError, match="rename failed"):
        write_atomically(model, _write_pair, lambda *paths: None, companions=(data,), replace=True)
    assert model.read_bytes() == b"old model" and data.read_bytes() == b"old data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_a_destination_that_appears_while_writing_is_not_replaced(tmp_path: Path) -> None:
    """Two conversions to one destination without --force: the one that finishes second fails."""
    from lstmconv.errors import OutputExistsError

    destination = tmp_path / "out.onnx"

    def write(path: Path) -> None:
        path.write_bytes(b"mine")
        destination.write_bytes(b"the other conversion's")  # placed after our check, before our rename

    with pytest.raises(OutputExistsError):
        write_atomically(destination, write, lambda path: None)
    assert destination.read_bytes() == b"the other conversion's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from lstmconv.io import atomic as writing\n"
        "real = writing._place\n"
        "def place(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "writing._place = place\n"
        "sys.argv = ['lstmconv', 'convert', sys.argv[1], sys.argv[2]]\n"
        "from lstmconv.cli import main\n"
        "main()\n"
    )
    out = tmp_path / "sine.onnx"
    done = subprocess.run([sys.executable, "-c", code, str(DATA / "keras2" / "sine_lstm.h5"), str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EACCES, "cannot write it: Permission denied"),
        (errno.EROFS, "cannot write it: Read-only file system"),
        (errno.ENOSPC, r"/m\.[a-z0-9.]+: No space left on device writing it\. free some space or write it elsewhere$"),
    ],
)
def test_a_folder_that_cannot_be_written_is_named_as_the_output(code: int, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root a read-only folder cannot be made by chmod: the temporary file's creation fails as it would."""
    import tempfile

    from lstmconv.errors import OutputWriteError

    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(code, os.strerror(code), str(tmp_path / ".m.onnx.abc.tmp.onnx"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    for target in ("m.onnx", "m.pt", "m.h5", "m.safetensors"):
        with pytest.raises(OutputWriteError, match=words) as caught:
            lstmconv.convert(DATA / "keras2" / "sine_lstm.h5", tmp_path / target)
        assert caught.value.file == str(tmp_path / target)


def test_an_hdf5_write_error_carrying_its_errno_in_the_text_is_named_as_the_output(tmp_path: Path) -> None:
    """h5py reports a full disk as one long OSError without errno ('... errno = 28, error message = ...')."""
    from lstmconv.errors import OutputWriteError

    destination = tmp_path / "m.h5"

    def h5py_disk_full(path: Path) -> None:
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")

    with pytest.raises(OutputWriteError, match="No space left on device writing it") as caught:
        write_atomically(destination, h5py_disk_full, lambda path: None)
    assert caught.value.file == str(destination) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
