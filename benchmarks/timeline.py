"""Where the time of one streamed conversion goes: its phases, medians over several runs.

    .venv/bin/python benchmarks/timeline.py SOURCE DEST --to torch --runs 5 --settle 3

Each run is a new process that runs ``lstmconv convert SOURCE DEST --to ... --force`` in-process, with
timestamps added around lstmconv's layer pipeline (``layer_writing.run_ahead``), the rename into place
(``layer_writing.write_atomically``) and the report (``cli._print_report``). It is a diagnostic tied to those
internal names, not a benchmark of the whole command: ``bench.py`` measures that. Each run starts from
``bench.py``'s disk state (``bench.start_clean``: DEST and its ONNX data file deleted, nothing left to write
back, ``--settle`` seconds passed, SOURCE in the page cache).

Phases, in milliseconds: ``start-up`` (from the script's first line to the pipeline's start: imports,
parsing, vetting the source), ``fill`` (the first layer read, converted and source-checked, with nothing yet
to write), ``layers`` (until the last layer is ready), ``drain`` (the last layer written and target-checked),
``finish`` (the end of the file, ``fsync``, the read-back checks, the rename), ``report``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - after the clock starts
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

PHASES = ("start-up", "fill", "layers", "drain", "finish", "report", "total")


def child(argv: list[str]) -> None:
    """Run the command line once with timestamps; print them as JSON (milliseconds) on the last line."""
    stamps: dict[str, float] = {}

    def stamp(name: str) -> None:
        stamps[name] = 1e3 * (time.perf_counter() - STARTED)

    import lstmconv.cli as cli
    import lstmconv.pipeline.write as layer_writing

    run_ahead, write_atomically, print_report = layer_writing.run_ahead, layer_writing.write_atomically, cli._print_report

    def timed_run_ahead(items, **options):  # type: ignore[no-untyped-def]
        stamp("pipeline")
        for item in run_ahead(items, **options):
            stamp("last ready")
            stamps.setdefault("first ready", stamps["last ready"])
            yield item
            stamp("last written")

    def timed_write_atomically(*args, **options):  # type: ignore[no-untyped-def]
        write_atomically(*args, **options)
        stamp("renamed")

    def timed_print_report(report):  # type: ignore[no-untyped-def]
        print_report(report)
        stamp("reported")

    layer_writing.run_ahead = timed_run_ahead
    layer_writing.write_atomically = timed_write_atomically
    cli._print_report = timed_print_report
    sys.argv = ["lstmconv", "convert", *argv, "--force"]
    try:
        cli.main()
    except SystemExit as done:
        if done.code:
            raise
    print(json.dumps(stamps))


def phases(stamps: dict[str, float]) -> dict[str, float]:
    order = ("pipeline", "first ready", "last ready", "last written", "renamed", "reported")
    times = [0.0, *(stamps[name] for name in order)]
    return {phase: round(end - start, 1) for phase, start, end in zip(PHASES, times, times[1:])} | {"total": round(times[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each run (bench.py --settle)")
    args, convert_options = parser.parse_known_args()
    import bench  # beside this script

    bench.byte_compile()
    disk_state = bench.Run([], args.source, args.destination, args.destination.with_name(args.destination.name + ".data"))
    runs = []
    for _ in range(args.runs):
        bench.start_clean(disk_state, args.settle)
        command = [sys.executable, __file__, "--child", str(args.source), str(args.destination), *convert_options]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(phases(json.loads(done.stdout.strip().splitlines()[-1])))
    medians = {phase: round(statistics.median(run[phase] for run in runs), 1) for phase in PHASES}
    print(json.dumps({"medians_ms": medians, "runs_ms": runs}, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
