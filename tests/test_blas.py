"""handgrad._blas.axpy, y <- alpha x + y (the SGD step): BLAS and NumPy paths agree to rounding, in both dtypes,
and training with either ends at the same weights to rounding."""

import numpy as np
import pytest

import handgrad as hg
from handgrad import _blas


@pytest.fixture(params=["blas", "numpy"])
def path(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(_blas, "_FUNCTIONS", {})
    elif not _blas._FUNCTIONS:
        pytest.skip("NumPy's bundled OpenBLAS was not found here")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_computes_y_plus_alpha_x_in_place(path, dtype):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=1000).astype(dtype), rng.normal(size=1000).astype(dtype)
    expected = y.astype(np.float64) - 0.3 * x.astype(np.float64)
    out = _blas.axpy(-0.3, x, y, np.empty_like(y))
    assert out is y and y.dtype == dtype
    tolerance = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance)


def test_paths_agree_to_rounding_per_entry():
    if not _blas._FUNCTIONS:
        pytest.skip("NumPy's bundled OpenBLAS was not found here")
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        x, y = rng.normal(size=5000).astype(dtype), rng.normal(size=5000).astype(dtype)
        through_blas = _blas.axpy(-0.01, x, y.copy())
        through_numpy = y - dtype(0.01) * x
        # two roundings against one: at most an ulp of the largest term in the sum
        spacing = np.spacing(np.maximum(np.abs(y), np.abs(dtype(0.01) * x)).astype(dtype))
        assert (np.abs(through_blas - through_numpy) <= 2 * spacing).all()


def test_views_and_mixed_dtypes_take_the_numpy_path():
    x = np.arange(10.0)
    y = np.ones(20)[::2]  # not contiguous
    _blas.axpy(2.0, x, y)
    np.testing.assert_array_equal(y, 1 + 2 * x)


def test_environment_variable_turns_blas_off(monkeypatch):
    monkeypatch.setenv("HANDGRAD_BLAS", "numpy")
    assert _blas._load() == {}
    monkeypatch.delenv("HANDGRAD_BLAS")
    if _blas._library_files():
        assert set(_blas._load()) == {np.dtype(np.float32), np.dtype(np.float64)}


def test_a_library_that_computes_wrong_results_is_rejected():
    def wrong(n, alpha, x, incx, y, incy):
        pass  # leaves y unchanged

    assert not _blas._passes_check({np.dtype(np.float64): wrong})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sgd_training_through_blas_equals_training_through_numpy(dtype, monkeypatch):
    X = np.random.default_rng(2).normal(size=(60, 5))
    y = (X[:, 0] > 0).astype(int)

    def train():
        net = hg.MLP(5, [(8, "relu"), (2, "softmax")], seed=0, dtype=dtype, l2=0.01)
        net.fit(X, y, epochs=3, batch_size=8, learning_rate=0.2, verbose=False)
        return net.params.copy()

    through_blas = train()
    monkeypatch.setattr(_blas, "_FUNCTIONS", {})
    through_numpy = train()
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(through_blas, through_numpy, rtol=tolerance, atol=tolerance)
