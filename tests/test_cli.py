"""The command line contract: exit codes, one clear message on stderr, nothing written on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmconv.cli import app
from tests.conftest import DATA, ROOT

runner = CliRunner()
SINE = ROOT / "examples" / "sine_lstm.h5"
REFUSED = DATA / "keras2" / "char_lstm_sigmoid.h5"


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def test_convert_writes_and_reports_each_layer(tmp_path: Path) -> None:
    out = tmp_path / "sine.safetensors"
    result = _run("convert", SINE, out, "--to", "torch")
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert "lstm" in result.output and "nn.LSTM(1, 12," in result.output and "nn.Linear(12, 1)" in result.output
    assert "e-" in result.output  # the max error column
    assert "wrote 6 tensors" in result.output


def test_refusal_exits_2_names_layer_and_reason_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "char.safetensors"
    result = _run("convert", REFUSED, out, "--to", "torch")
    assert result.exit_code == 2
    assert "layer 'lstm'" in result.output and "hard-codes tanh" in result.output
    assert "--skip-unsupported" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_skip_unsupported_converts_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "char.safetensors"
    result = _run("convert", REFUSED, out, "--skip-unsupported")
    assert result.exit_code == 0, result.output
    assert "left out" in result.output and "lstm" in result.output


def test_external_data_writes_the_model_and_its_data_file_and_is_onnx_only(tmp_path: Path) -> None:
    out = tmp_path / "sine.onnx"
    result = _run("convert", SINE, out, "--to", "onnx", "--external-data")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sine.onnx", "sine.onnx.data"]
    assert f"(external data: {tmp_path / 'sine.onnx.data'})" in result.output.replace("\n", "")
    result = _run("convert", SINE, tmp_path / "sine.safetensors", "--to", "torch", "--external-data")
    assert result.exit_code == 2 and "--external-data applies to --to onnx only" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "sine.safetensors").exists()


def test_existing_destination_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "sine.safetensors"
    out.write_bytes(b"keep me")
    result = _run("convert", SINE, out)
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_bytes() == b"keep me"
    assert _run("convert", SINE, out, "--force").exit_code == 0
    assert out.read_bytes() != b"keep me"


@pytest.mark.parametrize(
    ("make_source", "words"),
    [
        (lambda p: p / "missing.h5", "file not found"),
        (lambda p: p, "directory"),
        (lambda p: (p / "junk.h5").write_bytes(b"not a model at all") and p / "junk.h5", "unrecognised file"),
        (lambda p: (p / "empty.h5").write_bytes(b"") or p / "empty.h5", "empty"),
        (lambda p: (p / "cut.h5").write_bytes(SINE.read_bytes()[:3000]) and p / "cut.h5", "cannot open"),
    ],
    ids=["missing", "directory", "garbage", "empty", "truncated"],
)
def test_bad_input_is_one_clear_message(tmp_path: Path, make_source, words: str) -> None:  # type: ignore[no-untyped-def]
    source = make_source(tmp_path)
    out = tmp_path / "out.safetensors"
    result = _run("convert", source, out)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert str(source) in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_destination_suffix_is_checked_before_reading(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.bin")
    assert result.exit_code == 2 and ".safetensors" in result.output


def test_wrong_suffix_for_target_is_refused(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.safetensors", "--to", "keras")
    assert result.exit_code == 2 and ".weights.h5" in result.output


def test_onnx_target_reports_whole_model(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.onnx", "--to", "onnx")
    assert result.exit_code == 0, result.output
    assert "whole model" in result.output and "fused LSTM" in result.output


def test_no_verify_skips_the_check(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "o.safetensors", "--no-verify")
    assert result.exit_code == 0 and "not checked" in result.output and "numeric check skipped" in result.output


def test_inspect_json_lists_layers_with_sizes_and_source() -> None:
    result = _run("inspect", DATA / "keras2" / "bidirectional_sum.h5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (layer,) = [layer for layer in data["layers"] if layer["type"] == "recurrent"]
    assert layer["cell"] == "gru" and layer["bidirectional"] and layer["merge_mode"] == "sum"
    assert layer["source"]["framework"] == "keras" and layer["source"]["version"].startswith("2.")


def test_inspect_table_reports_inferred_facts() -> None:
    result = _run("inspect", DATA / "keras2" / "weights_only_stacked.h5")
    assert result.exit_code == 0, result.output
    assert "inferred" in result.output and "recurrent_activation=sigmoid" in result.output


def test_console_script_error_goes_to_stderr(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lstmconv.cli", "convert", str(REFUSED), str(tmp_path / "x.safetensors")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_verify_same_function_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "sine.onnx"
    assert _run("convert", SINE, out, "--to", "onnx").exit_code == 0
    result = _run("verify", SINE, out)
    assert result.exit_code == 0, result.output
    assert "same function" in result.output


def test_verify_split_levels_are_compared_as_one_chain(tmp_path: Path) -> None:
    source = DATA / "keras2" / "stacked_lstm.h5"
    out = tmp_path / "s.safetensors"
    assert _run("convert", source, out, "--to", "canonical").exit_code == 0
    assert _run("verify", source, out).exit_code == 0


def test_verify_different_functions_exit_1() -> None:
    result = _run("verify", DATA / "keras2" / "gru_reset_after.h5", DATA / "keras2" / "gru_reset_before.h5")
    assert result.exit_code == 1
    assert "different functions" in result.output


def test_verify_bad_input_exits_2(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_bytes(b"junk")
    result = _run("verify", SINE, tmp_path / "x.h5")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_console_entry_collects_garbage_while_converting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` pauses the garbage collector during start-up only (lstmconv/cli.py): a conversion runs with it on,
    so cycles holding large arrays are still freed, and it is on again when ``main`` returns."""
    import gc

    import lstmconv.cli
    import lstmconv.pipeline.convert
    from lstmconv.errors import InputFormatError

    seen: list[bool] = []

    def convert(*args: object, **kwargs: object) -> None:
        seen.append(gc.isenabled())
        raise InputFormatError("stop here", file=tmp_path / "in.h5")

    monkeypatch.setattr(lstmconv.pipeline.convert, "convert", convert)
    monkeypatch.setattr(sys, "argv", ["lstmconv", "convert", str(tmp_path / "in.h5"), str(tmp_path / "out.safetensors")])
    try:
        with pytest.raises(SystemExit) as stopped:
            lstmconv.cli.main()
    finally:
        gc.unfreeze()  # main freezes what is alive at its end (for the interpreter's exit); this process goes on
    assert stopped.value.code == 2
    assert seen == [True]
    assert gc.isenabled()


def test_names_are_printed_as_given_not_as_markup_or_emoji(tmp_path: Path) -> None:
    """rich read ``[best]`` in a file name as a style tag (dropping it), ``:thumbs_up:`` as an emoji, and a
    ``[/x]`` in a path crashed the output with a traceback."""
    folder = tmp_path / "[" / "x]"  # the path holds "[/x]"
    folder.mkdir(parents=True)
    source = folder / "model[best]:thumbs_up:.h5"
    source.write_bytes(SINE.read_bytes())
    out = folder / "out[bold]:smile:.onnx"
    converted = _run("convert", source, out, "--to", "onnx")
    assert converted.exit_code == 0, converted.output
    assert f"{source} -> {out}" in converted.output.replace("\n", "")
    assert f"wrote 6 tensors to {out}" in converted.output.replace("\n", "")
    refused = _run("convert", source, out, "--to", "onnx")
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert f"error: {out}: destination exists" in refused.output.replace("\n", "")
    inspected = _run("inspect", source)
    assert inspected.exit_code == 0 and str(source) in inspected.output.replace("\n", "")
    verified = _run("verify", source, out)
    assert verified.exit_code == 0 and f"{source} vs {out}" in verified.output.replace("\n", "")


def _console_script(code: str, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` then the console script with ``args``, in a fresh interpreter (``env`` added to ours)."""
    script = code + (
        "\nimport sys\nfrom lstmconv.cli import console_script\n"
        "sys.argv = ['lstmconv', *sys.argv[1:]]\nconsole_script()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


# The interpreter's teardown starts by waiting for threads (``threading._shutdown``): wrapped, it reports that the
# teardown ran. The atexit function must run either way.
_TEARDOWN_PROBE = """
import atexit, os, sys, threading
_shutdown = threading._shutdown
def report_teardown():
    os.write(2, b"torn down\\n")
    _shutdown()
threading._shutdown = report_teardown
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
"""


def test_console_script_skips_teardown_but_runs_atexit_and_flushes(tmp_path: Path) -> None:
    out = tmp_path / "sine.onnx"
    result = _console_script(_TEARDOWN_PROBE, "convert", SINE, out, "--to", "onnx")
    assert result.returncode == 0, result.stderr
    assert "wrote 6 tensors" in result.stdout  # stdout flushed before the process ended
    assert out.stat().st_size > 0
    assert "atexit ran" in result.stderr
    assert "torn down" not in result.stderr


def test_console_script_exit_codes_survive_the_quick_exit(tmp_path: Path) -> None:
    refused = _console_script(_TEARDOWN_PROBE, "convert", REFUSED, tmp_path / "x.safetensors")
    assert refused.returncode == 2 and refused.stderr.startswith("error:") and "atexit ran" in refused.stderr
    assert not (tmp_path / "x.safetensors").exists()
    usage = _console_script(_TEARDOWN_PROBE, "convert")
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
    inspected = _console_script(_TEARDOWN_PROBE, "inspect", "--json", DATA / "keras2" / "bidirectional_sum.h5")
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["layers"]


def test_console_script_exits_normally_while_a_thread_works() -> None:
    """A live non-daemon thread is not cut short: the ordinary exit waits for it (and tears down)."""
    worker = _TEARDOWN_PROBE + (
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), sys.stdout.write('thread finished\\n'))).start()\n"
    )
    result = _console_script(worker, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout and "thread finished" in result.stdout
    assert "torn down" in result.stderr  # the probe proves the other branch is tested


def test_console_script_leaves_the_blas_environment_as_the_user_set_it() -> None:
    """Shortening OpenBLAS's thread spinning gained nothing measurable (docs/performance.md): not done."""
    probe = "import atexit, os\natexit.register(lambda: print('TIMEOUT', os.environ.get('OPENBLAS_THREAD_TIMEOUT')))\n"
    assert "TIMEOUT None" in _console_script(probe, "--help").stdout
    assert "TIMEOUT 28" in _console_script(probe, "--help", env={"OPENBLAS_THREAD_TIMEOUT": "28"}).stdout
