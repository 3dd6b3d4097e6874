"""The streamed paths (a file read one layer at a time, then written by the same layer-by-layer writers as a
loaded model): same files, reports and refusals as loading the file whole, which the framework tests check;
and their building blocks (the run-ahead thread, the parallel transposition, the safetensors and ONNX
streams) under success and failure."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import lstmconv
from lstmconv.pipeline.convert import save_keras, save_onnx, save_torch
from lstmconv._fast.copying import copy_into
from lstmconv.errors import VerificationError
from lstmconv.io.onnx_stream import OnnxStream, count_graph_fields
from lstmconv.io.safetensors_stream import SafetensorsStream
from lstmconv.pipeline.load import load_file
from lstmconv._fast.run_ahead import run_ahead
from lstmconv.pipeline.convert import convert
from tests.conftest import DATA

KERAS2 = sorted((DATA / "keras2").glob("*.h5"))


def _tensors(path: Path) -> tuple[dict[str, bytes], dict[str, str] | None]:
    with safe_open(str(path), framework="numpy") as handle:
        return {key: handle.get_tensor(key).tobytes() for key in handle.keys()}, handle.metadata()  # noqa: SIM118


@pytest.mark.parametrize("source", KERAS2, ids=lambda p: p.stem)
def test_streamed_file_and_report_equal_the_in_memory_path(source: Path, tmp_path: Path) -> None:
    streamed_path, whole_path = tmp_path / "streamed.safetensors", tmp_path / "whole.safetensors"
    try:
        whole = save_torch(load_file(source), whole_path, skip_unsupported=True)
    except lstmconv.LstmconvError as refused:
        with pytest.raises(type(refused)) as caught:
            convert(source, streamed_path, to="torch", skip_unsupported=True)
        assert str(caught.value) == str(refused)
        assert not streamed_path.exists()
        return
    streamed = convert(source, streamed_path, to="torch", skip_unsupported=True)
    assert _tensors(streamed_path) == _tensors(whole_path)
    assert [(r.name, r.kind, r.became, r.max_abs_error, r.notes) for r in streamed.layers] == [
        (r.name, r.kind, r.became, r.max_abs_error, r.notes) for r in whole.layers
    ]
    assert streamed.skipped == whole.skipped


def test_run_ahead_keeps_order_and_holds_two_items_at_most() -> None:
    finished = 0  # items the caller is done with
    alive: list[int] = []

    def items() -> Iterator[int]:
        for index in range(12):
            alive.append(index + 1 - finished)  # this one, and those the caller has not finished with
            yield index

    got = []
    for item in run_ahead(items()):
        time.sleep(0.01)  # a slow caller: a producer not held back would run ahead
        got.append(item)
        finished += 1
    assert got == list(range(12))
    assert max(alive) == 2


def test_run_ahead_raises_the_producers_error_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("broken layer")

    got = []
    with pytest.raises(ValueError, match="broken layer"):
        for item in run_ahead(items()):
            got.append(item)
    assert got == [1, 2]


@pytest.mark.parametrize("stop", [ZeroDivisionError, KeyboardInterrupt])
def test_run_ahead_stops_and_closes_the_producer_when_the_caller_fails(stop: type[BaseException]) -> None:
    started: list[int] = []
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            for index in range(100):
                started.append(index)
                yield index
        finally:
            closed.set()

    threads_before = threading.active_count()
    with pytest.raises(stop):
        for item in run_ahead(items()):
            if item == 3:
                raise stop()
    assert closed.is_set()
    assert max(started) <= 4  # the one being handled and at most one computed ahead
    assert threading.active_count() == threads_before


@pytest.mark.parametrize(
    "shape, dtype",
    [((3000, 1111), np.float32), ((257, 4100), np.float64), ((4096, 2048), np.float32), ((100, 70), np.float16)],
)
def test_copy_into_equals_a_plain_copy(shape: tuple[int, int], dtype: type) -> None:
    source = np.random.default_rng(0).standard_normal(shape[::-1]).astype(dtype).T  # a transposed view
    target = np.empty(shape, dtype=dtype)
    copy_into(target, source)
    assert target.tobytes() == np.ascontiguousarray(source).tobytes()


def test_stream_detects_a_tensor_that_does_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SafetensorsStream(tmp_path / "x.safetensors", 1024)
    original = stream.file.handle.write

    def corrupting(data: memoryview) -> int:
        return original(bytes(data)[:-1] + b"\x00")  # the last byte wrong

    monkeypatch.setattr(stream.file.handle, "write", corrupting)
    with pytest.raises(VerificationError, match="read back"):
        stream.add("w", np.full((64, 64), 7, dtype=np.float32))
    stream.abort()


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 16, 23, 1 << 20 | 5])
def test_read_back_comparison_finds_one_changed_byte_anywhere(length: int) -> None:
    from lstmconv.io.checked_file import _same_bytes

    written = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
    on_disk = written.copy()
    assert _same_bytes(on_disk, written)
    positions = range(length) if length < 100 else [0, 7, 8, length // 2, length - 6, length - 5, length - 1]
    for position in positions:
        on_disk[position] ^= 1
        assert not _same_bytes(on_disk, written), position
        on_disk[position] ^= 1
    if length > 9:  # views starting at any byte, as the windows of a file do
        assert _same_bytes(on_disk[3:], written[3:]) and not _same_bytes(on_disk[3:], written[2:-1])


# 6 tensors of ~85 kB: a flush may start after each, after every 2-3, or never (close() fsyncs)
@pytest.mark.parametrize("flush_every, fewest, most", [(1, 1, 6), (200_000, 1, 3), (1 << 30, 0, 0)])
def test_stream_writes_what_safetensors_reads_with_background_flushes(
    flush_every: int, fewest: int, most: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmconv.io import checked_file

    flushes: list[int] = []
    monkeypatch.setattr(checked_file, "_FLUSH_BEHIND_BYTES", flush_every)
    monkeypatch.setattr(checked_file, "_datasync", lambda fd: flushes.append(fd) or os.fdatasync(fd))
    path = tmp_path / "x.safetensors"
    arrays = {f"t{k}": np.random.default_rng(k).standard_normal((300, 70 + k)).astype(np.float32) for k in range(6)}
    stream = SafetensorsStream(path, 64)  # too small on purpose: the header must grow once
    for key, array in arrays.items():
        stream.add(key, array)
        stream.flush_behind()
    stream.finish({"note": "x"})
    back, metadata = _tensors(path)
    assert back == {key: array.tobytes() for key, array in arrays.items()}
    assert metadata == {"note": "x"}
    assert fewest <= len(flushes) <= most


@pytest.mark.parametrize("source", KERAS2, ids=lambda p: p.stem)
def test_streamed_onnx_equals_the_in_memory_path_and_passes_the_checker_from_the_file(source: Path, tmp_path: Path) -> None:
    import onnx

    streamed_path, whole_path = tmp_path / "streamed.onnx", tmp_path / "whole.onnx"
    try:
        whole = save_onnx(load_file(source), whole_path, per_layer=True, skip_unsupported=True)
    except lstmconv.LstmconvError as refused:
        with pytest.raises(type(refused)) as caught:
            convert(source, streamed_path, to="onnx", per_layer=True, skip_unsupported=True)
        assert str(caught.value) == str(refused)
        assert not streamed_path.exists()
        return
    streamed = convert(source, streamed_path, to="onnx", per_layer=True, skip_unsupported=True)
    assert streamed_path.read_bytes() == whole_path.read_bytes()
    assert streamed.layers == whole.layers
    onnx.checker.check_model(str(streamed_path), full_check=True)  # the real file, weights and all
    model = onnx.load(str(streamed_path))
    used = {name for node in model.graph.node for name in node.input}
    assert {t.name for t in model.graph.initializer} <= used


def test_onnx_stream_writes_little_endian_raw_data_that_onnx_reads(tmp_path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    arrays = {"big_endian": np.arange(600, dtype=">f4").reshape(20, 30), "ints": np.arange(300, dtype=np.int64)}
    stream = OnnxStream(tmp_path / "m.onnx")
    for name, array in arrays.items():
        stream.add(name, array)
    node = helper.make_node("Identity", ["big_endian"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [20, 30])])
    stream.finish(helper.make_model(graph))
    assert count_graph_fields(tmp_path / "m.onnx") == 3
    back = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    assert set(back) == set(arrays)
    for name, array in arrays.items():
        assert np.array_equal(back[name], array) and back[name].dtype == array.dtype.newbyteorder("=")


def test_a_cut_onnx_stream_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    stream = OnnxStream(path)
    stream.add("w", np.ones((64, 64), dtype=np.float32))
    stream.abort()
    assert count_graph_fields(path) == 1
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(VerificationError, match="past the end"):
        count_graph_fields(path)


def test_a_model_beyond_the_protobuf_limit_is_refused_and_nothing_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmconv.io.onnx_stream as onnx_stream

    monkeypatch.setattr(onnx_stream, "PROTOBUF_LIMIT", 2_000)
    out = tmp_path / "big.onnx"
    with pytest.raises(lstmconv.errors.UnsupportedFeatureError, match="2 GiB") as caught:
        lstmconv.convert(DATA / "keras2" / "stacked_lstm.h5", out, to="onnx")
    assert "safetensors" in (caught.value.hint or "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", KERAS2, ids=lambda p: p.stem)
def test_inspect_reads_keras_files_layer_by_layer_with_the_same_result(source: Path) -> None:
    from lstmconv.pipeline.read import describe_file

    loaded = load_file(source)
    described, skipped = describe_file(source)
    assert described == [layer.meta() for layer in loaded.model.layers]
    assert skipped == list(loaded.model.skipped)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_run_ahead_uses_one_blas_thread_and_restores_the_setting() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2, user_api="blas"):  # a setting that one thread differs from, on any machine
        before = _blas_threads()
        assert before and all(threads == 2 for threads in before)  # numpy's BLAS is loaded: not vacuous
        inside = [_blas_threads() for _ in run_ahead(iter(range(2)))]
        assert all(threads == [1] * len(before) for threads in inside)
        assert _blas_threads() == before


def test_blas_is_limited_only_for_sources_big_enough_to_gain(tmp_path: Path) -> None:
    from lstmconv._fast.run_ahead import one_blas_thread_for

    small, big = tmp_path / "small.h5", tmp_path / "big.h5"
    small.write_bytes(b"\0" * 1024)
    with big.open("wb") as handle:
        handle.truncate(64 * 2**20)
    assert not one_blas_thread_for(small)
    assert one_blas_thread_for(big)
    assert one_blas_thread_for("<state dict>")  # not a file: limited, to be safe


def test_run_ahead_can_leave_blas_alone() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        assert before and all(threads == 2 for threads in before)
        assert [_blas_threads() for _ in run_ahead(iter(range(2)), one_blas_thread=False)] == [before, before]


def torch_modules() -> dict[str, object]:
    """torch.nn modules whose state dicts the torch-source tests save (seeded)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return {
        "lstm_bidirectional_2": torch.nn.Sequential(torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)),
        "gru_and_linear": torch.nn.ModuleDict({"gru": torch.nn.GRU(4, 6), "head": torch.nn.Linear(6, 2)}),
        "lstm_projection": torch.nn.ModuleDict({"lstm": torch.nn.LSTM(3, 6, proj_size=2)}),
    }


def _torch_safetensors_sources(folder: Path) -> list[Path]:
    """State dicts as torch writes them (no lstmconv metadata) and files lstmconv wrote (with it)."""
    pytest.importorskip("torch")
    from safetensors.torch import save_file

    paths = []
    for name, module in torch_modules().items():
        path = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
        paths.append(path)
    for keras in KERAS2[:6]:
        path = folder / f"lstmconv_{keras.stem}.safetensors"
        try:
            lstmconv.convert(keras, path, skip_unsupported=True)
        except lstmconv.LstmconvError:
            continue
        paths.append(path)
    return paths


def _keras_arrays(path: Path) -> dict[str, list[bytes]]:
    from lstmconv.sources.keras_files import open_keras

    with open_keras(path) as (_, entries, _wiring):
        return {entry.name: [a.tobytes() for a in entry.load_arrays()] for entry in entries if entry.array_names}


def _streams_like_the_in_memory_paths(source: Path, folder: Path) -> int:
    """Convert ``source`` to torch, ONNX and Keras both ways (read layer by layer, and loaded whole): same files (torch:
    same tensors and metadata; the streamed header's padding is reserved before the layers are known), same
    reports, same refusals. Returns how many conversions were compared (not refused)."""
    compared = 0
    targets = ((save_torch, "torch", ".safetensors"), (save_onnx, "onnx", ".onnx"), (save_keras, "keras", ".weights.h5"))
    for save, to, suffix in targets:
        whole_path, streamed_path = folder / f"whole{suffix}", folder / f"streamed{suffix}"
        try:
            whole = save(load_file(source), whole_path, force=True, skip_unsupported=True)
        except lstmconv.LstmconvError as refused:
            with pytest.raises(type(refused)) as caught:
                convert(source, streamed_path, to=to, force=True, skip_unsupported=True)
            assert str(caught.value) == str(refused), source.name
            assert not streamed_path.exists()
            continue
        streamed = convert(source, streamed_path, to=to, force=True, skip_unsupported=True)
        if suffix == ".onnx":
            assert streamed_path.read_bytes() == whole_path.read_bytes(), source.name
        elif suffix == ".weights.h5":
            assert _keras_arrays(streamed_path) == _keras_arrays(whole_path), source.name
        else:
            assert _tensors(streamed_path) == _tensors(whole_path), source.name
        assert streamed.layers == whole.layers, source.name
        assert streamed.skipped == whole.skipped, source.name
        streamed_path.unlink()
        compared += 1
    return compared


def test_torch_safetensors_sources_stream_like_the_in_memory_paths(tmp_path: Path) -> None:
    sources = _torch_safetensors_sources(tmp_path)
    assert len(sources) >= 6
    assert sum(_streams_like_the_in_memory_paths(source, tmp_path) for source in sources) >= 8


def assert_read_one_module_at_a_time(source: Path, opener: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``source`` (the ``gru_and_linear`` state dict: a GRU, then a Linear) opened for streaming reads no tensor,
    then the GRU's four, then the Linear's two. ``opener``: the ``torch_files`` function that opens it."""
    from lstmconv.io import torch_files
    from lstmconv.pipeline.read import open_layers

    loaded: list[str] = []
    real = getattr(torch_files, opener)

    @contextlib.contextmanager
    def counting(path: Path, *rest: object):  # type: ignore[no-untyped-def]
        with real(path, *rest) as (stand_ins, metadata_or_notes, load):
            assert all(array.base is not None and array.base.size == 1 for array in stand_ins.values())  # no data read
            yield stand_ins, metadata_or_notes, lambda key: (loaded.append(key), load(key))[1]

    monkeypatch.setattr(torch_files, opener, counting)
    with open_layers(source) as opened:
        assert loaded == []
        first, _ = next(opened.layers)
        assert sorted(loaded) == sorted(f"{first.name}.{k}" for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
        second, _ = next(opened.layers)
        assert sorted(loaded[4:]) == [f"{second.name}.bias", f"{second.name}.weight"]


def test_a_torch_safetensors_source_is_read_one_module_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (source,) = [p for p in _torch_safetensors_sources(tmp_path) if p.stem == "gru_and_linear"]
    assert_read_one_module_at_a_time(source, "open_safetensors_state", monkeypatch)


def test_verify_reads_streamable_files_one_layer_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmconv.pipeline.verify as verify_files

    source = DATA / "keras2" / "stacked_lstm.h5"
    for target, suffix in (("onnx", ".onnx"), ("torch", ".safetensors")):
        lstmconv.convert(source, tmp_path / f"m{suffix}", to=target, per_layer=True)

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("a whole model was loaded")

    monkeypatch.setattr("lstmconv.pipeline.load.collect", whole)
    for other in (tmp_path / "m.onnx", tmp_path / "m.safetensors"):
        results = verify_files.compare_files(source, other)
        assert results and all(r.same for r in results if r.max_abs_error is not None), other.name
    different = verify_files.compare_files(source, DATA / "keras2" / "weights_only_stacked.h5")
    assert not all(r.same for r in different)


def test_canonical_sources_stream_like_the_in_memory_paths(tmp_path: Path) -> None:
    compared = 0
    for keras in KERAS2:
        source = tmp_path / f"{keras.stem}.safetensors"
        try:
            lstmconv.convert(keras, source, to="canonical")
        except lstmconv.LstmconvError:
            continue
        compared += _streams_like_the_in_memory_paths(source, tmp_path)
    assert compared >= 20


def test_a_canonical_source_is_read_one_layer_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmconv.io import torch_files
    from lstmconv.pipeline.read import open_layers

    source = tmp_path / "stacked.safetensors"
    lstmconv.convert(DATA / "keras2" / "stacked_lstm.h5", source, to="canonical")
    loaded: list[str] = []
    real = torch_files.open_safetensors_state

    @contextlib.contextmanager
    def counting(path: Path):  # type: ignore[no-untyped-def]
        with real(path) as (stand_ins, header, load):
            yield stand_ins, header, lambda key: (loaded.append(key), load(key))[1]

    monkeypatch.setattr(torch_files, "open_safetensors_state", counting)
    with open_layers(source) as opened:
        assert loaded == []
        first, _ = next(opened.layers)
        assert loaded and all(key.startswith(f"{first.name}/") for key in loaded)
        count = len(loaded)
        second, _ = next(opened.layers)
        assert len(loaded) > count and all(key.startswith(f"{second.name}/") for key in loaded[count:])


def test_safetensors_tensors_read_one_at_a_time_equal_what_the_safetensors_library_reads(tmp_path: Path) -> None:
    """open_safetensors_state reads tensors itself (not through the library's map of the file): compare every
    tensor, dtype and shape with safetensors.numpy.load_file on torch-written and lstmconv-written files."""
    from safetensors.numpy import load_file as library_load

    from lstmconv.io.torch_files import open_safetensors_state

    sources = _torch_safetensors_sources(tmp_path)
    canonical = tmp_path / "canonical.safetensors"
    lstmconv.convert(DATA / "keras2" / "stacked_lstm.h5", canonical, to="canonical")
    compared = 0
    for source in [*sources, canonical]:
        expected = library_load(str(source))
        with open_safetensors_state(source) as (stand_ins, _header, load):
            assert set(stand_ins) == set(expected), source.name
            for key, array in expected.items():
                back = load(key)
                assert back.dtype == array.dtype and back.shape == array.shape, (source.name, key)
                assert back.tobytes() == array.tobytes(), (source.name, key)
                assert stand_ins[key].shape == array.shape and stand_ins[key].dtype == array.dtype
                compared += 1
    assert compared > 50
