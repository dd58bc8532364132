"""Portable arithmetic: accurate, exact where IEEE makes it so, and chunking changes no bit."""

from __future__ import annotations

import numpy as np
import pytest

from bench.anymdp import portable as pt
from bench.errors import BenchError

ULP = np.finfo(np.float64).eps


def test_exp_log_sin_cos_agree_with_numpy_to_a_few_ulp():
    rng = np.random.default_rng(0)
    x = rng.uniform(-700, 700, 20_000)
    assert np.max(np.abs(pt.exp(x) / np.exp(x) - 1)) < 4 * ULP
    y = np.exp(rng.uniform(-700, 700, 20_000))
    assert np.max(np.abs(pt.log(y) - np.log(y)) / np.maximum(1, np.abs(np.log(y)))) < 4 * ULP
    z = rng.uniform(-1000, 1000, 20_000)
    sin, cos = pt.sin_cos(z)
    assert np.max(np.abs(sin - np.sin(z))) < 4 * ULP and np.max(np.abs(cos - np.cos(z))) < 4 * ULP
    assert np.array_equal(pt.cos(z), cos)


def test_special_values():
    with np.errstate(invalid="ignore"):
        assert np.array_equal(pt.exp([0.0, -800.0, 800.0, -np.inf, np.inf]), [1.0, 0.0, np.inf, 0.0, np.inf])
        assert np.isnan(pt.exp(np.nan))
        out = pt.log([1.0, 0.0, np.inf, -1.0, np.nan])
    assert out[0] == 0.0 and out[1] == -np.inf and out[2] == np.inf and np.isnan(out[3:]).all()
    assert pt.sin_cos(0.0) == (0.0, 1.0)
    with pytest.raises(BenchError, match="sin/cos"):
        pt.sin_cos(1e7)


def test_solve_dominant_solves_and_refuses_bad_shapes(monkeypatch):
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 40):
        a = np.eye(n) - 0.99 * rng.dirichlet(np.ones(n), size=(3, n))
        b = rng.normal(size=(3, n))
        np.testing.assert_allclose(pt.solve_dominant(a, b), np.linalg.solve(a, b[..., None])[..., 0], atol=1e-11)
        np.testing.assert_array_equal(pt.solve_dominant(a[1], b[1]), pt.solve_dominant(a, b)[1])  # rows do not interact
    big = np.eye(40) - 0.99 * rng.dirichlet(np.ones(40), size=(2, 40))
    rhs = rng.normal(size=(2, 40))
    sliced = pt.solve_dominant(big, rhs)
    monkeypatch.setattr(pt, "WHOLE_ROWS_UP_TO", 64)  # whole rows: the same bits
    np.testing.assert_array_equal(pt.solve_dominant(big, rhs), sliced)
    with pytest.raises(BenchError, match="solve_dominant"):
        pt.solve_dominant(np.eye(3), np.ones(2))


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_dot_in_chunks_gives_the_same_bits(monkeypatch, axis):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(9, 6, 5, 7)), rng.normal(size=(9, 1, 1, 7))
    whole = pt.dot(a, b, axis)
    monkeypatch.setattr(pt, "DOT_CHUNK", 100)
    np.testing.assert_array_equal(pt.dot(a, b, axis), whole)
    np.testing.assert_allclose(whole, np.sum(a * b, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(
        pt.matmul(a[0], a[1].swapaxes(0, 2)[..., 0]), a[0] @ a[1].swapaxes(0, 2)[..., 0], rtol=1e-12
    )


def test_variates_are_a_function_of_the_seed_and_the_requests():
    def draws(seed):
        v = pt.Variates(np.random.default_rng(seed))
        return [
            v.standard_normal(),
            v.standard_normal(3),
            v.exponential(2.0, (2, 2)),
            v.uniform(1.0, 2.0),
            v.uniform(0, [1, 2]),
        ]

    first, again, other = draws(5), draws(5), draws(6)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert first[0] != other[0]
    assert isinstance(first[0], float) and isinstance(first[3], float) and first[4].shape == (2,)


def test_variates_have_the_right_distributions():
    v = pt.Variates(np.random.default_rng(7))
    z = v.standard_normal(200_000)
    e = v.exponential(2.0, 200_000)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01 and abs((z**4).mean() - 3) < 0.05
    assert abs(e.mean() - 2) < 0.02 and abs(e.std() - 2) < 0.03 and e.min() >= 0


def test_scalar_uniform_is_the_array_formula():
    """The Python-float path of `uniform` computes the same IEEE operations as the array path."""
    a, b = pt.Variates(np.random.default_rng(3)), pt.Variates(np.random.default_rng(3))
    scalars = [a.uniform(-0.2, 0.4) for _ in range(1000)]
    arrays = [float(b.uniform(np.float64(-0.2), np.array(0.4), size=1)[0]) for _ in range(1000)]
    assert scalars == arrays
