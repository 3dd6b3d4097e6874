"""Products by large transposed weights, done in blocks (``reference.common.matmul``), against one product.

The references that use it are checked against the real frameworks with weights large enough to take the blocked
path in ``test_reference_torch.py`` and ``test_reference_onnx.py``."""

from __future__ import annotations

import numpy as np
import pytest

from lstmconv.reference import common
from lstmconv.reference.common import matmul


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 4, 12, 16])
def test_blocked_product_equals_one_product(dtype: type, rows: int) -> None:
    rng = np.random.default_rng(rows)
    # 4133 output columns: the last block is a partial one whatever the block width
    weight = rng.standard_normal((4133, 1024)).astype(dtype)
    a = rng.standard_normal((rows, 1024)).astype(dtype)
    assert weight.nbytes >= common._BLOCKED_FROM_BYTES
    got = matmul(a, weight.T)
    exact = a.astype(np.float64) @ weight.T.astype(np.float64)
    assert got.shape == exact.shape and got.dtype == dtype
    # float32 products over 1024 terms of unit variance: rounding of a few 1e-6 relative to the sum's scale
    np.testing.assert_allclose(got, exact, rtol=0, atol=2e-3 if dtype == np.float32 else 1e-9)
    np.testing.assert_allclose(got, a @ weight.T, rtol=0, atol=2e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize(
    ("rows", "shape", "transposed"),
    [
        (17, (4096, 1024), True),  # many rows: one product is faster
        (4, (512, 512), True),  # small weight
        (4, (1024, 4096), False),  # not a transposed view (Keras's kernel)
    ],
)
def test_one_product_where_blocks_do_not_pay(rows: int, shape: tuple[int, int], transposed: bool) -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal(shape).astype(np.float32)
    right = weight.T if transposed else weight
    a = rng.standard_normal((rows, right.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(matmul(a, right), a @ right)  # the plain product, bit for bit
