"""Paired comparisons of two rows on the same images, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pancap_retrieval.errors import RetrievalError
from pancap_retrieval.retrieval.paired import (
    aligned_hits,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_comparison,
)


def minlike_p(x: int, n: int) -> float:
    """The two-sided exact binomial p-value by its definition: the probability, under Binomial(n, 1/2), of every
    outcome no more likely than the one observed (float arithmetic, outcome by outcome)."""
    pmf = [math.comb(n, i) * 0.5**n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[x] * (1 + 1e-9)))


@pytest.mark.parametrize("a_only,b_only", [(0, 1), (3, 12), (12, 3), (25, 25), (0, 30), (140, 170), (7, 1)])
def test_mcnemar_matches_the_binomial_definition_and_scipy(a_only, b_only):
    from scipy.stats import binomtest

    n = a_only + b_only
    assert mcnemar_exact(a_only, b_only) == pytest.approx(minlike_p(a_only, n), rel=1e-9, abs=1e-15)
    assert mcnemar_exact(a_only, b_only) == pytest.approx(binomtest(a_only, n, 0.5).pvalue, rel=1e-9)


def test_comparison_counts_hits_per_image_from_ranks_keyed_by_image():
    rng = np.random.default_rng(3)
    ids = [f"img{i:04d}" for i in range(500)]
    ranks_a = rng.geometric(0.55, size=500)
    ranks_b = np.where(rng.random(500) < 0.8, ranks_a, rng.geometric(0.45, size=500))  # mostly the same
    a = dict(zip(ids, ranks_a.tolist()))
    b = dict(zip(reversed(ids), ranks_b[::-1].tolist()))  # another order: aligned by id
    out = paired_comparison(a, b, n_bootstrap=2000, seed=7)
    hits_a, hits_b = ranks_a == 1, ranks_b == 1
    a_only, b_only = int((hits_a & ~hits_b).sum()), int((~hits_a & hits_b).sum())
    assert (out["n"], out["a_only"], out["b_only"]) == (500, a_only, b_only)
    assert out["R@1_a"] == pytest.approx(hits_a.mean(), abs=1e-6)
    assert out["difference"] == pytest.approx(hits_a.mean() - hits_b.mean(), abs=1e-6)
    assert out["mcnemar_p"] == pytest.approx(minlike_p(a_only, a_only + b_only), rel=1e-9)
    assert out == paired_comparison(a, b, n_bootstrap=2000, seed=7)  # seeded
    assert paired_comparison(a, b, k=5, n_bootstrap=10)["R@5_a"] == pytest.approx((ranks_a <= 5).mean(), abs=1e-6)


def test_paired_interval_matches_the_normal_approximation_and_is_narrower_than_unpaired():
    """For the mean of per-image differences d, the bootstrap interval is close to mean(d) +- 1.96 sd(d) / sqrt(n);
    resampling the images jointly keeps the correlation of the two rows, so it is far narrower than resampling
    each row on its own."""
    rng = np.random.default_rng(0)
    n = 4000
    hits_a = rng.random(n) < 0.6
    hits_b = np.where(rng.random(n) < 0.9, hits_a, rng.random(n) < 0.55)
    low, high = paired_bootstrap_ci(hits_a, hits_b, n_bootstrap=20_000, seed=1)
    d = hits_a.astype(float) - hits_b.astype(float)
    half = 1.959964 * d.std(ddof=1) / math.sqrt(n)
    assert low == pytest.approx(d.mean() - half, abs=0.002)
    assert high == pytest.approx(d.mean() + half, abs=0.002)
    unpaired_half = 1.959964 * math.sqrt(hits_a.var(ddof=1) / n + hits_b.var(ddof=1) / n)
    assert (high - low) < 0.6 * (2 * unpaired_half)


def test_identical_rows_and_refusals():
    same = paired_comparison([1, 2, 1, 1], [1, 2, 1, 1], n_bootstrap=100)
    assert (same["difference"], same["difference_ci"], same["mcnemar_p"]) == (0.0, [0.0, 0.0], 1.0)
    hits_a, hits_b = aligned_hits([True, False], [False, False])
    assert hits_a.tolist() == [True, False] and hits_b.tolist() == [False, False]
    with pytest.raises(RetrievalError, match=r"different images \(1 only in the first, 1 only in the second\)"):
        paired_comparison({"x": 1, "y": 2}, {"x": 1, "z": 2})
    with pytest.raises(RetrievalError, match="2 and 3 images"):
        paired_comparison([1, 2], [1, 2, 3])
    with pytest.raises(RetrievalError, match="ranks must be integers >= 1"):
        paired_comparison([0, 2], [1, 2])
