"""Hostile and broken input: clear errors, nothing lost, nothing executed, nothing allocated blindly."""

from __future__ import annotations

import errno
import shutil
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError, LstmconvError
from tests.conftest import DATA, ROOT

SOURCE = DATA / "keras2" / "bidirectional_sum.h5"
SINE = ROOT / "examples" / "sine_lstm.h5"


def _copy(tmp_path: Path, source: Path = SINE) -> Path:
    target = tmp_path / source.name
    shutil.copy(source, target)
    return target


def _first_kernel(handle: h5py.File) -> tuple[h5py.Group, str]:
    group = handle["model_weights"]["lstm"]
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
    return group, names[0]


@pytest.mark.parametrize("edit", ["external_link", "external_storage", "virtual", "huge", "string", "complex", "int"])
def test_hdf5_hazards_are_refused_with_the_tensor_named(edit: str, tmp_path: Path) -> None:
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as handle:
        group, name = _first_kernel(handle)
        shape = group[name].shape
        del group[name]
        if edit == "external_link":
            group[name] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/kernel")
        elif edit == "external_storage":
            (tmp_path / "raw.bin").write_bytes(np.zeros(shape, np.float32).tobytes())
            group.create_dataset(name, shape=shape, dtype=np.float32, external=[(str(tmp_path / "raw.bin"), 0, h5py.h5f.UNLIMITED)])
        elif edit == "virtual":
            layout = h5py.VirtualLayout(shape=shape, dtype=np.float32)
            group.create_virtual_dataset(name, layout)
        elif edit == "huge":
            group.create_dataset(name, shape=(10**12,), dtype=np.float32, chunks=(4096,))
        elif edit == "string":
            group.create_dataset(name, data=np.array([b"not", b"weights"]))
        elif edit == "complex":
            group.create_dataset(name, data=np.ones(shape, np.complex64))
        else:
            group.create_dataset(name, data=np.ones(shape, np.int32))
    with pytest.raises(InputFormatError) as caught:
        lstmconv.load(path)
    message = str(caught.value)
    assert str(path) in message and "layer 'lstm'" in message and name in message


def test_nan_weights_are_refused_unless_allowed(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as handle:
        group, name = _first_kernel(handle)
        data = group[name][()]
        data[0, 0] = np.nan
        data[0, 1] = np.inf
        group[name][...] = data
    with pytest.raises(InputFormatError, match=r"layer 'lstm'.*1 NaN and 1 infinite.*--allow-nonfinite"):
        lstmconv.load(path)
    out = tmp_path / "out.safetensors"
    lstmconv.convert(path, out, to="torch", allow_nonfinite=True)
    from safetensors.numpy import load_file

    assert np.isnan(load_file(str(out))["lstm.weight_ih_l0"]).sum() == 1


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/evil", "a/../../b"])
def test_keras_archive_with_unsafe_member_path_is_refused(member: str, tmp_path: Path) -> None:
    lstmconv.convert(SOURCE, tmp_path / "good.keras", to="keras")
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(tmp_path / "good.keras") as good, zipfile.ZipFile(bad, "w") as out:
        for item in good.infolist():
            out.writestr(item, good.read(item))
        out.writestr(member, b"x")
    with pytest.raises(InputFormatError, match="unsafe path"):
        lstmconv.load(bad)


def test_keras_archive_zip_bomb_is_refused_before_expanding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("config.json", b"{}")
        with out.open("model.weights.h5", "w") as handle:  # 80 MiB of zeros: a few KB compressed
            chunk = bytes(1 << 20)
            for _ in range(80):
                handle.write(chunk)
    with pytest.raises(InputFormatError, match="zip bomb"):
        lstmconv.load(bomb)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("suffix", [".h5", ".keras", ".onnx", ".safetensors", ".pt"])
def test_truncated_files_give_one_clear_error(suffix: str, fraction: float, tmp_path: Path) -> None:
    if suffix == ".pt":
        pytest.importorskip("torch")
    full = tmp_path / f"full{suffix}"
    if suffix == ".h5":
        shutil.copy(SOURCE, full)
    else:
        lstmconv.convert(SOURCE, full, to={".keras": "keras", ".onnx": "onnx", ".safetensors": "canonical", ".pt": "torch"}[suffix])
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(LstmconvError) as caught:
        lstmconv.load(cut)
    assert str(cut) in str(caught.value)


def _fail_writes(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the writers fail after writing something: torch in memory; torch, ONNX and Keras layer by layer."""
    import lstmconv.targets.torch as torch_target
    from lstmconv.targets.keras_writers import KerasWeightsWriter
    from lstmconv.io.onnx_stream import OnnxStream
    from lstmconv.io.safetensors_stream import SafetensorsStream

    def whole_file(path: Path, tensors: dict, metadata: dict) -> None:  # type: ignore[type-arg]
        path.write_bytes(b"partial")
        raise error

    def one_tensor(self: SafetensorsStream, key: str, array: np.ndarray) -> None:
        self.file.handle.write(b"partial")
        raise error

    def one_initializer(self: OnnxStream, *args: object) -> None:
        self.file.handle.write(b"partial")
        raise error

    def one_keras_layer(self: KerasWeightsWriter, plan: object) -> None:
        self.handle.create_group("partial")
        raise error

    monkeypatch.setattr(torch_target, "write_torch_file", whole_file)
    monkeypatch.setattr(KerasWeightsWriter, "add", one_keras_layer)
    monkeypatch.setattr(SafetensorsStream, "add", one_tensor)
    monkeypatch.setattr(OnnxStream, "add", one_initializer)
    monkeypatch.setattr(OnnxStream, "finish", one_initializer)  # a small model has every tensor in the graph


@pytest.mark.parametrize(
    "target, name", [("torch", "out.safetensors"), ("onnx", "out.onnx"), ("keras", "out.weights.h5"), ("keras", "out.h5")]
)
def test_disk_full_leaves_no_file_and_keeps_existing_output(target: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    out = tmp_path / name
    with pytest.raises(OSError, match="No space left"):
        lstmconv.convert(SOURCE, out, to=target)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"previous result")
    with pytest.raises(OSError):
        lstmconv.convert(SOURCE, out, to=target, force=True)
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_disk_full_through_the_cli_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lstmconv.cli import app

    _fail_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    result = CliRunner().invoke(app, ["convert", str(SOURCE), str(tmp_path / "o.safetensors")])
    assert result.exit_code == 2 and "No space left" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".onnx", ".weights.h5", ".h5"])
def test_interruption_during_write_leaves_nothing(suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_writes(monkeypatch, KeyboardInterrupt())
    threads = threading.active_count()
    target = {".onnx": "onnx", ".weights.h5": "keras", ".h5": "keras"}.get(suffix, "torch")
    with pytest.raises(KeyboardInterrupt):
        lstmconv.convert(SOURCE, tmp_path / f"out{suffix}", to=target)
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == threads  # the run-ahead and flush threads are gone too


def test_concurrent_conversions_into_one_folder_do_not_collide(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            lstmconv.convert(SOURCE, tmp_path / f"out{index}.onnx", to="onnx")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    outputs = sorted(p.name for p in tmp_path.iterdir())
    assert outputs == [f"out{i}.onnx" for i in range(4)]
    assert len({(tmp_path / name).read_bytes() for name in outputs}) == 1  # deterministic too


def test_library_errors_are_lstmconv_errors_never_raw_ones(tmp_path: Path) -> None:
    cases = {
        "noise.h5": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4,
        "noise.onnx": bytes(range(256)) * 8,
        "noise.safetensors": b"\xff\xff\xff\xff\xff\xff\xff\x7f{}",
        "noise.keras": b"PK\x03\x04" + bytes(100),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(LstmconvError):
            lstmconv.load(tmp_path / name)
    with pytest.raises(LstmconvError):
        lstmconv.load(tmp_path)
    with pytest.raises(LstmconvError):
        lstmconv.load(tmp_path / "missing.h5")


def test_file_with_no_recurrent_layer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dense_only.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"dense"]
        handle.attrs["keras_version"] = "2.15.0"
        group = handle.create_group("dense")
        group.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        group.create_dataset("dense/kernel:0", data=np.ones((3, 2), np.float32))
        group.create_dataset("dense/bias:0", data=np.ones(2, np.float32))
    with pytest.raises(InputFormatError, match=r"dense_only.h5: no LSTM, GRU or SimpleRNN layer.*found only: dense"):
        lstmconv.load(path)
    with pytest.raises(InputFormatError, match="no LSTM, GRU or SimpleRNN layer"):
        lstmconv.convert(path, path.with_suffix(".safetensors"), to="torch")
    assert not path.with_suffix(".safetensors").exists()


@pytest.mark.parametrize("name", ["loops_hdf5.weights.h5", "loops_hdf5_2.weights.h5"])
def test_hdf5_file_that_makes_the_library_loop_is_refused_in_bounded_time(name: str) -> None:
    """Found by the fuzzer: mutated Keras 3 weights files on which reading one attribute never returns."""
    import time

    path = DATA / "hostile" / name
    started = time.monotonic()
    with pytest.raises(InputFormatError, match="did not finish reading this file's structure"):
        lstmconv.load(path)
    assert time.monotonic() - started < 30


def _no_child_left() -> bool:
    import os

    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_hdf5_time_limit_starts_after_the_work_done_meanwhile() -> None:
    """The parent imports the writer while the child walks; a slow import must not eat the child's time."""
    import time

    from lstmconv.io.hdf5_guard import prescan_hdf5

    calls: list[float] = []
    started = time.monotonic()
    with pytest.raises(InputFormatError, match="did not finish reading this file's structure within 0.3 s"):
        prescan_hdf5(DATA / "hostile" / "loops_hdf5.weights.h5", seconds=0.3, meanwhile=lambda: calls.append(time.sleep(0.5)))
    assert len(calls) == 1
    assert time.monotonic() - started >= 0.8
    assert _no_child_left()


@pytest.mark.parametrize("error", [KeyboardInterrupt, ImportError])
def test_hdf5_walk_is_killed_when_the_work_meanwhile_fails(error: type[BaseException]) -> None:
    def fail() -> None:
        raise error("stop")

    from lstmconv.io.hdf5_guard import prescan_hdf5

    with pytest.raises(error, match="stop"):
        prescan_hdf5(DATA / "hostile" / "loops_hdf5.weights.h5", meanwhile=fail)
    assert _no_child_left()  # the looping child would otherwise walk on


def test_writer_is_prepared_while_the_source_is_vetted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmconv.pipeline.convert as conversion
    from lstmconv.io import hdf5_guard

    waits: list[bool] = []
    prepared: list[str] = []
    real_wait, real_prepare = hdf5_guard._wait, conversion.prepare_writer
    monkeypatch.setattr(hdf5_guard, "_wait", lambda child, seconds: waits.append(bool(prepared)) or real_wait(child, seconds))
    monkeypatch.setattr(conversion, "prepare_writer", lambda spec, options: prepared.append(spec.name) or real_prepare(spec, options))
    lstmconv.convert(SINE, tmp_path / "sine.onnx", to="onnx")
    assert waits == [True]


def _big_endian_copy(source: Path, target: Path) -> None:
    """``source`` with every float dataset rewritten big-endian (HDF5 records the byte order)."""
    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        names: list[str] = []
        handle.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
        for name in names:
            node = handle[name]
            if node.dtype.kind == "f":
                data, parent, key = node[()], node.parent, name.rsplit("/", 1)[-1]
                del parent[key]
                parent.create_dataset(key, data=data.astype(data.dtype.newbyteorder(">")))
        assert handle[names[0]].dtype.byteorder == ">"


@pytest.mark.parametrize("target, suffix", [("torch", ".safetensors"), ("torch", ".pt"), ("onnx", ".onnx"), ("canonical", ".safetensors"), ("keras", ".weights.h5")])
def test_big_endian_weights_convert_to_the_same_values(target: str, suffix: str, tmp_path: Path) -> None:
    """Writers copy raw bytes; a big-endian source must not come out byte-swapped (it did for Dense weights)."""
    big = tmp_path / "big.h5"
    _big_endian_copy(SINE, big)
    lstmconv.convert(big, tmp_path / f"from_big{suffix}", to=target)
    lstmconv.convert(SINE, tmp_path / f"from_little{suffix}", to=target)
    from_big, from_little = (lstmconv.load(tmp_path / f"from_{side}{suffix}") for side in ("big", "little"))
    from lstmconv.io.canonical_file import canonical_tensors

    big_tensors, little_tensors = canonical_tensors(from_big.model), canonical_tensors(from_little.model)
    assert big_tensors.keys() == little_tensors.keys()
    for key, array in little_tensors.items():
        assert np.array_equal(big_tensors[key], array), key
    if suffix == ".safetensors" and target == "torch":  # the file itself, read by the safetensors library
        from safetensors.numpy import load_file

        big_file, little_file = load_file(tmp_path / "from_big.safetensors"), load_file(tmp_path / "from_little.safetensors")
        assert all(np.array_equal(big_file[key], array) for key, array in little_file.items())


def test_big_endian_arrays_in_memory_are_written_in_the_right_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    state = {
        "rnn.weight_ih_l0": rng.standard_normal((12, 3)).astype(">f4"),
        "rnn.weight_hh_l0": rng.standard_normal((12, 3)).astype(">f4"),
        "rnn.bias_ih_l0": rng.standard_normal(12).astype(">f4"),
        "rnn.bias_hh_l0": rng.standard_normal(12).astype(">f4"),
    }
    loaded = lstmconv.load_state_dict(state)
    lstmconv.save_torch(loaded, tmp_path / "w.safetensors")
    from safetensors.numpy import load_file

    back = load_file(tmp_path / "w.safetensors")
    assert all(np.array_equal(back[key], array) for key, array in state.items())


# ---------------------------------------------------------------------------------------------------
# Messages: input reaching an internal error path becomes an LstmconvError naming what it is about


@pytest.mark.parametrize(
    "call",
    [
        lambda lc: lc.load_keras_weights([None, None, None], class_name="LSTM"),
        lambda lc: lc.load_keras_weights([np.ones((3, 16))], class_name="LSTM", config=[1, 2]),
        lambda lc: lc.load_keras_weights([np.ones((3, 16)), np.ones((4, 16)), np.ones(16)], class_name="LSTM", keras_version=2),
        lambda lc: lc.load_keras_weights([np.array([object()] * 3)], class_name="LSTM"),
        lambda lc: lc.load_keras_weights(None, class_name="LSTM"),
        lambda lc: lc.load_state_dict({"rnn.weight_ih_l0": None}),
        lambda lc: lc.load_state_dict({"rnn.weight_ih_l0": np.array(["a", "b"])}),
        lambda lc: lc.load_state_dict([1, 2]),
    ],
    ids=["None arrays", "list config", "int version", "object arrays", "None weights", "None tensor", "string tensor", "list state dict"],
)
def test_library_misuse_raises_an_lstmconv_error(call) -> None:  # type: ignore[no-untyped-def]
    import lstmconv

    with pytest.raises(lstmconv.LstmconvError):
        call(lstmconv)


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        ({"clip": float("nan")}, "clip must be a positive number"),
        ({"clip": float("inf")}, "clip must be a positive number"),
        ({"activations": ["HardSigmoid", "Tanh", "Tanh"], "activation_alpha": [float("nan")]}, "non-finite alpha"),
    ],
)
def test_non_finite_node_attributes_are_refused_naming_the_layer(attrs: dict, words: str, tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    import lstmconv

    rng = np.random.default_rng(0)
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=2, name="lstm", **attrs)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name) for name, shape in (("W", (1, 8, 3)), ("R", (1, 8, 2)))]
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], weights
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "nan.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(lstmconv.LstmconvError, match=words) as caught:
        lstmconv.inspect(path)
    assert caught.value.file == str(path) and caught.value.layer == "lstm"


def test_the_emitted_module_writes_every_value_as_valid_python() -> None:
    from lstmconv.adapters.torch_emit import _literal

    value = {"clip": float("nan"), "alpha": (float("inf"), -float("inf"), 0.5), "name": "a'b", "one": (1,), "none": None}
    back = eval(_literal(value))  # noqa: S307 - the literal this module writes
    assert np.isnan(back["clip"]) and back["alpha"][:2] == (float("inf"), -float("inf")) and back["one"] == (1,)
    assert {k: v for k, v in back.items() if k != "clip"} == {k: v for k, v in value.items() if k != "clip"}


def test_an_onnx_file_cut_short_while_read_is_an_error_not_sigbus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX reader reads with pread, not a memory map (whose pages past a new end raise SIGBUS): a file that
    another process truncates while lstmconv reads it gives a clear error."""
    import os

    import lstmconv

    source = tmp_path / "m.onnx"
    lstmconv.convert(SOURCE, source)
    with source.open("ab") as grow:  # more than one page, so that reading goes on after the cut
        grow.write(b"\0" * (1 << 17))
    real_pread = os.pread
    calls = {"n": 0}

    def truncating_pread(fd: int, length: int, offset: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            os.truncate(source, 10)  # cut short by someone else, mid-read
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", truncating_pread)
    with pytest.raises(lstmconv.LstmconvError, match="cut short") as caught:
        lstmconv.inspect(source)
    assert caught.value.file == str(source)


def test_a_stored_zip_member_reads_like_the_archive_at_every_seek(tmp_path: Path) -> None:
    """Keras 3 weights are read in place from the .keras archive (pread over the member's bytes): any seek, any
    order, the bytes zipfile itself reads; a compressed member is inflated once."""
    import zipfile

    from lstmconv.io.zip_member import open_member

    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"a{compression}.zip"
        with zipfile.ZipFile(path, "w", compression) as archive:
            archive.writestr("first.txt", b"x" * 1000)
            archive.writestr("model.weights.h5", payload)
        with open_member(path, "model.weights.h5") as member:
            for start in rng.integers(0, len(payload), 50):
                member.seek(int(start))
                assert member.read(777) == payload[start : start + 777]
            member.seek(-5, 2)
            assert member.read() == payload[-5:]
