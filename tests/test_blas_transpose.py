"""OpenBLAS's transposition: bit for bit what NumPy's copy gives, or not used at all."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from lstmconv._fast import blas_transpose
from lstmconv._fast.copying import copy_into

_SIGNALLING_NAN = {np.float32: (np.uint32, 0x7F812345), np.float64: (np.uint64, 0x7FF0000000012345)}


def _weights(shape: tuple[int, int], dtype: type, seed: int = 0) -> np.ndarray:
    """Random values with a negative zero, infinities and the smallest subnormals mixed in."""
    values = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    for k, special in enumerate([-0.0, np.inf, -np.inf, tiny, -tiny, 1000 * tiny]):
        values.flat[(k * 7919) % values.size] = special
    return values


def test_numpys_openblas_is_bound_where_numpy_has_one() -> None:
    """Not a silent fallback: with NumPy's wheels (OpenBLAS inside), the fast path must be in use."""
    if not any(i.get("internal_api") == "openblas" for i in threadpool_info()):
        pytest.skip("NumPy is not built with OpenBLAS here")
    assert blas_transpose.available()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols, row_offset, col_offset", [(37, 53, 1, 3), (1, 9, 0, 0), (9, 1, 2, 1), (300, 1030, 0, 5)])
def test_transpose_into_is_bit_exact_on_strided_views(dtype: type, rows: int, cols: int, row_offset: int, col_offset: int) -> None:
    if not blas_transpose.available():
        pytest.skip("no OpenBLAS transposition here")
    wide = _weights((rows + 2 * row_offset + 1, cols + 2 * col_offset + 3), dtype)
    matrix = wide[row_offset : row_offset + rows, col_offset : col_offset + cols]  # rows inside wider rows
    canvas = np.full((cols + 4, rows + 5), 3, dtype=dtype)
    target = canvas[2 : 2 + cols, 1 : 1 + rows]
    assert blas_transpose.transpose_into(target, matrix)
    expected = np.full_like(canvas, 3)
    expected[2 : 2 + cols, 1 : 1 + rows] = matrix.T
    assert canvas.tobytes() == expected.tobytes()  # bits, so -0.0 and subnormals count; nothing written outside


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_signalling_nan_is_copied_by_numpy_and_keeps_its_bits(dtype: type) -> None:
    """OpenBLAS multiplies by alpha = 1, which quiets a signalling NaN: a transposition holding a NaN is copied
    again by NumPy, which keeps the bits."""
    as_int, bits = _SIGNALLING_NAN[dtype]
    matrix = _weights((512, 1024), dtype)
    matrix.view(as_int)[100, 200] = bits
    target = np.empty((1024, 512), dtype=dtype)
    expected = np.ascontiguousarray(matrix.T)
    assert expected.view(as_int)[200, 100] == bits
    if blas_transpose.available():
        assert blas_transpose.transpose_into(target, matrix)
        assert target.tobytes() == expected.tobytes()
    target[...] = 0
    copy_into(target, matrix.T)  # the conversions' way in
    assert target.view(as_int)[200, 100] == bits
    assert target.tobytes() == expected.tobytes()


def test_not_used_where_subnormals_would_be_flushed() -> None:
    """With flush-to-zero on (as a library built with -ffast-math can leave it), the copy falls back to NumPy."""
    torch = pytest.importorskip("torch")
    if not blas_transpose.available():
        pytest.skip("no OpenBLAS transposition here")
    matrix = _weights((512, 1024), np.float32)
    target = np.empty((1024, 512), dtype=np.float32)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    try:
        assert not blas_transpose.transpose_into(target, matrix)
        copy_into(target, matrix.T)
    finally:
        torch.set_flush_denormal(False)
    assert target.tobytes() == np.ascontiguousarray(matrix.T).tobytes()
    assert blas_transpose.transpose_into(target, matrix)  # modes back to normal: used again


def test_copy_into_without_openblas_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = _weights((1024, 768), np.float32, seed=3)
    fast = np.empty((768, 1024), dtype=np.float32)
    copy_into(fast, matrix.T)
    monkeypatch.setattr(blas_transpose, "_kernels", {})  # as where NumPy has MKL or Accelerate
    slow = np.empty_like(fast)
    copy_into(slow, matrix.T)
    assert fast.tobytes() == slow.tobytes() == np.ascontiguousarray(matrix.T).tobytes()


def test_shapes_and_layouts_it_cannot_take_are_refused() -> None:
    matrix = _weights((64, 32), np.float32)
    assert not blas_transpose.transpose_into(np.empty((64, 32), np.float32), matrix)  # not the transposed shape
    assert not blas_transpose.transpose_into(np.empty((32, 64), np.float64), matrix)  # dtypes differ
    every_other = _weights((64, 64), np.float32)[:, ::2]  # elements not contiguous within a row
    assert not blas_transpose.transpose_into(np.empty((32, 64), np.float32), every_other)
    assert not blas_transpose.transpose_into(np.empty((32, 64), np.float16), matrix.astype(np.float16))
    big_endian = matrix.astype(">f4")
    assert not blas_transpose.transpose_into(np.empty((32, 64), ">f4"), big_endian)
