"""The fast order statistics, small linear systems and 2-D index search of the measurement
give numpy's values."""

from __future__ import annotations

import numpy as np
import pytest

from nwwatch.measure import smallmath
from nwwatch.measure.edges import nonzero_2d


@pytest.mark.parametrize("n", [1, 2, 3, 10, 151, 400])
def test_median_and_percentile_equal_numpy(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    x[: n // 3] = 0.5  # ties
    assert smallmath.median(x) == np.median(x)
    for q in (0, 2, 5, 50, 95, 98, 100):
        assert smallmath.percentile(x, q) == pytest.approx(np.percentile(x, q), abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_solve_inverse_and_lstsq_equal_numpy(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        m = rng.standard_normal((n, n))
        m = m @ m.T + 0.1 * np.eye(n)
        b = rng.standard_normal(n)
        np.testing.assert_allclose(smallmath.solve(m, b), np.linalg.solve(m, b), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(smallmath.inverse(m), np.linalg.inv(m), rtol=1e-9,
                                   atol=1e-12)
    design = np.column_stack([np.ones(40), rng.standard_normal((40, n - 1))]) if n > 1 \
        else np.ones((40, 1))
    y = rng.standard_normal(40)
    np.testing.assert_allclose(smallmath.lstsq(design, y),
                               np.linalg.lstsq(design, y, rcond=None)[0], rtol=1e-9, atol=1e-12)


def test_singular_systems_raise_like_numpy():
    with pytest.raises(np.linalg.LinAlgError):
        smallmath.solve(np.array([[1.0, 2.0], [2.0, 4.0]]), np.ones(2))
    with pytest.raises(np.linalg.LinAlgError):
        smallmath.inverse(np.zeros((3, 3)))


def test_symmetric_eig2_equals_eigh():
    rng = np.random.default_rng(0)
    cases = [np.diag([2.0, 2.0]), np.diag([3.0, 1.0]), np.array([[1.0, 0.0], [0.0, 5.0]])]
    cases += [(lambda m: m @ m.T)(rng.standard_normal((2, 2))) for _ in range(200)]
    for m in cases:
        low, high, v_low, v_high = smallmath.symmetric_eig2(m)
        evals, _ = np.linalg.eigh(m)
        assert (low, high) == pytest.approx(tuple(evals), abs=1e-12)
        np.testing.assert_allclose(m @ v_low, low * v_low, atol=1e-12)
        np.testing.assert_allclose(m @ v_high, high * v_high, atol=1e-12)
        assert np.hypot(*v_low) == pytest.approx(1.0) and abs(v_low @ v_high) < 1e-12
        normal = smallmath.smallest_eigenvector(m)
        assert abs(abs(normal @ v_low) - 1.0) < 1e-12


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (0, 5), (40, 33)])
def test_nonzero_2d_equals_np_nonzero(shape):
    flags = np.random.default_rng(1).random(shape) < 0.3
    rows, cols = nonzero_2d(flags)
    want = np.nonzero(flags)
    np.testing.assert_array_equal(rows, want[0])
    np.testing.assert_array_equal(cols, want[1])
