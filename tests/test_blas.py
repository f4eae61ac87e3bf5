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


# ---------------------------------------------------------------- Gemm: a prepared call site
def _expected(alpha, A, B, beta, C):
    return beta * C.astype(np.float64) + alpha * (A.astype(np.float64) @ B.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_prepared_gemm_follows_its_operands_from_call_to_call(path, dtype):
    # The same call site sees: the same arrays with new values, new arrays of the same layout (the
    # next batch's rows of a data set), a transposed view made anew each call, and new alpha and beta.
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    rng = np.random.default_rng(4)
    data = rng.standard_normal((20, 5)).astype(dtype)
    B = rng.standard_normal((5, 3)).astype(dtype)
    C = rng.standard_normal((4, 3)).astype(dtype)
    call = _blas.Gemm()
    for step, (alpha, beta) in enumerate([(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25), (1.0, 1.0), (-1.0, 0.9)]):
        A = data[4 * step:4 * step + 4]  # a new view object each time, same shape and strides
        B += 0.1  # the same object, new values
        before = C.copy()
        assert call(alpha, A, B, beta, C) is C
        np.testing.assert_allclose(C, _expected(alpha, A, B, beta, before), rtol=tolerance, atol=tolerance)
    outputs = [rng.standard_normal((4, 3)).astype(dtype) for _ in range(2)]
    for step in range(4):  # two outputs of one layout, in turn: each call must write the one it is given
        out, other = outputs[step % 2], outputs[1 - step % 2]
        before, untouched = out.copy(), other.copy()
        call(1.0, data[:4], B, 1.0, out)
        np.testing.assert_allclose(out, _expected(1.0, data[:4], B, 1.0, before), rtol=tolerance, atol=tolerance)
        np.testing.assert_array_equal(other, untouched)
    G = rng.standard_normal((5, 3)).astype(dtype)
    for step in range(3):  # the weight update's form: W <- beta W - X^T dZ, with X.T a new object each call
        X = data[4 * step:4 * step + 4]
        before = G.copy()
        call(-1.0, X.T, C, 0.5, G)
        np.testing.assert_allclose(G, _expected(-1.0, X.T, C, 0.5, before), rtol=tolerance, atol=tolerance)


def test_prepared_gemm_prepares_again_when_shapes_or_layouts_change(path):
    rng = np.random.default_rng(5)
    call = _blas.Gemm()
    for m, k, n in [(4, 5, 3), (6, 5, 3), (6, 2, 7), (1, 1, 1)]:
        A, B, C = (rng.standard_normal(shape) for shape in ((m, k), (k, n), (m, n)))
        for a, b in [(A, B), (np.asfortranarray(A), B), (A, np.repeat(B, 2, axis=1)[:, ::2])]:
            before = C.copy()
            call(1.5, a, b, -0.5, C)
            np.testing.assert_allclose(C, _expected(1.5, A, B, -0.5, before), rtol=1e-12, atol=1e-12)


def test_prepared_gemm_with_mixed_dtypes_goes_to_numpy_and_matches():
    A, B, C = _operands(np.float64, 6)
    call = _blas.Gemm()
    out = C.astype(np.float32)
    call(1.0, A.astype(np.float32), B.astype(np.float32), 1.0, out)
    np.testing.assert_allclose(out, C + A @ B, rtol=1e-5, atol=1e-5)
    call(1.0, A, B.astype(np.float32), 1.0, out)  # float64 operand, float32 output: NumPy's rules (cast on add)
    np.testing.assert_allclose(out, C + 2 * (A @ B), rtol=1e-5, atol=1e-5)


def test_prepared_gemm_refuses_a_read_only_output_like_numpy(path):
    A, B, C = _operands(np.float64, 7)
    call = _blas.Gemm()
    call(1.0, A, B, 1.0, C)  # prepared with a writable C
    C.flags.writeable = False
    frozen = C.copy()
    with pytest.raises(ValueError, match="read-only"):
        call(1.0, A, B, 1.0, C)
    np.testing.assert_array_equal(C, frozen)


def test_prepared_gemm_copies_and_pickles_unprepared():
    import copy
    import pickle

    A, B, C = _operands(np.float64, 8)
    call = _blas.Gemm()
    call(1.0, A, B, 0.0, C.copy())
    for clone in (copy.deepcopy(call), pickle.loads(pickle.dumps(call))):
        out = C.copy()
        clone(1.0, A, B, 1.0, out)
        np.testing.assert_allclose(out, C + A @ B, rtol=1e-12)
