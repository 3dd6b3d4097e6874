"""Structured attacks: files built to lie rather than to be broken, each with the promise it must keep.

Each :class:`Attack` builds one lying file (with the real frameworks where the lie is in their format) and says
what lstmconv must do with it: refuse it with a clear message, or convert it to what the real framework
computes. :func:`run` runs the command line in a child process with a memory limit and a time limit, so that
an attack on bounded work fails the run instead of the machine, and checks the outcome: the exit code, one
message with no traceback and no internal error, no temporary file left, the destination not created on a
refusal and existing files unchanged. ``tests/test_attacks.py`` runs a quick sample, ``scripts/attacks.py``
all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
SINE = ROOT / "examples" / "sine_lstm.h5"
MEMORY_LIMIT = 3 << 30  # address space of the child: torch's import alone reserves about 1.5 GiB
TIME_LIMIT = 60.0


@dataclass
class Case:
    """What to run (``lstmconv`` arguments) and what must come of it."""

    argv: list[str]
    expect: str  # "refused" (exit 2) or "converts" (exit 0)
    words: tuple[str, ...] = ()  # the message (stderr) or the report (stdout) says these
    keep: tuple[Path, ...] = ()  # files that must be left as they are
    absent: tuple[Path, ...] = ()  # files that must not exist afterwards
    check: Callable[[], None] | None = None  # more to assert after the run


@dataclass(frozen=True)
class Attack:
    klass: str  # "one reading", "bounded work", "nothing lost", "messages"
    name: str
    build: Callable[[Path], Case]
    quick: bool = True  # part of the test suite's sample


@dataclass(frozen=True)
class Outcome:
    attack: Attack
    ok: bool
    why: str
    seconds: float


def run(attack: Attack, workdir: Path) -> Outcome:
    """Build the attack's file in ``workdir``, run lstmconv on it, and judge the promise."""
    workdir.mkdir(parents=True, exist_ok=True)
    case = attack.build(workdir)
    before = {path: path.read_bytes() for path in case.keep}
    started = time.monotonic()
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
        "sys.argv = ['lstmconv', *sys.argv[1:]]\n"
        "from lstmconv.cli import main\n"
        "main()\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *case.argv],
            cwd=workdir, capture_output=True, text=True, timeout=TIME_LIMIT, env={**os.environ, "COLUMNS": "200"},
        )
    except subprocess.TimeoutExpired:
        return Outcome(attack, False, f"did not finish in {TIME_LIMIT:.0f} s", time.monotonic() - started)
    seconds = time.monotonic() - started
    text = done.stdout + done.stderr
    wanted = {"refused": 2, "converts": 0}[case.expect]
    problems = []
    if done.returncode != wanted:
        problems.append(f"exit {done.returncode}, expected {wanted}: {text.strip()[-400:]}")
    if "Traceback" in text or "unexpected" in text or "MemoryError" in text:
        problems.append(f"an internal error reached the user: {text.strip()[-400:]}")
    for word in case.words:
        if word not in " ".join(text.split()):
            problems.append(f"the output does not say {word!r}: {text.strip()[-300:]}")
    leftovers = [p.name for p in workdir.rglob("*") if ".tmp" in p.name]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    for path, content in before.items():
        if not path.exists() or path.read_bytes() != content:
            problems.append(f"{path.name} was changed or removed")
    for path in case.absent:
        if path.exists() or path.is_symlink():
            problems.append(f"{path.name} exists")
    if case.check is not None and not problems:
        try:
            case.check()
        except AssertionError as error:
            problems.append(f"check failed: {error}")
    return Outcome(attack, not problems, "; ".join(problems), seconds)


# ---------------------------------------------------------------------------------------------------
# Builders


def _lstm_model(initializers: list[onnx.TensorProto], extra_nodes: list[onnx.NodeProto] = (), w_name: str = "W") -> onnx.ModelProto:  # type: ignore[assignment]
    """One LSTM node (hidden 2, input 3) reading W from ``w_name``, R and B from initializers."""
    rng = np.random.default_rng(0)
    r = numpy_helper.from_array(rng.normal(size=(1, 8, 2)).astype(np.float32), "R")
    b = numpy_helper.from_array(rng.normal(size=(1, 16)).astype(np.float32), "B")
    node = helper.make_node("LSTM", ["X", w_name, "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=2, name="lstm")
    graph = helper.make_graph(
        [*extra_nodes, node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [*initializers, r, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _w(rng_seed: int = 1) -> np.ndarray:
    return np.random.default_rng(rng_seed).normal(size=(1, 8, 3)).astype(np.float32)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def onnx_overlong_location(tmp: Path, overlong: bool = True) -> Case:
    """A W whose bytes are inline (a decoy) and also external, the external flag spelled as an over-long
    varint: onnxruntime reads the external file, a byte-at-a-time reader the decoy."""
    model = _lstm_model([], w_name="W")
    (tmp / "w.bin").write_bytes(_w(2).tobytes())
    tensor = (
        _varint(1 << 3) + _varint(1) + _varint(1 << 3) + _varint(8) + _varint(1 << 3) + _varint(3)  # dims 1, 8, 3
        + _varint(2 << 3) + _varint(TensorProto.FLOAT)  # data_type
        + _field(8, b"W")  # name
        + _field(9, _w(1).tobytes())  # raw_data: the decoy
        + _field(13, _field(1, b"location") + _field(2, b"w.bin"))
        + _varint(14 << 3) + (b"\x81\x00" if overlong else b"\x01")  # data_location = EXTERNAL
    )
    data = model.SerializeToString() + _field(7, _field(5, tensor))  # a second graph field: protobuf merges it
    path = tmp / "decoy.onnx"
    path.write_bytes(data)
    return Case(["convert", str(path), "out.onnx"], "refused", ("inline", "external"), absent=(tmp / "out.onnx",))


def onnx_doubling_concat(tmp: Path) -> Case:
    """18 Concats each doubling a constant no LSTM reads: 3 KiB of file, 600 MiB if folded."""
    nodes = [helper.make_node("Concat", [f"c{k}", f"c{k}"], [f"c{k + 1}"], axis=0) for k in range(22)]
    seed = numpy_helper.from_array(np.zeros(256, np.float32), "c0")
    model = _lstm_model([seed, numpy_helper.from_array(_w(), "W")], nodes)
    path = tmp / "bomb.onnx"
    onnx.save(model, path)
    return Case(["convert", str(path), "out.onnx"], "converts")


def onnx_doubling_concat_into_weight(tmp: Path) -> Case:
    """The same doubling chain, this time feeding the LSTM's W: refused within the folding budget."""
    nodes = [helper.make_node("Concat", [f"c{k}", f"c{k}"], [f"c{k + 1}"], axis=0) for k in range(26)]
    nodes.append(helper.make_node("Slice", ["c26", "starts", "ends"], ["W"]))
    seed = numpy_helper.from_array(np.zeros((1, 8, 3), np.float32), "c0")
    starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
    ends = numpy_helper.from_array(np.array([1], np.int64), "ends")
    model = _lstm_model([seed, starts, ends], nodes, w_name="W")
    path = tmp / "bomb_w.onnx"
    onnx.save(model, path)
    return Case(["convert", str(path), "out.onnx"], "refused", ("folding",), absent=(tmp / "out.onnx",))


def onnx_long_constant_chain(tmp: Path) -> Case:
    """20,000 Identity nodes on a constant: each folding site must not copy the graph's scope (5 GiB before)."""
    nodes = [helper.make_node("Identity", [f"c{k}"], [f"c{k + 1}"]) for k in range(20_000)]
    model = _lstm_model([numpy_helper.from_array(np.zeros(4, np.float32), "c0"), numpy_helper.from_array(_w(), "W")], nodes)
    path = tmp / "chain.onnx"
    path.write_bytes(model.SerializeToString())
    return Case(["convert", str(path), "out.onnx"], "converts")


def onnx_broadcast_add(tmp: Path) -> Case:
    """A broadcast Add of a column and a row no LSTM reads: 70 KiB of constants, 700 MiB if folded."""
    column = numpy_helper.from_array(np.zeros((9000, 1), np.float32), "col")
    row = numpy_helper.from_array(np.zeros((1, 9000), np.float32), "row")
    model = _lstm_model([column, row, numpy_helper.from_array(_w(), "W")], [helper.make_node("Add", ["col", "row"], ["big"])])
    path = tmp / "broadcast.onnx"
    onnx.save(model, path)
    return Case(["convert", str(path), "out.onnx"], "converts")


def onnx_split_millions(tmp: Path) -> Case:
    """Split with num_outputs = 5,000,000 and two outputs, feeding W."""
    data = numpy_helper.from_array(np.zeros((2, 8, 3), np.float32), "data")
    split = helper.make_node("Split", ["data"], ["W", "rest"], axis=0, num_outputs=5_000_000)
    model = _lstm_model([data], [split], w_name="W")
    path = tmp / "split.onnx"
    path.write_bytes(model.SerializeToString())  # onnx.save would check it; the attack is the file
    return Case(["convert", str(path), "out.onnx"], "refused", ("num_outputs",), absent=(tmp / "out.onnx",))


def torch_duplicate_module(tmp: Path) -> Case:
    """Keys for one module twice ('weight_ih_l0' of a bare nn.LSTM, named 'rnn', and 'rnn.weight_ih_l0')."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {}
    for prefix in ("", "rnn."):
        for name, shape in (("weight_ih_l0", (16, 3)), ("weight_hh_l0", (16, 4)), ("bias_ih_l0", (16,)), ("bias_hh_l0", (16,))):
            tensors[prefix + name] = rng.normal(size=shape).astype(np.float32)
    path = tmp / "twice.safetensors"
    save_file(tensors, path)
    return Case(["convert", str(path), "out.onnx"], "refused", ("two keys",), absent=(tmp / "out.onnx",))


def torch_expanded(tmp: Path, legacy: bool = False) -> Case:
    """A 4-byte storage expanded (stride 0) to 200 MB."""
    import torch

    state = {"weight_ih_l0": torch.zeros(1).expand(16 << 20, 3), "weight_hh_l0": torch.zeros(16, 4)}
    path = tmp / ("expanded_legacy.pt" if legacy else "expanded.pt")
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return Case(["convert", str(path), "out.safetensors"], "refused", ("repeats its storage",), absent=(tmp / "out.safetensors",))


def _lying_canonical(tmp: Path, name: str, field: str, value: object) -> Path:
    """The sine model's canonical file with its first layer's metadata ``field`` set to ``value``."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    honest = tmp / "honest.lstmconv.safetensors"
    _convert(SINE, honest)
    with safe_open(str(honest), "np") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    meta = json.loads(metadata["lstmconv_canonical"])
    meta["layers"][0][field] = value
    metadata["lstmconv_canonical"] = json.dumps(meta)
    path = tmp / f"{name}.lstmconv.safetensors"
    save_file(tensors, path, metadata=metadata)
    return path


def canonical_huge_levels(tmp: Path) -> Case:
    """A canonical file declaring 10^9 levels while holding one."""
    path = _lying_canonical(tmp, "levels", "num_levels", 10**9)
    return Case(["convert", str(path), "out.onnx"], "refused", ("num_levels",), absent=(tmp / "out.onnx",))


def canonical_wrong_dtype(tmp: Path) -> Case:
    """Canonical metadata saying float16 over float32 tensors."""
    path = _lying_canonical(tmp, "lying", "dtype", "float16")
    return Case(["convert", str(path), "out.safetensors"], "refused", ("dtype contradicts",), absent=(tmp / "out.safetensors",))


def keras_same_name_twice(tmp: Path) -> Case:
    """A legacy .h5 whose model config has two layers named 'lstm' with different configs."""
    import json

    import h5py

    path = tmp / "twice.h5"
    path.write_bytes(SINE.read_bytes())
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        layers = config["config"]["layers"]
        first = next(layer for layer in layers if layer["class_name"] == "LSTM")
        twin = json.loads(json.dumps(first))
        twin["config"]["return_sequences"] = not first["config"].get("return_sequences", False)
        layers.append(twin)
        handle.attrs["model_config"] = json.dumps(config)
    return Case(["convert", str(path), "out.onnx"], "refused", ("two layers", "'lstm'"), absent=(tmp / "out.onnx",))


def fifo_source(tmp: Path) -> Case:
    path = tmp / "model.h5"
    os.mkfifo(path)
    return Case(["convert", str(path), "out.onnx"], "refused", ("not a regular file",))


def device_source(tmp: Path) -> Case:
    link = tmp / "zeros.pt"
    link.symlink_to("/dev/zero")
    return Case(["convert", str(link), "out.safetensors"], "refused", ("not a regular file",))


def device_config(tmp: Path) -> Case:
    return Case(["convert", str(SINE), "out.onnx", "--config", "/dev/zero"], "refused", ("not a regular file",))


def same_file(tmp: Path) -> Case:
    path = tmp / "m.h5"
    path.write_bytes(SINE.read_bytes())
    link = tmp / "link.h5"
    link.symlink_to(path)
    return Case(["convert", str(path), str(link), "--to", "keras", "--force"], "refused", ("source file itself",), keep=(path,))


def dangling_destination(tmp: Path) -> Case:
    """A dangling symbolic link where DST goes: replacing it needs --force like any existing destination."""
    link = tmp / "out.onnx"
    link.symlink_to(tmp / "nowhere")
    return Case(["convert", str(SINE), str(link)], "refused", ("--force",), check=lambda: _assert(link.is_symlink(), "the link was replaced"))


def emit_module_kept_on_failure(tmp: Path) -> Case:
    """--emit-module m.py --force over an existing m.py, with DST refused: m.py is left as it was."""
    module = tmp / "m.py"
    module.write_text("# the user's own file\n")
    destination = tmp / "out.safetensors"
    destination.write_bytes(b"existing")
    hard = ROOT / "tests" / "data" / "keras2" / "lstm_hard_sigmoid.h5"
    # without --force DST is refused, after m.py's name was accepted
    return Case(["convert", str(hard), str(destination), "--emit-module", str(module)], "refused", ("exists",), keep=(module, destination))


def hdf5_unwritten(tmp: Path, long_double: bool = False) -> Case:
    """A Keras file whose kernel was created and never written (a fill value only), or stored as long double."""
    import h5py

    path = tmp / "lying.h5"
    path.write_bytes(SINE.read_bytes())
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights/lstm/lstm/lstm_cell"]
        kernel = group["kernel:0"][()]
        del group["kernel:0"]
        if long_double:
            group.create_dataset("kernel:0", data=kernel.astype(np.longdouble))
        else:
            group.create_dataset("kernel:0", shape=kernel.shape, dtype="f4", fillvalue=0.5)
    words = ("long double",) if long_double else ("never written",)  # the file is 'lying.h5': no word from its name
    return Case(["convert", str(path), "out.onnx"], "refused", words, absent=(tmp / "out.onnx",))


class _RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch ran",))


def torch_pickle_runs_code(tmp: Path) -> Case:
    """A whole-module pickle that also holds an object whose unpickling would run a shell command."""
    import torch

    module = torch.nn.LSTM(3, 4)
    module.payload = _RunsCode()  # type: ignore[attr-defined]
    path = tmp / "model.pt"
    torch.save(module, path)
    return Case(["convert", str(path), "out.safetensors"], "converts", check=lambda: _assert(not (tmp / "ran").exists(), "code ran"))


def torch_pickle_of_something_else(tmp: Path) -> Case:
    """A .pt that pickles an object of another library (here: a NumPy array's reduce), not modules or tensors."""
    import torch

    path = tmp / "other.pt"
    torch.save({"model": _RunsCode()}, path)
    return Case(["convert", str(path), "out.safetensors"], "refused", ("posix.system",), absent=(tmp / "out.safetensors",),
                check=lambda: _assert(not (tmp / "ran").exists(), "code ran"))


def torch_rezipped(tmp: Path) -> Case:
    """A valid archive re-zipped by another tool: records off torch's 64-byte boundaries (torch loads it); the
    converted weights are torch.load's."""
    import zipfile

    import torch

    original, path = tmp / "original.pt", tmp / "rezipped.pt"
    torch.save({f"rnn.{k}": v for k, v in torch.nn.LSTM(3, 4).state_dict().items()}, original)
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    out = tmp / "out.safetensors"
    return Case(["convert", str(path), str(out)], "converts", check=lambda: _same_as_torch_load(path, out))


def torch_decoy_records(tmp: Path) -> Case:
    """Records where torch's computed (64-byte aligned) offsets would be hold decoy bytes, the real records
    elsewhere: read by name, the real weights convert (compared with torch.load of the same file)."""
    import zipfile

    import torch

    state = {f"rnn.{k}": v for k, v in torch.nn.LSTM(3, 4).state_dict().items()}
    original, path = tmp / "original.pt", tmp / "decoy.pt"
    torch.save(state, original)
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            if "/data/" in info.filename:  # a decoy member of the record's size where torch's offsets land
                target.writestr(info.filename.replace("/data/", "/decoy/"), b"\x7f" * info.file_size)
            target.writestr(info.filename, source.read(info))
    out = tmp / "out.safetensors"
    return Case(["convert", str(path), str(out)], "converts", check=lambda: _same_as_torch_load(path, out))


def _same_as_torch_load(source: Path, converted: Path) -> None:
    """The converted module's parameters are what torch.load reads from ``source``."""
    import torch

    from lstmconv.torch_modules import load_torch_modules

    module = load_torch_modules(converted)["rnn"]
    for key, value in torch.load(source, weights_only=True).items():
        _assert(torch.equal(getattr(module, key.removeprefix("rnn.")).detach(), value), f"{key} differs from torch.load")


def keras_large_valid(tmp: Path) -> Case:
    """A valid 106 MB .keras (200 LSTM(128) layers, as Keras 3 writes it): converts, however busy the machine."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    layers = [keras.Input((4, 16))] + [keras.layers.LSTM(128, return_sequences=True) for _ in range(200)]
    path = tmp / "big.keras"
    keras.Sequential(layers).save(path)
    return Case(["inspect", str(path), "--json"], "converts")


def torch_odd_tensor(tmp: Path, kind: str) -> Case:
    """A state dict whose weight is a sparse or a quantized tensor."""
    import torch

    weight = torch.randn(16, 3)
    odd = weight.to_sparse() if kind == "sparse" else torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)
    path = tmp / "odd.pt"  # the message, not the file's name, must say what the tensor is
    torch.save({"rnn.weight_ih_l0": odd, "rnn.weight_hh_l0": torch.randn(16, 4)}, path)
    return Case(["convert", str(path), "out.safetensors"], "refused", (kind,), absent=(tmp / "out.safetensors",))


def deep_json_config(tmp: Path) -> Case:
    """A model_config nested 100,000 deep."""
    import h5py

    path = tmp / "deep.h5"
    path.write_bytes(SINE.read_bytes())
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_config"] = "[" * 100_000 + "]" * 100_000
    return Case(["convert", str(path), "out.onnx"], "refused", ("cannot read this file",), absent=(tmp / "out.onnx",))


def nan_clip(tmp: Path) -> Case:
    """An ONNX LSTM whose clip is NaN."""
    model = _lstm_model([numpy_helper.from_array(_w(), "W")])
    model.graph.node[-1].attribute.append(helper.make_attribute("clip", float("nan")))
    path = tmp / "nan.onnx"
    path.write_bytes(model.SerializeToString())
    return Case(["convert", str(path), "out.onnx"], "refused", ("clip must be a positive number",), absent=(tmp / "out.onnx",))


def _assert(condition: bool, message: str) -> None:
    assert condition, message


def _convert(source: Path, destination: Path) -> None:
    import lstmconv

    lstmconv.convert(source, destination, force=True)


ATTACKS: list[Attack] = [
    Attack("one reading", "onnx data_location as an over-long varint", onnx_overlong_location),
    Attack("one reading", "onnx tensor both inline and external", lambda t: onnx_overlong_location(t, overlong=False)),
    Attack("one reading", "torch state dict: one module's keys twice", torch_duplicate_module),
    Attack("one reading", "keras config: two layers of one name", keras_same_name_twice),
    Attack("one reading", "canonical metadata dtype contradicts tensors", canonical_wrong_dtype),
    Attack("one reading", "hdf5 weight never written (fill value only)", hdf5_unwritten),
    Attack("one reading", "hdf5 long double weight", lambda t: hdf5_unwritten(t, long_double=True), quick=False),
    Attack("one reading", ".pt records off torch's alignment (re-zipped)", torch_rezipped),
    Attack("one reading", ".pt decoy bytes where torch's offsets land", torch_decoy_records),
    Attack("nothing executed", ".pt module pickle holding os.system", torch_pickle_runs_code),
    Attack("nothing executed", ".pt pickle of another object", torch_pickle_of_something_else, quick=False),
    Attack("bounded work", "canonical num_levels 1e9", canonical_huge_levels),
    Attack("bounded work", "onnx doubling Concat nobody reads", onnx_doubling_concat),
    Attack("bounded work", "onnx doubling Concat into W", onnx_doubling_concat_into_weight),
    Attack("bounded work", "onnx broadcast Add nobody reads", onnx_broadcast_add, quick=False),
    Attack("bounded work", "onnx 20,000 constant nodes in a chain", onnx_long_constant_chain),
    Attack("bounded work", "onnx Split num_outputs 5e6", onnx_split_millions),
    Attack("bounded work", ".pt stride-0 expansion", torch_expanded),
    Attack("bounded work", "legacy .pt stride-0 expansion", lambda t: torch_expanded(t, legacy=True), quick=False),
    Attack("bounded work", "valid 106 MB .keras read in linear time", keras_large_valid, quick=False),
    Attack("bounded work", "FIFO as SRC", fifo_source),
    Attack("bounded work", "/dev/zero behind a .pt link", device_source),
    Attack("bounded work", "/dev/zero as --config", device_config, quick=False),
    Attack("messages", ".pt sparse tensor", lambda t: torch_odd_tensor(t, "sparse")),
    Attack("messages", ".pt quantized tensor", lambda t: torch_odd_tensor(t, "quantized"), quick=False),
    Attack("messages", "model_config nested 100,000 deep", deep_json_config),
    Attack("messages", "ONNX clip NaN", nan_clip, quick=False),
    Attack("nothing lost", "SRC and DST one file through a link", same_file),
    Attack("nothing lost", "dangling symlink at DST", dangling_destination),
    Attack("nothing lost", "--emit-module file kept when DST is refused", emit_module_kept_on_failure),
]
