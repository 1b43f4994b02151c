"""Search backends: one tie rule, identical rankings on every exact backend, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pancap_retrieval.errors import RegistryError, RetrievalError
from pancap_retrieval.retrieval.index import search

EXACT = ("numpy", "torch", "faiss")


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    """3000 gallery rows with a block of 40 exact duplicates of row 7, and 200 queries (20 equal to row 7)."""
    rng = np.random.default_rng(0)
    gallery = unit_rows(rng, 3000, 32)
    gallery[500:540] = gallery[7]
    queries = unit_rows(rng, 200, 32)
    queries[:20] = gallery[7]
    return queries, gallery


@pytest.mark.parametrize("backend", EXACT)
def test_ties_rank_by_ascending_gallery_index(backend: str) -> None:
    e0, e1, e2 = np.eye(3, dtype=np.float32)
    gallery = np.stack([e0, e1, e0, e0, e1, e2])
    scores, ids = search(e0[None], gallery, 4, backend=backend)
    assert ids.tolist() == [[0, 2, 3, 1]]
    assert scores.tolist() == [[1.0, 1.0, 1.0, 0.0]]
    assert scores.dtype == np.float32 and ids.dtype == np.int64


def test_exact_backends_agree_with_many_ties(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    queries, gallery = vectors
    results = {backend: search(queries, gallery, 10, backend=backend) for backend in EXACT}
    for backend in EXACT[1:]:
        np.testing.assert_array_equal(results[backend][1], results["numpy"][1])
        np.testing.assert_array_equal(results[backend][0], results["numpy"][0])
    # a query equal to row 7 ties with rows 7 and 500..539: the top 10 are 7, 500, ..., 508
    assert results["faiss"][1][0].tolist() == [7, *range(500, 509)]


@pytest.mark.parametrize("backend", EXACT)
def test_tie_run_longer_than_candidate_margin(backend: str) -> None:
    rng = np.random.default_rng(1)
    gallery = unit_rows(rng, 300, 16)
    gallery[100:200] = gallery[250]  # 101 equal rows: 100..199 and 250
    scores, ids = search(gallery[250][None], gallery, 5, backend=backend, margin=2)
    assert ids.tolist() == [[100, 101, 102, 103, 104]]
    assert np.all(scores == scores[0, 0])


def test_scores_are_inner_products_in_descending_order(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    queries, gallery = vectors
    scores, ids = search(queries, gallery, 10, backend="faiss")
    expected = np.einsum("qd,qkd->qk", queries.astype(np.float64), gallery[ids].astype(np.float64))
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_small_chunks_give_the_same_result(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    queries, gallery = vectors
    full = search(queries, gallery, 10, backend="torch")
    chunked = search(queries, gallery, 10, backend="torch", chunk_bytes=64 * 1024)
    np.testing.assert_array_equal(full[1], chunked[1])


def test_torch_and_faiss_in_one_process() -> None:
    import faiss
    import torch

    rng = np.random.default_rng(2)
    gallery = unit_rows(rng, 500, 8)
    queries = unit_rows(rng, 30, 8)
    t = torch.from_numpy(queries) @ torch.from_numpy(gallery).T
    index = faiss.IndexFlatIP(8)
    index.add(gallery)
    _, faiss_ids = index.search(queries, 1)
    assert faiss_ids[:, 0].tolist() == t.argmax(dim=1).tolist()
    assert (
        search(queries, gallery, 3, backend="faiss")[1].tolist()
        == search(queries, gallery, 3, backend="torch")[1].tolist()
    )


def test_ivf_with_one_list_is_exact(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    # approximate backends are not re-searched: the margin must cover the 41-row tie run
    queries, gallery = vectors
    exact = search(queries, gallery, 10, backend="faiss")[1]
    ivf = search(queries, gallery, 10, backend="faiss-ivf", nlist=1, nprobe=1, margin=64)[1]
    np.testing.assert_array_equal(ivf, exact)


def test_hnsw_recall_is_high_on_a_small_gallery() -> None:
    rng = np.random.default_rng(3)
    gallery = unit_rows(rng, 2000, 16)
    queries = unit_rows(rng, 100, 16)
    exact = search(queries, gallery, 10, backend="numpy")[1]
    approx = search(queries, gallery, 10, backend="faiss-hnsw", ef_search=256)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95


def test_k_larger_than_gallery_is_an_error() -> None:
    gallery = np.eye(10, dtype=np.float32)
    with pytest.raises(RetrievalError, match=r"k=11 > gallery size 10"):
        search(gallery[:1], gallery, 11)


@pytest.mark.parametrize(
    ("queries", "gallery", "k", "message"),
    [
        (np.ones((2, 3)), np.ones((4, 5)), 1, "dim 3 but gallery has dim 5"),
        (np.ones((2, 3)), np.ones((4, 3)), 0, "k must be a positive integer"),
        (np.ones(3), np.ones((4, 3)), 1, "2-D array"),
        (np.full((1, 3), np.nan), np.ones((4, 3)), 1, "NaN"),
        (np.ones((1, 3)), np.ones((0, 3)), 1, "gallery is empty"),
    ],
)
def test_bad_input_is_a_clear_error(queries: np.ndarray, gallery: np.ndarray, k: int, message: str) -> None:
    with pytest.raises(RetrievalError, match=message):
        search(queries, gallery, k, backend="numpy")


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(RegistryError, match="known: faiss, faiss-hnsw, faiss-ivf, numpy, torch"):
        search(np.ones((1, 2)), np.ones((3, 2)), 1, backend="annoy")
