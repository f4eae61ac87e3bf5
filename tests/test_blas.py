"""handgrad._blas.gemm, C <- alpha A B + beta C: against NumPy in every operand layout, in both
dtypes, through NumPy's own BLAS and through the NumPy fallback, which must agree."""

import numpy as np
import pytest

from handgrad import _blas


def _operands(dtype, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((7, 5)).astype(dtype)
    B = rng.standard_normal((5, 4)).astype(dtype)
    C = rng.standard_normal((7, 4)).astype(dtype)
    return A, B, C


LAYOUTS = {
    "row-major": lambda M: M,
    "transposed view": lambda M: np.ascontiguousarray(M.T).T,
    "rows of a wider array": lambda M: np.concatenate([M, np.zeros_like(M)], axis=1)[:, :M.shape[1]],
    "every other row (no BLAS layout)": lambda M: np.repeat(M, 2, axis=0)[::2],
}


@pytest.fixture(params=["blas", "numpy"])
def path(request, monkeypatch):
    if request.param == "blas":
        if not _blas._FUNCTIONS:
            pytest.skip("NumPy's bundled OpenBLAS was not found here; the NumPy path is tested below")
    else:
        monkeypatch.setattr(_blas, "_FUNCTIONS", {})
    return request.param


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout_a", list(LAYOUTS))
@pytest.mark.parametrize("layout_b", list(LAYOUTS))
def test_gemm_matches_numpy_in_every_layout(path, dtype, layout_a, layout_b):
    A, B, C = _operands(dtype)
    a, b = LAYOUTS[layout_a](A), LAYOUTS[layout_b](B)
    np.testing.assert_array_equal(a, A)  # the layouts hold the same matrix
    expected = 0.75 * C.astype(np.float64) - 2.0 * (A.astype(np.float64) @ B.astype(np.float64))
    out = C.copy()
    assert _blas.gemm(-2.0, a, b, 0.75, out) is out
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    assert out.dtype == dtype


def test_gemm_writes_into_the_rows_of_a_wider_output():
    A, B, C = _operands(np.float64, 1)
    wide = np.zeros((7, 9))
    wide[:, :4] = C
    _blas.gemm(1.0, A, B, 1.0, wide[:, :4])
    np.testing.assert_allclose(wide[:, :4], C + A @ B, rtol=1e-13)
    assert not wide[:, 4:].any()  # nothing beyond the view is touched


def test_numpy_path_uses_the_work_array_and_allocates_no_product(monkeypatch):
    monkeypatch.setattr(_blas, "_FUNCTIONS", {})
    A, B, C = _operands(np.float64, 2)
    work = np.full_like(C, np.nan)
    out = C.copy()
    _blas.gemm(-1.0, A, B, 1.0, out, work=work)
    np.testing.assert_allclose(work, -(A @ B), rtol=1e-13)  # the scaled product went through work
    np.testing.assert_allclose(out, C - A @ B, rtol=1e-13)


def test_blas_and_numpy_paths_agree(monkeypatch):
    if not _blas._FUNCTIONS:
        pytest.skip("NumPy's bundled OpenBLAS was not found here")
    A, B, C = _operands(np.float64, 3)
    through_blas = _blas.gemm(0.5, A, B, 0.9, C.copy())
    monkeypatch.setattr(_blas, "_FUNCTIONS", {})
    through_numpy = _blas.gemm(0.5, A, B, 0.9, C.copy())
    np.testing.assert_allclose(through_blas, through_numpy, rtol=1e-13, atol=1e-14)


def test_environment_variable_turns_blas_off(monkeypatch):
    monkeypatch.setenv("HANDGRAD_BLAS", "numpy")
    assert _blas._load() == {}
    monkeypatch.delenv("HANDGRAD_BLAS")
    if _blas._library_files():
        assert set(_blas._load()) == {np.dtype(np.float32), np.dtype(np.float64)}


def test_a_library_that_computes_wrong_products_is_not_used():
    def wrong(*args):  # a "gemm" that leaves C unchanged
        return None

    assert not _blas._passes_check({np.dtype(np.float64): wrong})


def test_available_reports_the_dtypes_blas_serves(monkeypatch):
    monkeypatch.setattr(_blas, "_FUNCTIONS", {np.dtype(np.float32): object()})
    assert _blas.available("float32") and not _blas.available(np.float64)
