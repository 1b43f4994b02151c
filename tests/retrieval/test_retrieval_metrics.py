"""Ranks with the pessimistic tie rule, consistency with search, R@k/MRR/median rank and bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pytest

from pancap_retrieval.errors import RetrievalError
from pancap_retrieval.retrieval.index import search
from pancap_retrieval.retrieval.metrics import direction_metrics, positive_ranks, retrieval_metrics


def brute_force_ranks(q: np.ndarray, g: np.ndarray, pos: np.ndarray, rule: str) -> list[int]:
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    ranks = []
    for i, p in enumerate(pos):
        s = scores[i]
        ties = (s == s[p]) & (np.arange(len(s)) != p)
        if rule == "index":
            ties &= np.arange(len(s)) < p
        ranks.append(1 + int((s > s[p]).sum()) + int(ties.sum()))
    return ranks


@pytest.fixture(scope="module")
def small_integer_vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small integer vectors: dot products are exact in float32 and ties are frequent."""
    rng = np.random.default_rng(0)
    gallery = rng.integers(-2, 3, size=(120, 6)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(80, 6)).astype(np.float32)
    positives = rng.integers(0, 120, size=80)
    return queries, gallery, positives


def test_constant_scorer_gets_the_worst_rank_not_the_best() -> None:
    n = 50
    same = np.ones((n, 8), dtype=np.float32) / np.sqrt(8)
    ranks = positive_ranks(same, same, np.arange(n))
    assert ranks.tolist() == [n] * n
    metrics = retrieval_metrics(ranks, n_bootstrap=0)
    assert metrics["R@1"] == 0.0
    assert metrics["R@10"] == 0.0
    assert metrics["MRR"] == pytest.approx(1 / n)
    assert metrics["median_rank"] == 50.0


def test_memory_stays_within_the_chunk_when_every_score_is_a_near_tie() -> None:
    import tracemalloc

    n, dim = 600, 256  # 360,000 near ties: rescoring them all at once would take about 400 MB here
    same = np.ones((n, dim), dtype=np.float32) / 16
    tracemalloc.start()
    try:
        ranks = positive_ranks(same, same, (np.arange(n) + 1) % n, chunk_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ranks.tolist() == [n] * n
    assert peak < 16 << 20, f"peak {peak >> 20} MB"


@pytest.mark.parametrize("rule", ["pessimistic", "index"])
def test_ranks_match_brute_force_with_ties(small_integer_vectors, rule: str) -> None:
    queries, gallery, positives = small_integer_vectors
    expected = brute_force_ranks(queries, gallery, positives, rule)
    assert positive_ranks(queries, gallery, positives, tie_rule=rule).tolist() == expected
    chunked = positive_ranks(queries, gallery, positives, tie_rule=rule, chunk_bytes=2048)
    assert chunked.tolist() == expected


def test_index_rule_ranks_are_search_positions(small_integer_vectors) -> None:
    queries, gallery, positives = small_integer_vectors
    k = 10
    _, ids = search(queries, gallery, k, backend="faiss")
    index_ranks = positive_ranks(queries, gallery, positives, tie_rule="index")
    pessimistic = positive_ranks(queries, gallery, positives)
    for row, (found, rank) in enumerate(zip(ids, index_ranks)):
        hits = np.flatnonzero(found == positives[row])
        assert (hits[0] + 1 if hits.size else None) == (rank if rank <= k else None)
    assert np.all(pessimistic >= index_ranks)
    assert (pessimistic <= k).mean() <= np.mean([p in row for p, row in zip(positives, ids)])


def test_hand_checked_example() -> None:
    # query 0 = e0, gallery = [e0, 0.5*e0 + e1, e0]: positive 1 scores 0.5 < 1 (two rows), so rank 3
    e0, e1 = np.eye(2, dtype=np.float32)
    gallery = np.stack([e0, 0.5 * e0 + e1, e0])
    assert positive_ranks(np.stack([e0, e0, e1]), gallery, [1, 2, 1]).tolist() == [3, 2, 1]
    assert positive_ranks(np.stack([e0, e0, e1]), gallery, [1, 2, 1], tie_rule="index").tolist() == [3, 2, 1]
    assert positive_ranks(np.stack([e0]), gallery, [0], tie_rule="index").tolist() == [1]


def test_metrics_values() -> None:
    m = retrieval_metrics([1, 3, 7, 12, 1], n_bootstrap=0)
    assert m == {
        "n": 5,
        "R@1": 0.4,
        "R@5": 0.6,
        "R@10": 0.8,
        "MRR": pytest.approx((1 + 1 / 3 + 1 / 7 + 1 / 12 + 1) / 5),
        "median_rank": 3.0,
    }


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    ranks = np.random.default_rng(5).integers(1, 30, size=400)
    a = retrieval_metrics(ranks, n_bootstrap=500, seed=7)
    b = retrieval_metrics(ranks, n_bootstrap=500, seed=7)
    c = retrieval_metrics(ranks, n_bootstrap=500, seed=8)
    assert a == b
    assert a["R@10_ci"] != c["R@10_ci"]
    for name in ("R@1", "R@5", "R@10", "MRR", "median_rank"):
        lo, hi = a[f"{name}_ci"]
        assert lo <= a[name] <= hi
    # binomial standard error of R@10 is about sqrt(p(1-p)/n); the 95% interval is about +-2 of them
    p = a["R@10"]
    width = a["R@10_ci"][1] - a["R@10_ci"][0]
    assert width == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 400), rel=0.25)
    assert a["bootstrap"] == {"n": 500, "seed": 7, "confidence": 0.95}


def test_direction_metrics_reports_gallery_and_rule() -> None:
    eye = np.eye(4, dtype=np.float32)
    out = direction_metrics(eye, eye, [0, 1, 2, 3], n_bootstrap=0)
    assert out["R@1"] == 1.0 and out["gallery_size"] == 4 and out["tie_rule"] == "pessimistic"


@pytest.mark.parametrize(
    ("positives", "message"),
    [([0, 5], "outside the gallery"), ([0], "2 integer gallery rows"), ([0.0, 1.0], "integer")],
)
def test_bad_positives(positives, message: str) -> None:
    eye = np.eye(2, dtype=np.float32)
    with pytest.raises(RetrievalError, match=message):
        positive_ranks(eye, eye, np.asarray(positives))


def test_bad_ranks() -> None:
    with pytest.raises(RetrievalError, match=">= 1"):
        retrieval_metrics([0, 1])
    with pytest.raises(RetrievalError, match="non-empty"):
        retrieval_metrics([])
    with pytest.raises(RetrievalError, match="tie_rule"):
        positive_ranks(np.eye(2), np.eye(2), [0, 1], tie_rule="optimistic")
