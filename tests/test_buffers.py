"""Recycled buffers (lstmconv._fast.buffers) and the allocation-free finiteness tests (lstmconv._fast.finite)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv._fast import buffers
from lstmconv._fast.finite import all_finite, no_nan

MIB = 1 << 20


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_outside_recycling_empty_is_a_fresh_array() -> None:
    first = buffers.empty((512, 1024), np.float32)
    assert first.shape == (512, 1024) and first.dtype == np.float32 and first.flags.c_contiguous and first.flags.owndata


def test_memory_of_a_dropped_array_is_handed_out_again() -> None:
    with buffers.recycling():
        first = buffers.empty((512, 1024), np.float32)
        address = _address(first)
        del first
        second = buffers.empty((1024, 512), np.float32)  # same size, other shape
        assert _address(second) == address
        assert second.shape == (1024, 512) and second.flags.c_contiguous and second.flags.writeable


@pytest.mark.parametrize("keep", ["array", "view", "transposed", "memoryview", "row"])
def test_memory_still_referred_to_is_never_handed_out(keep: str) -> None:
    with buffers.recycling():
        first = buffers.empty((512, 1024), np.float32)
        first[...] = 1.0
        keeping = {
            "array": lambda a: a,
            "view": lambda a: a[10:20],
            "transposed": lambda a: a.T,
            "memoryview": memoryview,
            "row": lambda a: a[3],
        }
        kept = keeping[keep](first)
        del first
        second = buffers.empty((512, 1024), np.float32)
        second[...] = 2.0
        assert np.asarray(kept).min() == 1.0  # not overwritten
        del kept
        third = buffers.empty((512, 1024), np.float32)
        assert not np.shares_memory(second, third)


def test_idle_buffers_are_released_beyond_half_the_memory_in_use() -> None:
    with buffers.recycling():
        pool = buffers._pool
        assert pool is not None
        dropped = [buffers.empty(4 * MIB, np.uint8) for _ in range(4)]
        del dropped  # 16 MiB idle
        held = buffers.empty(2 * MIB, np.uint8)  # a new size: 2 MiB in use, so at most 1 MiB may stay idle
        assert sum(buffer.nbytes for buffer in pool.buffers) == held.nbytes


def test_recycling_ends_with_its_block_and_nests() -> None:
    with buffers.recycling():
        with buffers.recycling():
            pass
        assert buffers._pool is not None
    assert buffers._pool is None
    assert buffers.empty(4 * MIB, np.uint8).flags.owndata


def test_threads_never_get_the_same_memory_while_they_hold_it() -> None:
    clashes: list[int] = []

    def work(value: int) -> None:
        for _ in range(200):
            array = buffers.empty(MIB, np.uint8)
            array[...] = value
            if not (array == value).all():
                clashes.append(value)
            del array

    with buffers.recycling():
        threads = [threading.Thread(target=work, args=(value,)) for value in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert clashes == []


def _stacked_keras(path: Path, spoil: tuple[int, str, tuple[int, int], float] | None = None) -> Path:
    """A weights-only Keras 2 file of three stacked LSTMs (hidden 512: 4 MiB matrices, recycled); ``spoil`` =
    (layer, weight, position, value) puts one value into one weight."""
    import h5py

    rng = np.random.default_rng(0)
    hidden = 512
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        names = [f"lstm_{k}" for k in range(3)]
        handle.attrs["layer_names"] = [name.encode() for name in names]
        for k, name in enumerate(names):
            group = handle.create_group(name)
            weights = {"kernel:0": (hidden, 4 * hidden), "recurrent_kernel:0": (hidden, 4 * hidden), "bias:0": (4 * hidden,)}
            group.attrs["weight_names"] = [f"{name}/{key}".encode() for key in weights]
            for key, shape in weights.items():
                data = rng.standard_normal(shape).astype(np.float32) * 0.1
                if spoil is not None and spoil[0] == k and spoil[1] == key:
                    data[spoil[2]] = spoil[3]
                group.create_dataset(f"{name}/{key}", data=data)
    return path


def test_a_streaming_conversion_recycles_and_writes_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three stacked LSTM layers of 4 MiB matrices: later layers reuse earlier layers' memory, and the file is
    the one written without recycling (a reference count misread would make reuse either unsafe or never)."""
    source = _stacked_keras(tmp_path / "stacked.h5")
    taken: list[bool] = []
    real_take = buffers._Pool.take

    def counting(pool: buffers._Pool, nbytes: int) -> np.ndarray:
        known = {id(buffer) for buffer in pool.buffers}
        buffer = real_take(pool, nbytes)
        taken.append(id(buffer) in known)
        return buffer

    monkeypatch.setattr(buffers._Pool, "take", counting)
    recycled = lstmconv.convert(source, tmp_path / "recycled.safetensors", to="torch")
    assert any(taken) and not all(taken)
    monkeypatch.setattr(buffers, "recycling", contextlib.nullcontext)
    plain = lstmconv.convert(source, tmp_path / "plain.safetensors", to="torch")
    assert (tmp_path / "recycled.safetensors").read_bytes() == (tmp_path / "plain.safetensors").read_bytes()
    assert recycled.layers == plain.layers


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64])
def test_finiteness_tests_find_nan_and_infinities_anywhere(dtype: type) -> None:
    array = np.random.default_rng(1).standard_normal((300, 70)).astype(dtype)
    assert all_finite(array) and no_nan(array)
    for position in [(0, 0), (150, 35), (299, 69)]:
        for bad in (np.nan, np.inf, -np.inf):
            spoiled = array.copy()
            spoiled[position] = bad
            assert not all_finite(spoiled) and not all_finite(spoiled.T) and not all_finite(spoiled[position[0] :, position[1] :: 7])
            assert no_nan(spoiled) is (not np.isnan(bad)) and no_nan(spoiled.T) is (not np.isnan(bad))


def test_finiteness_of_large_values_whose_sum_overflows() -> None:
    big = np.full(1000, np.finfo(np.float32).max / 2, dtype=np.float32)
    assert all_finite(big)  # the sum is infinite; the exact test decides
    assert all_finite(np.full(100, 60000.0, dtype=np.float16))
    both = np.array([np.inf, -np.inf, 1.0], dtype=np.float32)
    assert not all_finite(both) and no_nan(both)  # the sum is NaN; the exact test finds none
    assert all_finite(np.arange(10)) and no_nan(np.arange(10)) and all_finite(np.array([True]))


@pytest.mark.parametrize("column, gate", [(0, "input"), (700, "forget"), (1100, "cell"), (2047, "output")])
@pytest.mark.parametrize("value, words", [(np.nan, "1 NaN and 0 infinite"), (-np.inf, "0 NaN and 1 infinite")])
def test_a_non_finite_weight_in_any_gate_of_a_recycled_array_is_refused_and_named(
    column: int, gate: str, value: float, words: str, tmp_path: Path
) -> None:
    """The scan reads the arrays the gates are views of (recycled raw bytes, here) and must still find and
    name the one gate holding the value."""
    source = _stacked_keras(tmp_path / "spoiled.h5", (1, "recurrent_kernel:0", (300, column), value))
    out = tmp_path / "out.safetensors"
    for convert in (lambda: lstmconv.convert(source, out, to="torch"), lambda: lstmconv.load(source)):
        with pytest.raises(lstmconv.LstmconvError, match=rf"layer 'lstm_1'.*{gate}/w_recurrent.*{words}"):
            convert()
    assert not out.exists()


def test_whole_arrays_are_scanned_only_where_every_element_lines_up() -> None:
    from lstmconv.pipeline.read import _whole_arrays

    matrix = np.zeros((64, 4 * 32), np.float32)
    gates = [matrix[:, k * 32 : (k + 1) * 32].T for k in range(4)]
    (whole,) = _whole_arrays(gates)  # one scan of the matrix for its four gates
    assert whole.size == matrix.size and np.shares_memory(whole, matrix)
    raw = np.zeros(4096, np.uint8)
    aligned, shifted = raw.view(np.float32), raw[2:4094].view(np.float32)
    assert _whole_arrays([aligned[256:512]])[0].size == 1024  # recycled raw bytes, read as float32
    assert _whole_arrays([shifted[256:512]])[0].size == 256  # misaligned against its owner: itself
    model = np.zeros(100_000, np.float32)
    assert _whole_arrays([model[:1000]])[0].size == 1000  # an owner much larger than the tensor: itself
    assert _whole_arrays([np.zeros(64, np.float64).view(np.float32)[3:9]])[0].size == 6  # another dtype: itself
