"""Paired comparison of two rows scored on the same images: is a difference in R@k more than resampling noise?

Both tests read each image's hit (its positive ranked within the top ``k``) in the two rows:

- a **paired bootstrap** interval of the R@k difference (row a minus row b): the images are resampled jointly, so
  each resample keeps an image's two hits together (seeded, percentile interval, as the metrics' own CIs);
- an **exact McNemar** test: under "no difference" an image that one row hits and the other misses is equally
  likely to favour either row, so the number favouring row a is Binomial(discordant, 1/2); the p-value is the
  two-sided exact binomial one.

Checked against scipy's exact binomial test on the discordant images:

>>> from scipy.stats import binomtest
>>> mcnemar_exact(3, 12), float(binomtest(3, 15, 0.5).pvalue)
(0.03515625, 0.03515625)
>>> cases = [(40, 61), (61, 40), (10, 10), (0, 9), (1, 300), (2400, 2500)]
>>> all(abs(mcnemar_exact(x, y) - binomtest(x, x + y, 0.5).pvalue) < 1e-12 for x, y in cases)
True
>>> mcnemar_exact(7, 7), mcnemar_exact(0, 0)
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from math import comb
from typing import Any

import numpy as np

from pancap_retrieval.errors import RetrievalError


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (images only row a hits, only row b hits).

    ``min(1, 2 * P(X <= min(a_only, b_only)))`` for X ~ Binomial(a_only + b_only, 1/2), in exact arithmetic and
    rounded to 15 decimals; 1.0 with no discordant image.
    """
    if a_only < 0 or b_only < 0:
        raise RetrievalError(f"discordant counts must be >= 0, not {a_only} and {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(a_only, b_only) + 1))
    return round(float(min(Fraction(1), Fraction(2 * tail, 2**n))), 15)


def aligned_hits(
    a: Mapping[str, Any] | Sequence[Any] | np.ndarray,
    b: Mapping[str, Any] | Sequence[Any] | np.ndarray,
    k: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image hits of two rows, aligned: each row is image id -> 1-based rank (or hit, a bool), or a sequence of
    them in one image order. A rank is a hit when it is at most ``k``. Rows on different images are refused."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise RetrievalError("compare two mappings (image id -> rank) or two sequences, not one of each")
    if isinstance(a, Mapping):
        if set(a) != set(b):
            only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
            raise RetrievalError(
                f"the two rows were scored on different images ({only_a} only in the first, {only_b} only in the "
                "second): compare rows of one dataset split and sample"
            )
        ids = sorted(a)
        a, b = [a[i] for i in ids], [b[i] for i in ids]
    hits = []
    for row in (np.asarray(a), np.asarray(b)):
        if row.ndim != 1 or row.size == 0:
            raise RetrievalError("each row must be a non-empty 1-D sequence of ranks or hits")
        hits.append(row.astype(bool) if row.dtype == bool else _ranks(row) <= k)
    if hits[0].size != hits[1].size:
        raise RetrievalError(f"the rows have {hits[0].size} and {hits[1].size} images: they must be the same images")
    return hits[0], hits[1]


def _ranks(row: np.ndarray) -> np.ndarray:
    if not np.issubdtype(row.dtype, np.integer) or row.min() < 1:
        raise RetrievalError("ranks must be integers >= 1 (or give hits as booleans)")
    return row


def paired_bootstrap_ci(
    hits_a: np.ndarray, hits_b: np.ndarray, n_bootstrap: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> list[float]:
    """Percentile interval of mean(hits_a) - mean(hits_b) over ``n_bootstrap`` joint resamples of the images,
    drawn with ``numpy.random.default_rng(seed)``."""
    if n_bootstrap < 1:
        raise RetrievalError(f"n_bootstrap must be >= 1, not {n_bootstrap}")
    if not 0 < confidence < 1:
        raise RetrievalError(f"confidence must be in (0, 1), not {confidence}")
    diff = np.asarray(hits_a, dtype=np.float64) - np.asarray(hits_b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, 10_000_000 // diff.size)
    means = []
    done = 0
    while done < n_bootstrap:
        count = min(per_chunk, n_bootstrap - done)
        means.append(diff[rng.integers(0, diff.size, size=(count, diff.size))].mean(axis=1))
        done += count
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha])
    return [float(low), float(high)]


def paired_comparison(
    a: Mapping[str, Any] | Sequence[Any] | np.ndarray,
    b: Mapping[str, Any] | Sequence[Any] | np.ndarray,
    *,
    k: int = 1,
    n_bootstrap: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """R@k of both rows, their difference (a - b, fractions) with its paired bootstrap interval, the discordant
    counts and the exact McNemar p-value.

    >>> out = paired_comparison([1, 1, 2, 1, 3, 1], [1, 2, 2, 1, 1, 5], n_bootstrap=200)
    >>> out["R@1_a"], out["R@1_b"], out["a_only"], out["b_only"], out["mcnemar_p"]
    (0.666667, 0.5, 2, 1, 1.0)
    """
    hits_a, hits_b = aligned_hits(a, b, k)
    a_only = int(np.sum(hits_a & ~hits_b))
    b_only = int(np.sum(~hits_a & hits_b))
    name = f"R@{k}"
    return {
        "n": int(hits_a.size),
        f"{name}_a": round(float(hits_a.mean()), 6),
        f"{name}_b": round(float(hits_b.mean()), 6),
        "difference": round(float(hits_a.mean() - hits_b.mean()), 6),
        "difference_ci": paired_bootstrap_ci(hits_a, hits_b, n_bootstrap, seed, confidence),
        "a_only": a_only,
        "b_only": b_only,
        "mcnemar_p": mcnemar_exact(a_only, b_only),
        "bootstrap": {"n": int(n_bootstrap), "seed": int(seed), "confidence": confidence},
    }


__all__ = ["aligned_hits", "mcnemar_exact", "paired_bootstrap_ci", "paired_comparison"]
