"""Mutation fuzzing of every input format through the CLI (used by tests/test_fuzz.py and scripts/fuzz.py).

Seeds are valid files of every supported format, written by lstmconv itself from a committed tf_keras
fixture. Each case mutates one seed (bit flips, truncation, chunk deletion or duplication, header edits,
random bytes, or shape/dtype edits inside an HDF5 file), then runs ``convert`` (to a random target, half the
time over a pre-existing destination with ``--force`` absent), ``inspect`` and ``verify`` in-process with a
time limit. Counted, all of which must stay at 0:

* crashes: an exit code other than 0, 1, 2 or an exception escaping the CLI;
* tracebacks printed;
* hangs: a command over the time limit;
* partial outputs: a destination created by a failed command, or a temporary file left behind;
* changed pre-existing outputs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "keras2" / "bidirectional_sum.h5"
TARGET_SUFFIX = {"torch": ".safetensors", "onnx": ".onnx", "keras": ".weights.h5", "canonical": ".safetensors", "tflite": ".tflite"}


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so the CLI's own error handling cannot swallow it."""


@dataclass
class Tally:
    """What the run found."""

    cases: int = 0
    crashes: int = 0
    tracebacks: int = 0
    hangs: int = 0
    partial_outputs: int = 0
    changed_outputs: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def bad(self) -> int:
        return self.crashes + self.tracebacks + self.hangs + self.partial_outputs + self.changed_outputs


def make_seeds(folder: Path) -> list[Path]:
    """Valid files of every format lstmconv reads, made from one fixture."""
    import lstmconv

    folder.mkdir(parents=True, exist_ok=True)
    seeds = [folder / "legacy.h5"]
    shutil.copy(FIXTURE, seeds[0])
    for name, target in (("model.keras", "keras"), ("model.weights.h5", "keras"), ("model.onnx", "onnx"),
                         ("torch.safetensors", "torch"), ("canonical.safetensors", "canonical"), ("model.tflite", "tflite")):
        lstmconv.convert(FIXTURE, folder / name, to=target)
        seeds.append(folder / name)
    from tests.tfjs_helpers import write_tfjs

    (folder / "tfjs").mkdir(exist_ok=True)
    seeds.append(write_tfjs(FIXTURE, folder / "tfjs", shard_bytes=4096))
    (folder / "tfckpt").mkdir(exist_ok=True)
    for name in ("lstm_dense.index", "lstm_dense.data-00000-of-00001"):
        shutil.copy(ROOT / "tests" / "data" / "tf_checkpoint" / name, folder / "tfckpt" / name)
    seeds.append(folder / "tfckpt" / "lstm_dense.index")
    (folder / "tf1ckpt").mkdir(exist_ok=True)
    for name in ("multi_basic_lstm.index", "multi_basic_lstm.data-00000-of-00001", "multi_basic_lstm.meta"):
        shutil.copy(ROOT / "tests" / "data" / "tf1_checkpoint" / name, folder / "tf1ckpt" / name)
    seeds.append(folder / "tf1ckpt" / "multi_basic_lstm.index")
    shutil.copytree(ROOT / "tests" / "data" / "saved_model" / "functional_bigru", folder / "savedmodel", dirs_exist_ok=True)
    seeds.append(folder / "savedmodel" / "saved_model.pb")
    shutil.copy(ROOT / "tests" / "data" / "tf2onnx" / "gru_reset_before_loop.onnx", folder / "loop.onnx")
    seeds.append(folder / "loop.onnx")
    shutil.copytree(ROOT / "tests" / "data" / "ml5", folder / "ml5", dirs_exist_ok=True)
    seeds.append(folder / "ml5" / "manifest.json")
    try:
        lstmconv.convert(FIXTURE, folder / "torch.pt", to="torch")
        seeds.append(folder / "torch.pt")
    except lstmconv.LstmconvError:
        pass  # torch not installed: no .pt seed
    return seeds


def mutate(data: bytes, rng: random.Random, path: Path) -> bytes:
    """One random mutation of ``data`` (HDF5 structure edits are done on ``path`` in place)."""
    kind = rng.choice(["bitflip", "truncate", "delete", "duplicate", "header", "random", "hdf5"])
    buffer = bytearray(data)
    if kind == "bitflip":
        for _ in range(rng.randint(1, 16)):
            position = rng.randrange(len(buffer))
            buffer[position] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        buffer = buffer[: rng.randrange(len(buffer))]
    elif kind == "delete":
        start = rng.randrange(len(buffer))
        del buffer[start : start + rng.randint(1, 4096)]
    elif kind == "duplicate":
        start = rng.randrange(len(buffer))
        chunk = buffer[start : start + rng.randint(1, 4096)]
        buffer[start:start] = chunk
    elif kind == "header":
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(min(len(buffer), 512))
            buffer[position] = rng.randrange(256)
    elif kind == "random":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 4096)))
    elif kind == "hdf5" and data[:8] == b"\x89HDF\r\n\x1a\n":
        path.write_bytes(data)
        _edit_hdf5(path, rng)
        return path.read_bytes()
    return bytes(buffer)


def _edit_hdf5(path: Path, rng: random.Random) -> None:
    datasets: list[str] = []
    with h5py.File(path, "r+") as handle:
        handle.visititems(lambda name, node: datasets.append(name) if isinstance(node, h5py.Dataset) else None)
        if not datasets:
            return
        target = rng.choice(datasets)
        old = handle[target]
        shape = old.shape
        del handle[target]
        edit = rng.choice(["shape", "dtype", "nan", "string", "huge", "link"])
        if edit == "shape":
            handle.create_dataset(target, data=np.zeros(tuple(max(1, s + rng.choice([-1, 1])) for s in shape) or (3,), np.float32))
        elif edit == "dtype":
            dtype = rng.choice([np.int32, np.complex64, np.float16, np.uint8])
            handle.create_dataset(target, data=np.ones(shape, dtype))
        elif edit == "nan":
            handle.create_dataset(target, data=np.full(shape, np.nan, np.float32))
        elif edit == "string":
            handle.create_dataset(target, data=np.array([b"weights"] * 3))
        elif edit == "huge":
            handle.create_dataset(target, shape=(10**12,), dtype=np.float32, chunks=(1024,))
        else:
            handle[target] = h5py.ExternalLink("/etc/passwd", "/x")


def _invoke(args: list[str], seconds: int, hard_exit: bool = False) -> tuple[int | None, str, BaseException | None]:
    import threading

    from typer.testing import CliRunner

    from lstmconv.cli import app

    def alarm(signum: int, frame: object) -> None:
        raise CaseTimeout

    # A hang inside C code never returns to Python, so the alarm cannot end it; in the long run a watchdog
    # thread reports the command and ends the process (the driver counts it as a hang).
    watchdog = None
    if hard_exit:
        def give_up() -> None:
            print(f"HANG {' '.join(args)}", flush=True)
            os._exit(5)

        watchdog = threading.Timer(seconds * 2, give_up)
        watchdog.start()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        result = CliRunner().invoke(app, args)
        escaped = result.exception if result.exception and not isinstance(result.exception, SystemExit) else None
        return result.exit_code, result.output, escaped
    except CaseTimeout:
        return None, "", None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if watchdog is not None:
            watchdog.cancel()


def run(cases: int, seed: int, seconds: int = 20, folder: Path | None = None, hard_exit: bool = False) -> Tally:
    """Run ``cases`` mutation cases deterministically from ``seed``."""
    os.environ.pop("LSTMCONV_DEBUG", None)
    rng = random.Random(seed)
    work = Path(folder or tempfile.mkdtemp(prefix="lstmconv-fuzz-"))
    seeds = make_seeds(work / "seeds")
    tally = Tally()
    for index in range(cases):
        case = work / f"case{index % 8}"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        original = rng.choice(seeds)
        if original.parent.name in ("savedmodel", "ml5"):  # a folder: any of its files may be the one mutated
            shutil.copytree(original.parent, case, dirs_exist_ok=True)
            mutated = case / original.name
            beside = sorted(p for p in case.rglob("*") if p.is_file() and p != mutated)
        else:
            mutated = case / f"input{''.join(original.suffixes)}"
            mutated.write_bytes(original.read_bytes())
            # a tfjs model's shards and a checkpoint's data file (and graph) go beside it, and may be the file mutated
            shards = sorted(p for p in original.parent.iterdir() if p != original) if original.parent.name in ("tfjs", "tfckpt", "tf1ckpt") else []
            stem = len(original.name) - len(".index")
            beside = [case / (shard.name if original.name == "model.json" else "input" + shard.name[stem:]) for shard in shards]
            for shard, copy in zip(shards, beside):
                copy.write_bytes(shard.read_bytes())
        victim = rng.choice([mutated, *beside])
        victim.write_bytes(mutate(victim.read_bytes(), rng, victim))
        target = rng.choice(list(TARGET_SUFFIX))
        destination = case / f"out{TARGET_SUFFIX[target]}"
        existing = rng.random() < 0.5
        if existing:
            destination.write_bytes(b"precious")
        commands = [
            ["convert", str(mutated), str(destination), "--to", target],
            ["inspect", str(mutated), "--json"],
            ["verify", str(mutated), str(original)],
        ]
        for command in commands:
            tally.cases += 1
            code, output, escaped = _invoke(command, seconds, hard_exit)
            label = f"case {index} {command[0]} {original.name}"
            if code is None:
                tally.hangs += 1
                tally.examples.append(f"{label}: hang")
                continue
            tally.exit_codes[code] += 1
            if escaped is not None or code not in (0, 1, 2):
                tally.crashes += 1
                tally.examples.append(f"{label}: exit {code} {type(escaped).__name__ if escaped else ''}: {escaped}")
            if "Traceback" in output:
                tally.tracebacks += 1
                tally.examples.append(f"{label}: traceback")
            if command[0] == "convert":
                if existing and destination.read_bytes() != b"precious":
                    tally.changed_outputs += 1
                    tally.examples.append(f"{label}: existing output changed")
                if not existing and code != 0 and destination.exists():
                    tally.partial_outputs += 1
                    tally.examples.append(f"{label}: output left after exit {code}")
            leftovers = [p.name for p in case.iterdir() if p.name.startswith(".")]
            if leftovers:
                tally.partial_outputs += 1
                tally.examples.append(f"{label}: temporary files left: {leftovers}")
                for name in leftovers:
                    (case / name).unlink()
    shutil.rmtree(work, ignore_errors=True)
    return tally
