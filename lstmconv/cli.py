"""The ``lstmconv`` command line: a thin typer layer over the library.

Every :class:`~lstmconv.errors.LstmconvError` becomes one message on stderr and exit code 2, with no
traceback. Library modules are imported inside the commands so that ``lstmconv --help`` stays fast and
imports no framework.
"""

# No ``from __future__ import annotations`` here: typer reads the commands' annotations every run, and string
# annotations would make it compile and evaluate each of them.
import json
import os
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from lstmconv._fast import startup
from lstmconv.registry import SOURCE_NAMES, TARGET_NAMES

__all__ = ["app", "console_script", "main"]

app = typer.Typer(
    name="lstmconv",
    help="Convert trained LSTM/GRU/SimpleRNN weights between Keras, PyTorch, ONNX, TensorFlow and TFLite, checked numerically.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# ``convert --to`` choices: the registry's targets.
Target = Enum("Target", {name: name for name in TARGET_NAMES}, type=str)  # type: ignore[misc]


# ``--from`` choices: the registry's source formats.
Source = Enum("Source", {name: name for name in SOURCE_NAMES}, type=str)  # type: ignore[misc]


def _console(*, stderr: bool = False) -> Any:
    """A rich console that prints text as given: file and layer names are the user's, so ``[best]`` in one is not
    markup and ``:smile:`` not an emoji. Where the output is not a terminal (a CI log, a pipe, a file) there is no
    width to fit: tables are printed whole rather than cut at rich's default of 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = hasattr(stream, "isatty") and stream.isatty()
    width = None if terminal or os.environ.get("COLUMNS") else _UNBOUNDED_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False, width=width)


_UNBOUNDED_WIDTH = 10_000  # wider than any report line; rich pads nothing (tables do not expand)


def _styled(style: str, label: str, text: str = "") -> Any:
    """``label`` in ``style``, then ``text`` as given."""
    from rich.text import Text

    return Text.assemble((label, style), text)


def _fail(error: Exception) -> NoReturn:
    _console(stderr=True).print(_styled("bold red", "error:", f" {error}"))
    raise typer.Exit(code=2)


def _run(action: Any) -> Any:
    from lstmconv.errors import LstmconvError

    startup.commands_start()
    try:
        return action()
    except LstmconvError as error:
        _fail(error)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    except (OSError, MemoryError) as error:
        _fail(error)
    except Exception as error:  # a bug: still one clear line, unless debugging
        if os.environ.get("LSTMCONV_DEBUG"):
            raise
        _fail(RuntimeError(f"unexpected {type(error).__name__}: {error} (set LSTMCONV_DEBUG=1 for a traceback)"))


def _print_version(asked: bool) -> None:
    if asked:
        from lstmconv import __version__

        print(f"lstmconv {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """Convert trained LSTM/GRU/SimpleRNN weights between Keras, PyTorch, ONNX, TensorFlow and TFLite, checked numerically."""


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Source file (Keras .h5/.hdf5/.keras/.weights.h5, ONNX .onnx).")],
    dst: Annotated[Path, typer.Argument(help="Destination file; its extension picks the format.")],
    to: Annotated[
        Target | None,
        typer.Option("--to", help="Target framework (default: the one DST's suffix names; .safetensors is torch's)."),
    ] = None,
    source_format: Annotated[
        Source | None, typer.Option("--from", help="Source format (detected from the file by default).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Architecture JSON (model.to_json()) for weights-only files.")
    ] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the conversion numerically.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing destination.")] = False,
    skip_unsupported: Annotated[
        bool, typer.Option("--skip-unsupported", help="Leave out layers the target cannot express; convert the rest.")
    ] = False,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="ONNX: every layer on its own (<layer>.x -> <layer>.y), not the whole model.")
    ] = False,
    external_data: Annotated[
        bool,
        typer.Option(
            "--external-data", help="ONNX: write the weights to DST.data beside the model (needed above 2 GiB)."
        ),
    ] = False,
    emit_module: Annotated[
        Path | None,
        typer.Option("--emit-module", help="torch: write a PyTorch module file (.py) for layers torch.nn cannot compute."),
    ] = None,
    allow_nonfinite: Annotated[
        bool, typer.Option("--allow-nonfinite", help="Convert weights holding NaN or Inf instead of refusing them.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert SRC into DST for framework --to, after checking that both compute the same function."""
    from lstmconv.pipeline.convert import convert as run_convert

    report = _run(
        lambda: run_convert(
            src,
            dst,
            to=to.value if to is not None else None,
            config=config,
            source_format=source_format.value if source_format else None,
            verify=verify,
            force=force,
            skip_unsupported=skip_unsupported,
            per_layer=per_layer,
            external_data=external_data,
            emit_module=emit_module,
            allow_nonfinite=allow_nonfinite,
        )
    )
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    _print_report(report)


def _print_report(report: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"{report.source} -> {report.destination} ({report.target})", title_justify="left")
    table.add_column("layer")
    table.add_column("source")
    table.add_column("became")
    table.add_column("max error", justify="right")
    for layer in report.layers:
        if layer.became.startswith("identity"):
            continue
        error = "not checked" if layer.max_abs_error is None else f"{layer.max_abs_error:.2e}"
        table.add_row(layer.name, layer.kind, layer.became, error)
    console.print(table)
    for layer in report.layers:
        for note in layer.notes:
            console.print(f"  note: {layer.name}: {note}")
    for item in report.skipped:
        console.print(_styled("yellow", "  left out:", f" {item}"))
    for warning in report.warnings:
        console.print(_styled("yellow", "  warning:", f" {warning}"))
    if not report.verified:
        console.print(_styled("yellow", "  numeric check skipped (--no-verify)"))
    data = f" (external data: {report.external_data})" if report.external_data else ""
    console.print(f"wrote {report.written_tensors} tensors to {report.destination}{data}")


@app.command()
def inspect(
    src: Annotated[Path, typer.Argument(help="Model or weights file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Architecture JSON for weights-only files.")] = None,
    source_format: Annotated[Source | None, typer.Option("--from", help="Source format.")] = None,
) -> None:
    """List SRC's layers, what is left out and what each target would refuse, without converting."""
    from lstmconv.pipeline.inspect import inspect as run_inspect

    found = _run(
        lambda: run_inspect(src, config=config, source_format=source_format.value if source_format else None)
    )
    if as_json:
        print(json.dumps(found.as_dict(), indent=2))
        return
    from rich.table import Table

    console = _console()
    table = Table(title=str(src), title_justify="left")
    for column in ("layer", "kind", "source layout", "version"):
        table.add_column(column)
    for layer in found.layers:
        table.add_row(layer.name, found.summaries[layer.name], layer.source.layout, layer.source.version or "-")
    console.print(table)
    for layer in found.layers:
        for fact in layer.source.inferred:
            console.print(f"  inferred: {layer.name}: {fact}")
        for note in layer.source.notes:
            console.print(f"  note: {layer.name}: {note}")
    for item in found.left_out:
        console.print(_styled("yellow", "  left out:", f" {item}"))
    for target, refused in found.refusals.items():
        for refusal in refused:
            console.print(_styled("yellow", f"  {target} refuses:", f" {refusal['layer']}: {refusal['reason']}"))


@app.command()
def verify(
    first: Annotated[Path, typer.Argument(help="A model or weights file (the source, for --config and --from).")],
    second: Annotated[Path, typer.Argument(help="Another one.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Architecture JSON (model.to_json()) for FIRST when weights-only.")
    ] = None,
    source_format: Annotated[Source | None, typer.Option("--from", help="FIRST's format (detected by default).")] = None,
    common_only: Annotated[
        bool, typer.Option("--common-only", help="Compare the layers both files hold; layers in one only do not count.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Do FIRST and SECOND compute the same function? Exit 0 only if every layer of both matched."""
    from lstmconv.pipeline.verify import verify as run_verify

    outcome = _run(
        lambda: run_verify(
            first,
            second,
            config=config,
            source_format=source_format.value if source_format else None,
            common_only=common_only,
        )
    )
    if as_json:
        print(json.dumps(outcome.as_dict(), indent=2))
        raise typer.Exit(code=0 if outcome.same else 1)
    from rich.table import Table

    console = _console()
    table = Table(title=f"{first} vs {second}", title_justify="left")
    for column in ("layer", "layer", "max error", "same"):
        table.add_column(column)
    for r in outcome.layers:
        error = "-" if r.max_abs_error is None else f"{r.max_abs_error:.2e}"
        verdict = "yes" if r.same else ("NO" if r.compared else "not compared")
        table.add_row(r.left, r.right, error, verdict + (f" ({r.note})" if r.note else ""))
    console.print(table)
    console.print("same function" if outcome.same else "different functions, or not everything was compared")
    raise typer.Exit(code=0 if outcome.same else 1)


def _terminated(signum: int, frame: object) -> NoReturn:
    """SIGTERM ends a command as Ctrl-C does: the exception unwinds through the atomic write, which removes its
    temporary files and leaves every existing file as it was (exit 143, the shell's 128 + 15)."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Run the command line on ``sys.argv``; ends by raising ``SystemExit`` with the exit code."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    startup.begin()
    try:
        app()
    finally:
        startup.end()


def console_script() -> None:
    """The ``lstmconv`` executable: :func:`main`, then the end of the process without the interpreter's teardown
    (callers of ``main`` in a process that goes on get its ``SystemExit``)."""
    try:
        main()
    except SystemExit as done:
        startup.exit_now(done.code)
        raise


if __name__ == "__main__":  # pragma: no cover
    console_script()
