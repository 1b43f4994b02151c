"""Retrieval metrics: rank of the one positive per query, R@k, MRR, median rank, bootstrap CIs, both directions.

Queries and gallery live in separate id spaces: a caption and the description of the same image are two items, the
query and its positive, never "the same document" to be dropped (the BEIR trap).

**Tie rule for ranks (pessimistic).** The positive's rank is 1 + the number of *other* gallery items whose score is
greater than or equal to the positive's score: every tie goes against the positive, so a constant scorer gets rank N
for every query (R@1 = 0), never 1 (the MTEB #5092 trap). Scores are the canonical scores of
:mod:`pancap_retrieval.retrieval.index` (float64 dot products of the float32 vectors, identical for identical vectors).
With ``tie_rule="index"`` ties are broken by ascending gallery index instead, which is exactly the order
:func:`~pancap_retrieval.retrieval.index.search` returns: the positive is at 1-based position r of the search
results iff its index-rule rank is r. Pessimistic ranks are never smaller, so pessimistic R@k is never above
the share of queries whose positive is among the top k search results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from pancap_retrieval.errors import RetrievalError
from pancap_retrieval.loading import choose_device, device_type
from pancap_retrieval.retrieval.index import (
    DEFAULT_CHUNK_BYTES,
    canonical_scores,
    check_pair,
    chunk_rows,
    float32_error_bound,
)

TieRule = Literal["pessimistic", "index"]
DEFAULT_KS = (1, 5, 10)


def positive_ranks(
    queries: Any,
    gallery: Any,
    positives: Sequence[int] | np.ndarray,
    *,
    groups: Sequence[int] | np.ndarray | None = None,
    tie_rule: TieRule = "pessimistic",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    device: str | None = None,
) -> np.ndarray:
    """1-based rank of each query's positive gallery row, chunked over queries (no full Nq x Ng matrix).

    ``positives[i]`` is the gallery row of query i's positive. With ``groups`` (one integer per gallery row, e.g.
    the image each description belongs to), ``positives[i]`` is a group instead: every gallery row of that group
    is a positive of query i, and its rank is the rank of its best positive (the any-hit rule of CLIP_benchmark:
    R@k counts a query when any of its positives is in the top k). The other positives never count against it;
    the tie rule applies to the other items. Groups of one row each give exactly the one-positive ranks.

    >>> g = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    >>> positive_ranks(np.array([[0, 1]], dtype=np.float32), g, [0], groups=[0, 1, 0]).tolist()
    [2]

    >>> g = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    >>> q = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    >>> positive_ranks(q, g, [0, 1, 2]).tolist()
    [2, 2, 1]
    >>> positive_ranks(q, g, [0, 1, 2], tie_rule="index").tolist()
    [1, 2, 1]
    """
    q, g = check_pair(queries, gallery)
    pos = np.asarray(positives)
    if pos.shape != (q.shape[0],) or not np.issubdtype(pos.dtype, np.integer):
        raise RetrievalError(f"positives must be {q.shape[0]} integer gallery rows, got shape {pos.shape}")
    if tie_rule not in ("pessimistic", "index"):
        raise RetrievalError(f"tie_rule must be 'pessimistic' or 'index', not {tie_rule!r}")
    pos = pos.astype(np.int64)
    if groups is None:
        if pos.size and (pos.min() < 0 or pos.max() >= g.shape[0]):
            raise RetrievalError(f"a positive is outside the gallery rows 0..{g.shape[0] - 1}")
        group_of, best, s_pos = np.arange(g.shape[0]), pos, canonical_scores(q, g[pos])
    else:
        group_of = _checked_groups(groups, g.shape[0])
        best, s_pos = _best_positives(q, g, pos, group_of)
    tol = 2 * float32_error_bound(q, g)
    ranks = np.empty(q.shape[0], dtype=np.int64)
    step = chunk_rows(g.shape[0], 16, chunk_bytes)  # float32 block + float64 temporaries
    # near ties are rescored in float64 in slices: each holds a float32 and a float64 copy of both rows
    pair_step = chunk_rows(q.shape[1], 2 * (4 + 8), chunk_bytes)
    scorer = _Scorer(g, device)
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        above, rows, cols = scorer.counts(q[start:stop], s_pos[start:stop], tol)
        extra = np.zeros(stop - start, dtype=np.int64)
        for first in range(0, len(rows), pair_step):
            tied_rows, tied_cols = rows[first : first + pair_step], cols[first : first + pair_step]
            tied = (tied_rows + start, tied_cols)
            before = _ranked_before(q, g, (pos, best, group_of), s_pos, tied, tie_rule)
            extra += np.bincount(tied_rows, weights=before, minlength=stop - start).astype(np.int64)
        ranks[start:stop] = 1 + above + extra
    return ranks


def _ranked_before(
    q: np.ndarray,
    g: np.ndarray,
    positives: tuple[np.ndarray, np.ndarray, np.ndarray],
    s_pos: np.ndarray,
    tied: tuple[np.ndarray, np.ndarray],
    tie_rule: TieRule,
) -> np.ndarray:
    """Whether gallery row ``cols[i]``, within float32 error of query ``rows[i]``'s best positive, ranks before it.

    ``positives`` is (each query's positive group, its best positive row, the group of each gallery row); a row of
    the query's own group is a positive and never ranks before it.
    """
    pos, best, group_of = positives
    rows, cols = tied
    canon = canonical_scores(q[rows], g[cols])
    target = s_pos[rows]
    before = canon > target
    if tie_rule == "pessimistic":
        before |= canon == target
    else:
        before |= (canon == target) & (cols < best[rows])
    return before & (group_of[cols] != pos[rows])


def _checked_groups(groups: Sequence[int] | np.ndarray, n_gallery: int) -> np.ndarray:
    group_of = np.asarray(groups)
    if group_of.shape != (n_gallery,) or not np.issubdtype(group_of.dtype, np.integer):
        raise RetrievalError(f"groups must be {n_gallery} integers, one per gallery row, got shape {group_of.shape}")
    return group_of.astype(np.int64)


def _best_positives(
    q: np.ndarray, g: np.ndarray, pos: np.ndarray, group_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the gallery row of its best positive (the lowest row among equal best scores) and its score."""
    order = np.argsort(group_of, kind="stable")  # rows of a group together, ascending within it
    starts = np.searchsorted(group_of[order], pos, side="left")
    stops = np.searchsorted(group_of[order], pos, side="right")
    counts = stops - starts
    if (counts == 0).any():
        missing = int(pos[np.argmax(counts == 0)])
        raise RetrievalError(f"positive group {missing} has no gallery row")
    query_of = np.repeat(np.arange(q.shape[0]), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = order[np.repeat(starts, counts) + offsets]
    scores = canonical_scores(q[query_of], g[rows])
    s_pos = np.full(q.shape[0], -np.inf)
    np.maximum.at(s_pos, query_of, scores)
    best = np.full(q.shape[0], g.shape[0], dtype=np.int64)
    at_best = scores == s_pos[query_of]
    np.minimum.at(best, query_of[at_best], rows[at_best])
    return best, s_pos


class _Scorer:
    """Float32 scores of query chunks against the gallery (torch on CUDA when present, else numpy)."""

    def __init__(self, g: np.ndarray, device: str | None) -> None:
        self.g = g
        self.torch_gallery = None
        use_cuda = device_type(device) == "cuda"
        if device is None:
            try:
                use_cuda = choose_device().type == "cuda"
            except ImportError:  # pragma: no cover
                use_cuda = False
        if use_cuda:
            import torch

            self.torch_gallery = torch.from_numpy(g).to(choose_device(device))

    def counts(
        self, q: np.ndarray, s_pos: np.ndarray, tol: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: count of items clearly above the positive, and (row, col) of items within ``tol`` of it."""
        if self.torch_gallery is None:
            block = q @ self.g.T
            s = s_pos[:, None]
            above = (block > s + tol).sum(axis=1)
            rows, cols = np.nonzero(np.abs(block - s) <= tol)
            return above, rows, cols
        import torch

        dev = self.torch_gallery.device
        block = torch.from_numpy(q).to(dev) @ self.torch_gallery.T
        s = torch.from_numpy(s_pos).to(dev, torch.float64)[:, None]
        above = (block > s + tol).sum(dim=1).cpu().numpy()
        rows, cols = torch.nonzero((block.double() - s).abs() <= tol, as_tuple=True)
        return above, rows.cpu().numpy(), cols.cpu().numpy()


def retrieval_metrics(
    ranks: Sequence[int] | np.ndarray,
    ks: Iterable[int] = DEFAULT_KS,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """R@k (fractions in [0, 1]), MRR and median rank from 1-based ranks, with seeded bootstrap CIs.

    The CI of a metric is ``<name>_ci: [lo, hi]``, the percentile interval over ``n_bootstrap`` resamples of the
    queries drawn with ``numpy.random.default_rng(seed)``; ``n_bootstrap=0`` leaves the CIs out.

    >>> retrieval_metrics([1, 2, 4, 8], ks=(1, 5), n_bootstrap=0)
    {'n': 4, 'R@1': 0.25, 'R@5': 0.75, 'MRR': 0.46875, 'median_rank': 3.0}
    >>> m = retrieval_metrics([1, 1, 1, 1], ks=(1,), n_bootstrap=100)
    >>> m['R@1'], m['R@1_ci']
    (1.0, [1.0, 1.0])
    """
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise RetrievalError("ranks must be a non-empty 1-D sequence")
    if not np.issubdtype(r.dtype, np.integer) or r.min() < 1:
        raise RetrievalError("ranks must be integers >= 1")
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise RetrievalError(f"every k must be >= 1, got {ks}")
    if not 0 < confidence < 1:
        raise RetrievalError(f"confidence must be in (0, 1), not {confidence}")
    out: dict[str, Any] = {"n": int(r.size)}
    values = _metric_values(r[None, :], ks)
    out.update({name: float(v[0]) for name, v in values.items()})
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        samples: dict[str, list[np.ndarray]] = {name: [] for name in values}
        per_chunk = max(1, 10_000_000 // r.size)
        done = 0
        while done < n_bootstrap:
            b = min(per_chunk, n_bootstrap - done)
            resampled = r[rng.integers(0, r.size, size=(b, r.size))]
            for name, v in _metric_values(resampled, ks).items():
                samples[name].append(v)
            done += b
        alpha = (1 - confidence) / 2
        for name, parts in samples.items():
            lo, hi = np.quantile(np.concatenate(parts), [alpha, 1 - alpha])
            out[f"{name}_ci"] = [float(lo), float(hi)]
        out["bootstrap"] = {"n": int(n_bootstrap), "seed": int(seed), "confidence": confidence}
    return out


def _metric_values(r: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Metric per row of a (resamples x queries) rank matrix."""
    values = {f"R@{k}": (r <= k).mean(axis=1) for k in ks}
    values["MRR"] = (1.0 / r).mean(axis=1)
    values["median_rank"] = np.median(r, axis=1)
    return values


def direction_metrics(
    queries: Any,
    gallery: Any,
    positives: Sequence[int] | np.ndarray,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    tie_rule: TieRule = "pessimistic",
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Ranks and metrics of one direction (queries against gallery)."""
    ranks = positive_ranks(queries, gallery, positives, tie_rule=tie_rule, device=device)
    out = retrieval_metrics(ranks, ks, n_bootstrap=n_bootstrap, seed=seed)
    out["gallery_size"] = int(np.asarray(gallery).shape[0])
    out["tie_rule"] = tie_rule
    return out


def _pairs(items: Mapping[str, Any] | Iterable[tuple[str, Any]], what: str) -> list[tuple[str, Any]]:
    pairs = list(items.items()) if isinstance(items, Mapping) else [tuple(p) for p in items]
    seen: set[str] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise RetrievalError(f"{what} must be (id, text) pairs")
        if pair[0] in seen:
            raise RetrievalError(f"duplicate {what} id {pair[0]!r}")
        seen.add(pair[0])
    return pairs


Descriptions = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str | Sequence[str]]]
# What results.json and the manifest say of images with several descriptions.
MULTI_DESCRIPTION_RULE = (
    "an image may have several descriptions: caption->description is a hit at k when any of the image's "
    "descriptions is in the caption's top k (rank = the best of them; CLIP_benchmark's rule), and each "
    "description is a query of description->caption with the image's caption as its positive; ties count "
    "against the positive"
)


def evaluate_retrieval(
    captions: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
    descriptions: Descriptions,
    *,
    embedder: Any = "minilm",
    caption_mode: str = "strip",
    ks: Iterable[int] = DEFAULT_KS,
    tie_rule: TieRule = "pessimistic",
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str | None = None,
    cache_dir: Any = None,
    prep_options: Mapping[str, Any] | None = None,
    backend: str | None = None,
    top_k: int = 10,
) -> dict[str, Any]:
    """Text-to-text retrieval of generated captions against reference descriptions, keyed by image id.

    ``c2d``: each caption (query) against all descriptions (gallery); ``d2c``: each description whose image has
    a caption (query) against the captions (gallery). Caption ids and description ids are image ids, but the two
    sides are kept in separate id spaces. A caption that is missing or empty, or whose image has no description,
    is skipped and counted; descriptions without a caption stay in the c2d gallery as distractors.
    ``embedder`` is an :class:`~pancap_retrieval.retrieval.embedder.Embedder` or a name/path for one;
    ``caption_mode`` is a :func:`~pancap_retrieval.retrieval.textprep.prepare_texts` mode applied to captions.
    With a search ``backend`` the result also holds ``top``: per direction, each query id's ``top_k`` gallery ids
    from :func:`~pancap_retrieval.retrieval.index.search` (ties by ascending gallery index), to look at.
    ``ranks``: per direction, each query id's rank of its positive.

    A description value may be a list: the image's several descriptions (see :data:`MULTI_DESCRIPTION_RULE`).
    Then every description is a c2d gallery item and a d2c query; ``ranks["d2c"]`` holds each image's best rank
    and ``ranks["d2c_each"]`` the rank of each of its descriptions, in order; ``top["d2c"]`` one list per
    description. With one description per image everything is as before.
    """
    gallery_ids, gallery_texts, query_ids, query_texts, skipped = _sides(captions, descriptions)
    query_ids, prepared, prep_manifest = _prepare(
        query_ids, query_texts, caption_mode, cache_dir, prep_options, skipped
    )
    vectors, embedding, model = _embed(embedder, device, cache_dir, prepared, gallery_texts, gallery_ids, query_ids)
    multi = len(set(gallery_ids)) < len(gallery_ids)
    out: dict[str, Any] = {"top": None, "ranks": {}}
    positives = {"c2d": vectors["c2d_positives"], "d2c": vectors["d2c_positives"]}
    groups = {"c2d": vectors["groups"] if multi else None, "d2c": None}
    pairs = {"c2d": (vectors["cap_q"], vectors["desc_p"]), "d2c": (vectors["desc_q"], vectors["cap_p"])}
    for direction, (queries, gallery) in pairs.items():
        ranks = positive_ranks(
            queries, gallery, positives[direction], groups=groups[direction], tie_rule=tie_rule, device=device
        )
        out[direction] = {
            **retrieval_metrics(ranks, ks, n_bootstrap=n_bootstrap, seed=seed),
            "gallery_size": int(gallery.shape[0]),
            "tie_rule": tie_rule,
        }
        if multi:
            out[direction]["positives"] = "any description of the image" if direction == "c2d" else "its caption"
        owners = query_ids if direction == "c2d" else [gallery_ids[r] for r in vectors["d2c_rows"]]
        out["ranks"].update(_ranks_by_image(direction, owners, ranks, multi))
    if backend is not None:
        out["top"] = _top(pairs, backend, top_k, gallery_ids, query_ids, vectors["d2c_rows"], device)
    if multi:
        out["descriptions_per_image"] = len(gallery_ids) / len(set(gallery_ids))
        out["rule"] = MULTI_DESCRIPTION_RULE
    return {
        **out,
        "n": len(query_ids),
        "n_descriptions": len(gallery_ids),
        "skipped": skipped,
        "text_prep": prep_manifest,
        "embedding": embedding,
        "embedder": model.manifest(),
    }


def _ranks_by_image(direction: str, owners: list[str], ranks: np.ndarray, multi: bool) -> dict[str, Any]:
    """``{direction: {image id: rank}}``; with several descriptions, d2c also ``d2c_each`` (every rank, in order)."""
    if direction == "c2d" or not multi:
        return {direction: dict(zip(owners, (int(r) for r in ranks)))}
    each: dict[str, list[int]] = {}
    for owner, rank in zip(owners, ranks):
        each.setdefault(owner, []).append(int(rank))
    return {direction: {owner: min(values) for owner, values in each.items()}, "d2c_each": each}


def _sides(
    captions: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
    descriptions: Descriptions,
) -> tuple[list[str], list[str], list[str], list[str], dict[str, int]]:
    """Gallery (descriptions, an image id per description) and queries (captions) with separate id lists;
    unusable items counted."""
    skipped = {"empty_caption": 0, "no_description": 0, "empty_description": 0}
    gallery_ids: list[str] = []
    gallery_texts: list[str] = []
    for image_id, value in _pairs(descriptions, "description"):
        for text in [value] if isinstance(value, str) or value is None else list(value):
            if not isinstance(text, str) or not text.strip():
                skipped["empty_description"] += 1
                continue
            gallery_ids.append(image_id)
            gallery_texts.append(text)
    if not gallery_ids:
        raise RetrievalError("no usable description: the gallery is empty")
    known = set(gallery_ids)
    query_ids: list[str] = []
    query_texts: list[str] = []
    for image_id, text in _pairs(captions, "caption"):
        if not isinstance(text, str) or not text.strip():
            skipped["empty_caption"] += 1
        elif image_id not in known:
            skipped["no_description"] += 1
        else:
            query_ids.append(image_id)
            query_texts.append(text)
    if not query_ids:
        raise RetrievalError(f"no caption has a matching description (skipped: {skipped})")
    return gallery_ids, gallery_texts, query_ids, query_texts, skipped


def _prepare(
    query_ids: list[str],
    query_texts: list[str],
    caption_mode: str,
    cache_dir: Any,
    prep_options: Mapping[str, Any] | None,
    skipped: dict[str, int],
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Captions prepared for embedding (boxes stripped, kept or rewritten); those left empty are counted out."""
    from pancap_retrieval.retrieval.textprep import prepare_texts

    prepared = prepare_texts(query_texts, caption_mode, cache_dir=cache_dir, **dict(prep_options or {}))
    keep = [i for i, text in enumerate(prepared.texts) if text.strip()]
    if len(keep) < len(query_ids):
        skipped["empty_after_prep"] = len(query_ids) - len(keep)
    if not keep:
        raise RetrievalError(f"every caption is empty after {caption_mode!r} preparation")
    return [query_ids[i] for i in keep], [prepared.texts[i] for i in keep], prepared.manifest


def _embed(
    embedder: Any,
    device: str | None,
    cache_dir: Any,
    prepared: list[str],
    gallery_texts: list[str],
    gallery_ids: list[str],
    query_ids: list[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    """Query and passage vectors of both sides (one set when the model has no query/passage prefixes)."""
    from pancap_retrieval.retrieval.embedder import Embedder

    model = (
        embedder if isinstance(embedder, Embedder) else Embedder(embedder, device=device, cache_dir=cache_dir)
    )
    symmetric = model.query_prefix == model.passage_prefix
    cap_q = model.embed_queries(prepared, label="captions")
    caption_stats = model.last_stats.as_dict()  # long-text figures of these captions, cached ones included
    desc_p = model.embed_passages(gallery_texts, label="descriptions")
    description_stats = model.last_stats.as_dict()
    cap_p = cap_q if symmetric else model.embed_passages(prepared, label="captions")
    group_of: dict[str, int] = {}
    rows_of: dict[str, list[int]] = {}
    for row, image_id in enumerate(gallery_ids):
        group_of.setdefault(image_id, len(group_of))
        rows_of.setdefault(image_id, []).append(row)
    # d2c queries: the descriptions of each captioned image, in caption order
    d2c_rows = np.array([row for image_id in query_ids for row in rows_of[image_id]], dtype=np.int64)
    desc_q = (
        desc_p[d2c_rows]
        if symmetric
        else model.embed_queries([gallery_texts[r] for r in d2c_rows], label="descriptions")
    )
    caption_row = {image_id: row for row, image_id in enumerate(query_ids)}
    vectors = {
        "cap_q": cap_q,
        "cap_p": cap_p,
        "desc_p": desc_p,
        "desc_q": desc_q,
        "groups": np.array([group_of[image_id] for image_id in gallery_ids], dtype=np.int64),
        "c2d_positives": np.array([group_of[image_id] for image_id in query_ids], dtype=np.int64),
        "d2c_rows": d2c_rows,
        "d2c_positives": np.array([caption_row[gallery_ids[r]] for r in d2c_rows], dtype=np.int64),
    }
    return vectors, {"captions": caption_stats, "descriptions": description_stats}, model


def _top(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    backend: str,
    top_k: int,
    gallery_ids: list[str],
    query_ids: list[str],
    d2c_rows: np.ndarray,
    device: str | None,
) -> dict[str, Any]:
    """Each query's ``top_k`` gallery ids per direction from the search backend, to look at.

    c2d lists the image id of each description found (an image with several descriptions may appear more than
    once); with several descriptions per image, d2c holds one list per description of the image, in order.
    """
    from pancap_retrieval.retrieval.index import search

    top: dict[str, Any] = {"backend": backend}
    multi = len(set(gallery_ids)) < len(gallery_ids)
    for direction, ids in (("c2d", gallery_ids), ("d2c", query_ids)):
        queries, gallery = pairs[direction]
        _, found = search(queries, gallery, min(top_k, len(ids)), backend=backend, device=device)
        lists = [[ids[i] for i in row if i >= 0] for row in found]
        owners = query_ids if direction == "c2d" else [gallery_ids[r] for r in d2c_rows]
        if direction == "d2c" and multi:
            grouped: dict[str, list[list[str]]] = {}
            for owner, found_ids in zip(owners, lists):
                grouped.setdefault(owner, []).append(found_ids)
            top[direction] = grouped
        else:
            top[direction] = dict(zip(owners, lists))
    return top
