"""Benchmarks: small-model latency against tf2onnx, large-checkpoint scaling against the I/O floor, and the
NumPy reference cells against torch.nn on CPU. Every figure is a median of several runs; ratios are
measured side by side in the same run.

    .venv/bin/python benchmarks/bench.py small --tf2onnx-python /tmp/tfenv/bin/python
    .venv/bin/python benchmarks/bench.py large --sizes 1 3 6 12
    .venv/bin/python benchmarks/bench.py large --sizes 1 3 6 12 --settle 6   # memory settled: see docs/performance.md
    .venv/bin/python benchmarks/bench.py sources --layers 12 --tf-python /tmp/tfenv/bin/python
    .venv/bin/python benchmarks/bench.py reference
    .venv/bin/python benchmarks/bench.py small --baseline /tmp/before   # and large: against another checkout

With ``--baseline DIR`` every lstmconv row is run twice per round, once from this checkout and once from the
lstmconv package in DIR (another checkout, e.g. ``git worktree add DIR <commit>``), both started the same way
(``python -c "from lstmconv.cli import console_script; console_script()"`` with DIR or this checkout first on
``sys.path``), interleaved: a before/after comparison on one machine state.

Wall time and peak RSS of whole processes come from GNU time (``/usr/bin/time -f "%e %M"``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LSTMCONV = str(Path(PYTHON).parent / "lstmconv")


@dataclass(frozen=True)
class Run:
    """A benchmarked command, with the model file it reads and the files it writes (any may be None)."""

    command: list[str]
    source: Path | None = None
    output: Path | None = None
    companion: Path | None = None  # written beside ``output`` (ONNX external data)


def convert(source: Path, output: Path, *options: str) -> Run:
    """``lstmconv convert source output options``."""
    companion = output.with_name(output.name + ".data") if "--external-data" in options else None
    return Run([LSTMCONV, "convert", str(source), str(output), *options], source, output, companion)


def script(code: str, source: Path, output: Path) -> Run:
    """A floor: ``python -c code source output``."""
    return Run([PYTHON, "-c", code, str(source), str(output)], source, output)


def measure(run: Run, env: dict[str, str] | None = None, settle: float = 0.0) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``run.command``.

    Every run starts from the same disk state: ``run.output`` does not exist, nothing is waiting to be written
    back, and ``run.source`` is in the page cache. Otherwise a run pays for what the run before it left behind:
    the kernel writing back the previous command's output while this one runs, or freeing the blocks of the
    file it overwrites (0.24 s for a 544 MiB file already on disk on this machine's ext4 with ``discard``,
    0.04 s for one still in the page cache, which favoured the floor, whose output is never flushed); or
    reading a source the machine's memory reclaim evicted (the floor's time at 1.1 GiB varied from 1.1 to 3.3 s).

    ``settle``: seconds to wait after that, so that memory freed a moment ago (the output just deleted) is no
    longer at hand. On a virtual machine whose balloon driver reports free memory to the host (this one does:
    ``page_reporting`` in the kernel's profile), memory freed more than about 2 s ago costs a fault in the host
    on first touch: writing 1.1 GiB to a new file takes 0.35 s right after another 1.1 GiB file was deleted
    and 1.8-2.3 s eight seconds later. Without settling, a command that touches its memory early (the floor reads
    everything, then writes everything) is served the memory just freed; one that streams is not.
    """
    start_clean(run, settle)
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *run.command], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{run.command} failed: {done.stderr[-2000:]}")
    wall, rss = done.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(wall), "peak_rss_mib": int(rss) / 1024}


def start_clean(run: Run, settle: float) -> None:
    """The disk state every run starts from (see :func:`measure`): ``run``'s outputs deleted, nothing waiting to
    be written back, ``settle`` seconds passed, its source read into the page cache."""
    for output in (run.output, run.companion):
        if output is not None:
            output.unlink(missing_ok=True)
    os.sync()
    time.sleep(settle)
    if run.source is not None:  # a TF checkpoint's .index and a SavedModel: every file of the model
        stem = run.source.name.removesuffix(".index")
        files = [p for p in run.source.parent.iterdir() if p.name.startswith(stem)] if run.source.suffix == ".index" else (
            [p for p in run.source.rglob("*") if p.is_file()] if run.source.is_dir() else [run.source])
        for file in files:
            with file.open("rb") as handle:
                while handle.read(16 << 20):
                    pass


def interleaved(
    rows: dict[str, Run], rounds: int, env: dict[str, str] | None = None, settle: float = 0.0
) -> dict[str, list[dict[str, float]]]:
    """Every row run once per round, ``rounds`` times, so a noisy moment of the machine hits all of them alike."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, run in rows.items():
            samples[name].append(measure(run, env, settle))
    return samples


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(s[key] for s in runs), 3) for key in ("seconds", "peak_rss_mib")}


def byte_compile(*roots: Path) -> None:
    """Compile lstmconv's modules as an installed package has them (an editable install under
    PYTHONDONTWRITEBYTECODE would compile every module on every run, about 60 ms of start-up)."""
    for root in (ROOT, *roots):
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(root / "lstmconv")], check=True)


def from_checkout(root: Path) -> list[str]:
    """The ``lstmconv`` command of the package in ``root``."""
    code = f"import sys; sys.path.insert(0, {str(root)!r}); from lstmconv.cli import console_script; console_script()"
    return [PYTHON, "-c", code]


def with_baseline(rows: dict[str, Run], baseline: str | None) -> dict[str, Run]:
    """``rows``, and with a baseline checkout each lstmconv row twice: this checkout's and the baseline's."""
    if not baseline:
        return rows
    both: dict[str, Run] = {}
    for name, run in rows.items():
        if run.command[0] != LSTMCONV:
            both[name] = run
            continue
        for label, root in (("after", ROOT), ("before", Path(baseline))):
            both[f"{name} [{label}]"] = Run([*from_checkout(root), *run.command[1:]], run.source, run.output, run.companion)
    return both


def paired_ratios(runs: list[dict[str, float]], base: list[dict[str, float]], name: str = "floor") -> dict[str, float]:
    """Time over ``base``'s time in the same round, round by round: median and range. On a machine whose speed
    drifts by tens of percent over minutes, the ratio of two medians can mix slow and fast moments; a ratio of
    two runs made seconds apart cannot."""
    ratios = sorted(run["seconds"] / other["seconds"] for run, other in zip(runs, base, strict=True))
    return {
        f"ratio_to_{name}": round(statistics.median(ratios), 3),
        "ratio_min": round(ratios[0], 3),
        "ratio_max": round(ratios[-1], 3),
    }


TF2ONNX_ROW = "tf2onnx (python -m tf2onnx.convert --keras)"
TFLITE_ROW = "TensorFlow (tf.lite.TFLiteConverter, batch fixed to 1)"
# TensorFlow's own Keras -> TFLite conversion of the same file, as a user without lstmconv runs it. Its
# from_keras_model fails on this model without Flex ops (a Keras LSTM's TensorList needs a static batch), so
# the batch is fixed to 1 in a concrete function, as the converter's users do; it then writes the fused LSTM.
TFLITE_CONVERT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf, tf_keras as keras
model = keras.models.load_model(sys.argv[1], compile=False)
function = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec([1, *model.input_shape[1:]], tf.float32))
open(sys.argv[2], "wb").write(tf.lite.TFLiteConverter.from_concrete_functions([function], model).convert())
"""


def small(args: argparse.Namespace) -> dict[str, object]:
    byte_compile(*([Path(args.baseline)] if args.baseline else []))
    work = Path(tempfile.mkdtemp())
    source = ROOT / "examples" / "sine_lstm.h5"
    rows = {
        "python -c 'import numpy, h5py, safetensors'": Run([PYTHON, "-c", "import numpy, h5py, safetensors"]),
        "lstmconv --help": Run([LSTMCONV, "--help"]),
        "lstmconv convert --to torch": convert(source, work / "a.safetensors", "--to", "torch"),
        "lstmconv convert --to onnx": convert(source, work / "a.onnx", "--to", "onnx"),
        "lstmconv convert --to tflite": convert(source, work / "a.tflite", "--to", "tflite"),
    }
    if args.tf2onnx_python:
        output = work / "b.onnx"
        rows[TF2ONNX_ROW] = Run(
            [args.tf2onnx_python, "-m", "tf2onnx.convert", "--keras", str(source), "--output", str(output)], source, output
        )
        tflite_output = work / "b.tflite"
        rows[TFLITE_ROW] = Run([args.tf2onnx_python, "-c", TFLITE_CONVERT, str(source), str(tflite_output)], source, tflite_output)
    env = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    rows = with_baseline(rows, args.baseline)
    samples = interleaved(rows, args.rounds, env)
    summary: dict[str, object] = {name: medians(runs) for name, runs in samples.items()}
    if args.tf2onnx_python:
        tf2onnx = samples[TF2ONNX_ROW]
        for name in samples:
            if name.startswith("lstmconv convert --to tflite"):
                summary[name] = {**medians(samples[name]), **paired_ratios(samples[name], samples[TFLITE_ROW], "tflite_converter")}
            elif name.startswith("lstmconv convert"):
                summary[name] = {**medians(samples[name]), **paired_ratios(samples[name], tf2onnx, "tf2onnx")}
    shutil.rmtree(work)
    return summary


def make_checkpoint(path: Path, layers: int, hidden: int, features: int) -> int:
    """A weights-only Keras 2 file of ``layers`` stacked Bidirectional LSTMs (random weights); returns bytes."""
    import h5py

    rng = np.random.default_rng(0)
    total = 0
    with h5py.File(path, "w") as handle:
        names = [f"bidirectional_{k}" for k in range(layers)]
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        for k, name in enumerate(names):
            group = handle.create_group(name)
            width = features if k == 0 else 2 * hidden
            weight_names = []
            for side in ("forward", "backward"):
                for leaf, shape in (("kernel", (width, 4 * hidden)), ("recurrent_kernel", (hidden, 4 * hidden)), ("bias", (4 * hidden,))):
                    dataset = f"{name}/{side}_lstm_{k}/lstm_cell/{leaf}:0"
                    array = (rng.standard_normal(shape, dtype=np.float32) * 0.05).astype(np.float32)
                    group.create_dataset(dataset, data=array)
                    weight_names.append(dataset.encode())
                    total += array.nbytes
            group.attrs["weight_names"] = np.array(weight_names)
    return total


FLOOR = """
import sys, h5py
from safetensors.numpy import save_file
tensors = {}
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(lambda n, o: tensors.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
save_file(tensors, sys.argv[2])
"""


# The same, plus the one change of layout a Keras -> torch conversion cannot avoid: every matrix transposed from
# Keras (in, out) to torch (out, in). Not a goal, a yardstick: how much of the distance to the floor is the
# transposition itself (a plain NumPy copy of the transposed view, as a hand-written script would do it).
FLOOR_TRANSPOSED = """
import sys, h5py, numpy as np
from safetensors.numpy import save_file
tensors = {}
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(lambda n, o: tensors.__setitem__(n, np.ascontiguousarray(o[()].T)) if isinstance(o, h5py.Dataset) else None)
save_file(tensors, sys.argv[2])
"""


def scratch(workdir: str | None) -> Path:
    """A new directory for one benchmark's files, inside ``workdir`` when given (a directory on the disk to
    measure). Only this directory is removed afterwards: ``--workdir`` may hold anything else."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="lstmconv-bench-", dir=workdir))


def large(args: argparse.Namespace) -> dict[str, object]:
    byte_compile(*([Path(args.baseline)] if args.baseline else []))
    work = scratch(args.workdir)
    results: dict[str, object] = {}
    for layers in args.sizes:
        source = work / f"bilstm_{layers}.h5"
        size = make_checkpoint(source, layers, args.hidden, args.hidden)
        floor_row = "floor (h5py read + safetensors save_file)"
        rows = {
            floor_row: script(FLOOR, source, work / "floor.safetensors"),
            "floor + transposes (not a goal)": script(FLOOR_TRANSPOSED, source, work / "floor_t.safetensors"),
            "lstmconv --to torch": convert(source, work / "out.safetensors"),
            "lstmconv --to torch --no-verify": convert(source, work / "out.safetensors", "--no-verify"),
        }
        if size < 2**31 - 2**24:  # one .onnx (and one .tflite) file holds at most 2 GiB, weights and graph
            rows["lstmconv --to onnx"] = convert(source, work / "out.onnx", "--to", "onnx")
            rows["lstmconv --to tflite"] = convert(source, work / "out.tflite", "--to", "tflite")
        if args.external_data or "lstmconv --to onnx" not in rows:
            external = convert(source, work / "ext.onnx", "--to", "onnx", "--external-data")
            rows["lstmconv --to onnx --external-data"] = external
        samples = interleaved(with_baseline(rows, args.baseline), args.rounds, settle=args.settle)
        largest_layer = size / layers
        results[f"{layers} layers"] = {
            "weights_mib": round(size / 2**20, 1),
            "largest_layer_mib": round(largest_layer / 2**20, 1),
            **{name: {**medians(runs), **paired_ratios(runs, samples[floor_row])} for name, runs in samples.items()},
        }
        source.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return results


def sources(args: argparse.Namespace) -> dict[str, object]:
    """ONNX, torch .safetensors and torch .pt sources (written from the generated Keras file) converted on,
    against floors that read every tensor with the source's own library and write them with safetensors."""
    byte_compile()
    work = scratch(args.workdir)
    keras = work / "bilstm.h5"
    size = make_checkpoint(keras, args.layers, args.hidden, args.hidden)
    onnx_source, torch_source, pt_source = work / "bilstm.onnx", work / "bilstm.safetensors", work / "bilstm.pt"
    for made in (onnx_source, torch_source):
        subprocess.run([LSTMCONV, "convert", str(keras), str(made), "--to", "onnx" if made.suffix == ".onnx" else "torch"], check=True, capture_output=True)
    # the .pt as torch.save writes a state dict (zip format)
    resave = "import sys, torch; from safetensors.torch import load_file; torch.save(load_file(sys.argv[1]), sys.argv[2])"
    subprocess.run([PYTHON, "-c", resave, str(torch_source), str(pt_source)], check=True, capture_output=True)
    floor = "import sys, onnx, numpy; from onnx import numpy_helper; from safetensors.numpy import save_file; " \
        "m = onnx.load(sys.argv[1]); save_file({t.name: numpy_helper.to_array(t) for t in m.graph.initializer}, sys.argv[2])"
    pt_floor = "import sys, torch; from safetensors.torch import save_file; save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])"
    rows = {
        "floor (onnx.load + safetensors save_file)": script(floor, onnx_source, work / "floor.safetensors"),
        "lstmconv onnx -> torch": convert(onnx_source, work / "a.safetensors"),
        "lstmconv onnx -> onnx": convert(onnx_source, work / "a.onnx", "--to", "onnx"),
        "lstmconv safetensors -> onnx": convert(torch_source, work / "b.onnx", "--to", "onnx"),
        "lstmconv inspect onnx": Run([LSTMCONV, "inspect", str(onnx_source)], onnx_source),
        "floor .pt (torch.load + safetensors save_file)": script(pt_floor, pt_source, work / "pt_floor.safetensors"),
        "lstmconv pt -> torch": convert(pt_source, work / "c.safetensors"),
        "lstmconv pt -> onnx": convert(pt_source, work / "c.onnx", "--to", "onnx"),
    }
    if args.tf_python:
        rows.update(tensorflow_rows(args.tf_python, keras, work))
    keras.unlink()
    samples = interleaved(rows, args.rounds)
    result = {"weights_mib": round(size / 2**20, 1), **{name: medians(runs) for name, runs in samples.items()}}
    shutil.rmtree(work, ignore_errors=True)
    return result


# Run by TensorFlow's python: the generated Keras file's weights in a tf_keras model of the same layers, saved as a
# TF2 checkpoint (save_weights, TF format) and as a SavedModel (model.save).
TF_SAVE = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import h5py, tf_keras as keras
source, prefix, saved = sys.argv[1:4]
with h5py.File(source, "r") as f:
    layers = len(f.attrs["layer_names"])
    hidden = f["bidirectional_0"]["bidirectional_0/forward_lstm_0/lstm_cell/recurrent_kernel:0"].shape[0]
model = keras.Sequential([keras.Input((None, hidden))] + [
    keras.layers.Bidirectional(keras.layers.LSTM(hidden, return_sequences=True), name=f"bidirectional_{k}") for k in range(layers)])
model.load_weights(source)
model.save_weights(prefix, save_format="tf")
model.save(saved, save_format="tf", save_traces=False)
"""
# The floor of a TF checkpoint source: every variable read by TensorFlow's own reader, written by safetensors.
TF_FLOOR = """
import sys
import tensorflow as tf
from safetensors.numpy import save_file
reader = tf.train.load_checkpoint(sys.argv[1])
names = [n for n in reader.get_variable_to_shape_map() if n.startswith("layer_with_weights")]
save_file({n: reader.get_tensor(n) for n in names}, sys.argv[2])
"""


def tensorflow_rows(tf_python: str, keras: Path, work: Path) -> dict[str, Run]:
    """The TensorFlow sources: the Keras file's weights saved by real tf_keras as a TF2 checkpoint and a
    SavedModel, converted by lstmconv, against TensorFlow's own reader (its start-up counts: it is what a user
    without lstmconv runs)."""
    prefix, saved = work / "bilstm_ckpt", work / "bilstm_saved"
    subprocess.run([tf_python, "-c", TF_SAVE, str(keras), str(prefix), str(saved)], check=True, capture_output=True)
    index = Path(f"{prefix}.index")
    return {
        "floor TF checkpoint (tf.train.load_checkpoint + safetensors save_file)": Run(
            [tf_python, "-c", TF_FLOOR, str(prefix), str(work / "tf_floor.safetensors")], index, work / "tf_floor.safetensors"
        ),
        "lstmconv tf-checkpoint -> torch": convert(index, work / "d.safetensors"),
        "lstmconv tf-checkpoint -> onnx": convert(index, work / "d.onnx", "--to", "onnx"),
        "lstmconv saved-model -> torch": convert(saved, work / "e.safetensors"),
    }


def reference(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from lstmconv.reference.torch import torch_forward

    torch.set_num_threads(args.threads)
    batch, steps, features, hidden = 32, 100, 128, 512
    results: dict[str, object] = {}
    for mode in ("lstm", "gru"):
        for np_dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
            module = (torch.nn.LSTM if mode == "lstm" else torch.nn.GRU)(features, hidden, batch_first=True).to(torch_dtype)
            x = np.random.default_rng(0).standard_normal((batch, steps, features)).astype(np_dtype)
            state = {k: v.detach().numpy() for k, v in module.state_dict().items()}

            def run_torch() -> None:
                with torch.no_grad():
                    module(torch.from_numpy(x))

            def run_numpy() -> None:
                torch_forward(state, mode=mode, num_layers=1, bidirectional=False, x=x, dtype=np_dtype)

            timings: dict[str, list[float]] = {"torch": [], "numpy": []}
            run_torch(), run_numpy()
            for _ in range(args.rounds):
                for name, function in (("torch", run_torch), ("numpy", run_numpy)):
                    started = time.perf_counter()
                    function()
                    timings[name].append(time.perf_counter() - started)
            torch_s, numpy_s = statistics.median(timings["torch"]), statistics.median(timings["numpy"])
            results[f"{mode} {np_dtype.__name__}"] = {"torch_s": round(torch_s, 4), "numpy_s": round(numpy_s, 4), "ratio": round(numpy_s / torch_s, 2)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p_small = sub.add_parser("small")
    p_small.add_argument("--tf2onnx-python", help="python of a separate environment with tensorflow, tf_keras and tf2onnx")
    p_small.add_argument("--rounds", type=int, default=5)
    p_small.add_argument("--baseline", help="another checkout whose lstmconv runs beside this one's, interleaved")
    p_large = sub.add_parser("large")
    p_large.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 6, 12], help="stacked BiLSTM layers")
    p_large.add_argument("--hidden", type=int, default=1024)
    p_large.add_argument("--rounds", type=int, default=3)
    p_large.add_argument("--workdir", help="where to write (a new directory inside it, removed afterwards)")
    p_large.add_argument(
        "--external-data", action="store_true", help="also ONNX with --external-data (always above 2 GiB)"
    )
    p_large.add_argument("--baseline", help="another checkout whose lstmconv runs beside this one's, interleaved")
    p_large.add_argument(
        "--settle", type=float, default=0.0, help="seconds to wait before each run, so memory freed just before has settled"
    )
    p_sources = sub.add_parser("sources")
    p_sources.add_argument("--layers", type=int, default=12)
    p_sources.add_argument("--hidden", type=int, default=1024)
    p_sources.add_argument("--rounds", type=int, default=3)
    p_sources.add_argument("--workdir", help="where to write (a new directory inside it, removed afterwards)")
    p_sources.add_argument("--tf-python", help="python of a separate environment with tensorflow and tf_keras: adds TF rows")
    p_ref = sub.add_parser("reference")
    p_ref.add_argument("--threads", type=int, default=1)
    p_ref.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = {"small": small, "large": large, "sources": sources, "reference": reference}[args.which](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
