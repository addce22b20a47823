"""app/smoothing.py on known series: TensorBoard's debiased EMA, and the cache that smooths only what was appended."""

from __future__ import annotations

import numpy as np
import pytest

from kerascope.app.smoothing import EmaCache, debias_length, ema

# Equal to 12 digits, or within 1e-14 where a smoothed value of these unit-scale series crosses zero (no summation
# order keeps relative precision there).
CLOSE = {"rtol": 1e-12, "atol": 1e-14}


def reference_ema(y, weight: float) -> list[float]:
    """TensorBoard's loop, point by point."""
    last, out = 0.0, []
    for i, value in enumerate(y):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight ** (i + 1)))
    return out


@pytest.mark.parametrize(("weight", "length"), [(0.9, 372), (0.6, 77), (0.5, 57), (0.99, 3895)])
def test_debias_length_is_where_the_debias_factor_reaches_one(weight, length):
    assert debias_length(weight) == length
    assert 1.0 - weight**length == 1.0


def test_ema_of_known_values():
    np.testing.assert_allclose(ema(np.array([1.0, 3.0, 2.0]), 0.5), [1.0, 7 / 3, 15 / 7], rtol=1e-15)
    constant = np.full(500, 4.0)
    np.testing.assert_allclose(ema(constant, 0.9), constant, rtol=1e-12)  # debiased: no pull towards 0
    empty = np.array([])
    assert ema(empty, 0.9) is empty
    y = np.array([1.0, 2.0])
    assert ema(y, 0.0) is y and ema(y, -0.5) is y


def test_the_cache_returns_the_same_smoothing_as_ema_for_every_growth():
    rng = np.random.default_rng(3)
    y = rng.normal(size=1000)
    cache = EmaCache()
    for end in (1, 2, 76, 77, 78, 300, 1000):  # across the debiased head (77 points for 0.6) and past it
        np.testing.assert_allclose(cache.smooth("k", y[:end], 0.6), reference_ema(y[:end], 0.6), **CLOSE)


def test_the_cache_keeps_the_result_of_an_unchanged_series_and_redoes_a_changed_one():
    y = np.array([1.0, 3.0, 2.0, 5.0])
    cache = EmaCache()
    first = cache.smooth("k", y, 0.5)
    assert cache.smooth("k", y.copy(), 0.5) is first  # same input: nothing recomputed
    for changed in (np.array([9.0, 3.0, 2.0, 5.0]),  # first point differs
                    np.array([1.0, 3.0, 2.0, 6.0, 7.0]),  # last cached point differs
                    np.array([1.0, 3.0])):  # shorter: a rewritten file
        np.testing.assert_allclose(cache.smooth("k", changed, 0.5), reference_ema(changed, 0.5), **CLOSE)
        cache.smooth("k", y, 0.5)
    other = cache.smooth("k", y, 0.9)  # weights are cached apart
    np.testing.assert_allclose(other, reference_ema(y, 0.9), **CLOSE)
    assert cache.smooth("k", y, 0.5) is not other
    np.testing.assert_allclose(cache.smooth("k2", y * 2, 0.5), reference_ema(y * 2, 0.5), **CLOSE)
    z = np.array([])
    assert cache.smooth("k", z, 0.5) is z and cache.smooth("k", y, 0.0) is y


def test_the_cache_forgets_the_least_recently_used_series_beyond_its_size():
    y = np.array([1.0, 2.0, 3.0])
    cache = EmaCache(max_entries=2)
    a = cache.smooth("a", y, 0.5)
    b = cache.smooth("b", y, 0.5)
    assert cache.smooth("a", y, 0.5) is a  # "a" is now the most recent
    cache.smooth("c", y, 0.5)  # "b" goes
    assert cache.smooth("a", y, 0.5) is a
    assert cache.smooth("b", y, 0.5) is not b
    default = EmaCache()
    results = [default.smooth(f"s{index}", y, 0.5) for index in range(64)]
    assert default.smooth("s0", y, 0.5) is results[0]  # 64 kept; "s0" is now the most recent
    default.smooth("s64", y, 0.5)  # "s1" goes
    assert default.smooth("s0", y, 0.5) is results[0]
    assert default.smooth("s1", y, 0.5) is not results[1]
