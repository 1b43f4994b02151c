"""Top-k inner-product search with one tie rule on every backend.

Backends: ``faiss`` (exact ``IndexFlatIP``, the default), ``faiss-ivf`` and ``faiss-hnsw`` (approximate), ``torch``
(exact chunked matmul + topk) and ``numpy`` (the reference: matmul + full stable argsort). FAISS runs on the GPUs
of a faiss GPU build when it sees any, torch on CUDA when present. faiss is imported only inside its backend.

**Ranking rule.** Every backend first returns ``k + margin`` candidates by its own float32 scores. The candidates
are then rescored with one *canonical score*, the float64 dot product of the float32 vectors (every product exact),
computed by the same numpy code whatever the backend, and ranked by descending canonical score, equal scores by
ascending gallery index. A query whose candidate list might miss a tied or nearly tied item (its last candidate lies
within the float32 error bound of its k-th) is searched again over the whole gallery row. The exact backends
therefore return identical ids, including under exact ties (duplicate gallery vectors). The approximate backends
follow the same order among the items they find. Returned scores are the canonical scores cast to float32.
Memory stays bounded: queries are processed in chunks, never a full Nq x Ng matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pancap_retrieval.errors import RetrievalError
from pancap_retrieval.loading import choose_device
from pancap_retrieval.registry import Entry, Registry

SEARCH_BACKENDS = Registry(
    "search backend",
    {
        "faiss": Entry(
            "pancap_retrieval.retrieval.index:faiss_flat_candidates",
            "exact: faiss IndexFlatIP, on the GPUs of a faiss GPU build when present (default)",
        ),
        "faiss-ivf": Entry(
            "pancap_retrieval.retrieval.index:faiss_ivf_candidates",
            "approximate: faiss IndexIVFFlat (options nlist, nprobe, use_gpu, seed)",
        ),
        "faiss-hnsw": Entry(
            "pancap_retrieval.retrieval.index:faiss_hnsw_candidates",
            "approximate: faiss IndexHNSWFlat, CPU (options m, ef_search, ef_construction)",
        ),
        "torch": Entry(
            "pancap_retrieval.retrieval.index:torch_candidates",
            "exact: chunked torch matmul + topk, on this process's GPU when present",
        ),
        "numpy": Entry(
            "pancap_retrieval.retrieval.index:numpy_candidates",
            "exact reference: numpy matmul + full stable argsort",
        ),
    },
    bind=True,
)
EXACT_BACKENDS = frozenset({"faiss", "torch", "numpy"})
DEFAULT_CHUNK_BYTES = 256 << 20

Candidates = tuple[np.ndarray, np.ndarray]  # (float32 scores [Nq, c], int64 ids [Nq, c]); id -1 = none found


def as_matrix(x: Any, name: str) -> np.ndarray:
    """A C-contiguous float32 2-D array with finite values, or a :class:`RetrievalError`."""
    array = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if array.ndim != 2:
        raise RetrievalError(f"{name} must be a 2-D array (rows x dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise RetrievalError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise RetrievalError(f"{name} holds NaN or infinite values")
    return array


def check_pair(queries: Any, gallery: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated (queries, gallery) as float32 matrices of one dimension; ``k`` within the gallery size."""
    q = as_matrix(queries, "queries")
    g = as_matrix(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise RetrievalError(f"queries have dim {q.shape[1]} but gallery has dim {g.shape[1]}")
    if k is not None:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise RetrievalError(f"k must be a positive integer, not {k!r}")
        if k > g.shape[0]:
            raise RetrievalError(f"k={k} > gallery size {g.shape[0]}")
    return q, g


def float32_error_bound(q: np.ndarray, g: np.ndarray) -> float:
    """Twice the worst-case error of a float32 dot product of these rows (dim * 2^-24 * |q| * |g|)."""
    qn = float(np.sqrt((q.astype(np.float64) ** 2).sum(axis=1).max()))
    gn = float(np.sqrt((g.astype(np.float64) ** 2).sum(axis=1).max()))
    return 2.0 * q.shape[1] * 2.0**-24 * qn * gn + 1e-30


def canonical_scores(q_rows: np.ndarray, g_rows: np.ndarray) -> np.ndarray:
    """Float64 dot products of paired rows: the one score every backend and metric ranks by."""
    return np.einsum("ij,ij->i", q_rows.astype(np.float64), g_rows.astype(np.float64))


def chunk_rows(n_cols: int, bytes_per_value: int = 4, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many query rows of ``n_cols`` values fit in ``chunk_bytes``."""
    return max(1, int(chunk_bytes // max(1, n_cols * bytes_per_value)))


def search(
    queries: Any,
    gallery: Any,
    k: int,
    backend: str = "faiss",
    *,
    margin: int = 16,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    device: str | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery rows for each query by inner product: ``(scores[Nq, k] float32, ids[Nq, k] int64)``.

    Equal scores rank by ascending gallery index on every backend (see the module docstring). ``options`` go to
    the backend: ``nlist``, ``nprobe`` (faiss-ivf); ``m``, ``ef_search``, ``ef_construction`` (faiss-hnsw);
    ``use_gpu`` (faiss*). ``k`` larger than the gallery is an error.

    >>> g = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    >>> scores, ids = search(np.array([[1, 0]], dtype=np.float32), g, 3, backend="numpy")
    >>> ids.tolist(), scores.tolist()
    ([[0, 2, 1]], [[1.0, 1.0, 0.0]])
    """
    q, g = check_pair(queries, gallery, k)
    candidates_fn: Callable[..., Candidates] = SEARCH_BACKENDS.build(backend, **options)
    n_cand = min(k + max(0, margin), g.shape[0])
    cand_scores, cand_ids = candidates_fn(q, g, n_cand, chunk_bytes=chunk_bytes, device=device)
    return rank_candidates(
        q, g, k, cand_scores, cand_ids, exact=backend in EXACT_BACKENDS, chunk_bytes=chunk_bytes
    )


def rank_candidates(
    q: np.ndarray,
    g: np.ndarray,
    k: int,
    cand_scores: np.ndarray,
    cand_ids: np.ndarray,
    *,
    exact: bool = True,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Reorders backend candidates by (canonical score desc, gallery index asc); re-searches doubtful rows."""
    n_q, n_cand = cand_ids.shape
    tol = float32_error_bound(q, g)
    out_scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    out_ids = np.full((n_q, k), -1, dtype=np.int64)
    rows_per_chunk = chunk_rows(n_cand * q.shape[1], 8, chunk_bytes)
    doubtful: list[int] = []
    for start in range(0, n_q, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_q)
        ids = cand_ids[start:stop]
        valid = ids >= 0
        safe = np.where(valid, ids, 0)
        q_rep = np.repeat(q[start:stop], n_cand, axis=0)
        canon = canonical_scores(q_rep, g[safe.reshape(-1)]).reshape(stop - start, n_cand)
        canon = np.where(valid, canon, -np.inf)
        order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), -canon), axis=-1)[:, :k]
        out_ids[start:stop] = np.take_along_axis(ids, order, axis=1)
        out_scores[start:stop] = np.take_along_axis(canon, order, axis=1)
        if exact and n_cand < g.shape[0]:
            kth = np.take_along_axis(canon, order[:, k - 1 : k], axis=1)[:, 0]
            last = np.where(valid, cand_scores[start:stop], np.inf).min(axis=1)
            doubtful.extend((start + np.flatnonzero(last + 2 * tol >= kth)).tolist())
    for row in doubtful:
        scores32 = g @ q[row]
        threshold = -np.partition(-scores32, k - 1)[k - 1] - 2 * tol
        pool = np.flatnonzero(scores32 >= threshold)
        canon = canonical_scores(np.repeat(q[row : row + 1], len(pool), axis=0), g[pool])
        order = np.lexsort((pool, -canon))[:k]
        out_ids[row] = pool[order]
        out_scores[row] = canon[order]
    return out_scores, out_ids


def numpy_candidates(
    q: np.ndarray, g: np.ndarray, n_cand: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, **_: Any
) -> Candidates:
    """Reference: float32 matmul and a full stable argsort of each query row, chunked over queries."""
    scores = np.empty((q.shape[0], n_cand), dtype=np.float32)
    ids = np.empty((q.shape[0], n_cand), dtype=np.int64)
    step = chunk_rows(g.shape[0], 4, chunk_bytes)
    for start in range(0, q.shape[0], step):
        block = q[start : start + step] @ g.T
        order = np.argsort(-block, axis=1, kind="stable")[:, :n_cand]
        ids[start : start + step] = order
        scores[start : start + step] = np.take_along_axis(block, order, axis=1)
    return scores, ids


def torch_candidates(
    q: np.ndarray,
    g: np.ndarray,
    n_cand: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    device: str | None = None,
    **_: Any,
) -> Candidates:
    """Exact search with torch: chunked matmul + topk, on this process's GPU when present."""
    import torch

    dev = choose_device(device)
    gallery = torch.from_numpy(g).to(dev)
    scores = np.empty((q.shape[0], n_cand), dtype=np.float32)
    ids = np.empty((q.shape[0], n_cand), dtype=np.int64)
    step = chunk_rows(g.shape[0], 4, chunk_bytes)
    with torch.inference_mode():
        for start in range(0, q.shape[0], step):
            block = torch.from_numpy(q[start : start + step]).to(dev) @ gallery.T
            top = torch.topk(block, n_cand, dim=1, largest=True, sorted=True)
            scores[start : start + step] = top.values.cpu().numpy()
            ids[start : start + step] = top.indices.cpu().numpy()
    return scores, ids


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise RetrievalError(f"the faiss backends need faiss-cpu or faiss-gpu installed ({exc})") from None
    return faiss


FAISS_GPU_MAX_K = 2048  # faiss GPU indexes answer at most this many neighbours


def _to_gpu(faiss: Any, index: Any, use_gpu: bool | None, n_cand: int) -> Any:
    """The index on all GPUs of a faiss GPU build, unless none is seen, ``use_gpu`` is False or k is too large."""
    if use_gpu is False or not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        return index
    if n_cand > FAISS_GPU_MAX_K:
        return index
    return faiss.index_cpu_to_all_gpus(index)


def _faiss_search(index: Any, q: np.ndarray, n_cand: int, chunk_bytes: int) -> Candidates:
    scores = np.empty((q.shape[0], n_cand), dtype=np.float32)
    ids = np.empty((q.shape[0], n_cand), dtype=np.int64)
    step = max(1024, chunk_rows(n_cand * 12, 1, chunk_bytes))
    for start in range(0, q.shape[0], step):
        scores[start : start + step], ids[start : start + step] = index.search(
            q[start : start + step], n_cand
        )
    return scores, ids


def faiss_flat_candidates(
    q: np.ndarray,
    g: np.ndarray,
    n_cand: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    use_gpu: bool | None = None,
    **_: Any,
) -> Candidates:
    """Exact search with ``faiss.IndexFlatIP`` (on all GPUs of a faiss GPU build when present)."""
    faiss = _faiss()
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    return _faiss_search(_to_gpu(faiss, index, use_gpu, n_cand), q, n_cand, chunk_bytes)


def faiss_ivf_candidates(
    q: np.ndarray,
    g: np.ndarray,
    n_cand: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    nlist: int | None = None,
    nprobe: int = 16,
    use_gpu: bool | None = None,
    seed: int = 0,
    **_: Any,
) -> Candidates:
    """Approximate search with ``IndexIVFFlat`` (inner product); ``nlist`` defaults to about 4 * sqrt(N)."""
    faiss = _faiss()
    n = g.shape[0]
    if nlist is None:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    if not 1 <= nlist <= n:
        raise RetrievalError(f"nlist={nlist} must be between 1 and the gallery size {n}")
    quantizer = faiss.IndexFlatIP(g.shape[1])
    index = faiss.IndexIVFFlat(quantizer, g.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(g)
    index.add(g)
    index.nprobe = min(nprobe, nlist)
    index = _to_gpu(faiss, index, use_gpu, n_cand)
    if hasattr(index, "nprobe"):
        index.nprobe = min(nprobe, nlist)
    return _faiss_search(index, q, n_cand, chunk_bytes)


def faiss_hnsw_candidates(
    q: np.ndarray,
    g: np.ndarray,
    n_cand: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    m: int = 32,
    ef_search: int = 128,
    ef_construction: int = 200,
    **_: Any,
) -> Candidates:
    """Approximate search with ``IndexHNSWFlat`` (inner product; CPU only in faiss)."""
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(g.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(g)
    index.hnsw.efSearch = max(ef_search, n_cand)
    return _faiss_search(index, q, n_cand, chunk_bytes)
