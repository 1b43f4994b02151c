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
from dataclasses import dataclass, field
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


def score_ranks(
    ranks: Sequence[int] | np.ndarray,
    gallery_size: int,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    tie_rule: TieRule = "pessimistic",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The score step: metrics and bootstrap CIs of one direction's ranks, with its gallery size and tie rule."""
    out = retrieval_metrics(ranks, ks, n_bootstrap=n_bootstrap, seed=seed)
    out["gallery_size"] = int(gallery_size)
    out["tie_rule"] = tie_rule
    return out


def direction_metrics(
    queries: Any,
    gallery: Any,
    positives: Sequence[int] | np.ndarray,
    *,
    groups: Sequence[int] | np.ndarray | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    tie_rule: TieRule = "pessimistic",
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Ranks and metrics of one direction (queries against gallery)."""
    ranks = positive_ranks(queries, gallery, positives, groups=groups, tie_rule=tie_rule, device=device)
    return score_ranks(ranks, np.asarray(gallery).shape[0], ks=ks, tie_rule=tie_rule, n_bootstrap=n_bootstrap, seed=seed)


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


@dataclass(frozen=True)
class ScoreOptions:
    """How the search, rank and score steps run: the ks, tie rule, bootstrap, device and the top-k search."""

    ks: Iterable[int] = DEFAULT_KS
    tie_rule: TieRule = "pessimistic"
    n_bootstrap: int = 1000
    seed: int = 0
    device: str | None = None
    backend: str | None = None
    top_k: int = 10


@dataclass
class Sides:
    """The two sides of a retrieval, in separate id spaces: the gallery (an image id per item; an image may have
    several) and the queries (one per image), and the items left out, counted."""

    gallery_ids: list[str]
    gallery_items: list[Any]
    query_ids: list[str]
    query_items: list[Any]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return len(set(self.gallery_ids)) < len(self.gallery_ids)


@dataclass
class Pairing:
    """Who is whose positive, from the ids alone: the group (image) of each gallery row, each query's group, the
    gallery rows that are back queries (the items of each query's image, in query order) and their positives."""

    groups: np.ndarray
    positives: np.ndarray
    back_rows: np.ndarray
    back_positives: np.ndarray

    @classmethod
    def of(cls, sides: Sides) -> Pairing:
        group_of: dict[str, int] = {}
        rows_of: dict[str, list[int]] = {}
        for row, image_id in enumerate(sides.gallery_ids):
            group_of.setdefault(image_id, len(group_of))
            rows_of.setdefault(image_id, []).append(row)
        back_rows = np.array([row for image_id in sides.query_ids for row in rows_of[image_id]], dtype=np.int64)
        query_row = {image_id: row for row, image_id in enumerate(sides.query_ids)}
        return cls(
            groups=np.array([group_of[image_id] for image_id in sides.gallery_ids], dtype=np.int64),
            positives=np.array([group_of[image_id] for image_id in sides.query_ids], dtype=np.int64),
            back_rows=back_rows,
            back_positives=np.array([query_row[sides.gallery_ids[r]] for r in back_rows], dtype=np.int64),
        )


def evaluate_sides(retriever: Any, sides: Sides, options: ScoreOptions = ScoreOptions()) -> dict[str, Any]:
    """Encode both sides through ``retriever`` (a :class:`~pancap_retrieval.retrieval.retriever.Retriever`), rank,
    score and (with a search backend) search both of its directions.

    Keyed by direction label (``c2d``, ``d2c``; ``i2d``, ``d2i``): metrics per direction; ``ranks`` (each image's rank
    of its positive per direction; with several gallery items per image also ``<back>_each``), ``top`` (or None)
    and ``embedding`` (what the retriever reports of the encoding).
    """
    from pancap_retrieval.directions import between
    from pancap_retrieval.retrieval.retriever import encode

    forward, back = between(retriever.query_kind, retriever.gallery_kind)
    pairing = Pairing.of(sides)
    encoded = encode(retriever, sides.query_items, sides.gallery_items, pairing.back_rows)
    multi = sides.multi
    pairs = {
        forward.label: (encoded.queries, encoded.gallery, pairing.positives, pairing.groups if multi else None),
        back.label: (encoded.back_queries, encoded.back_gallery, pairing.back_positives, None),
    }
    owners = {forward.label: sides.query_ids, back.label: [sides.gallery_ids[r] for r in pairing.back_rows]}
    out: dict[str, Any] = {"top": None, "ranks": {}, "embedding": encoded.report}
    for label, (queries, gallery, positives, groups) in pairs.items():
        ranks = positive_ranks(
            queries, gallery, positives, groups=groups, tie_rule=options.tie_rule, device=options.device
        )
        out[label] = score_ranks(
            ranks, gallery.shape[0], ks=options.ks, tie_rule=options.tie_rule,
            n_bootstrap=options.n_bootstrap, seed=options.seed,
        )
        if multi:
            mine = label == forward.label
            out[label]["positives"] = f"any {back.query} of the image" if mine else f"its {forward.query}"
        out["ranks"].update(_ranks_by_image(label, owners[label], ranks, multi and label == back.label))
    if options.backend is not None:
        out["top"] = _top(pairs, options, sides, owners, (forward.label, back.label))
    if multi:
        out["descriptions_per_image"] = len(sides.gallery_ids) / len(set(sides.gallery_ids))
    return out


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
    ``embedder`` is an :class:`~pancap_retrieval.retrieval.embedder.Embedder`, a name/path for one, or a
    :class:`~pancap_retrieval.retrieval.retriever.TextRetriever`;
    ``caption_mode`` is a :func:`~pancap_retrieval.retrieval.textprep.prepare_texts` mode applied to captions.
    With a search ``backend`` the result also holds ``top``: per direction, each query id's ``top_k`` gallery ids
    from :func:`~pancap_retrieval.retrieval.index.search` (ties by ascending gallery index), to look at.
    ``ranks``: per direction, each query id's rank of its positive.

    A description value may be a list: the image's several descriptions (see :data:`MULTI_DESCRIPTION_RULE`).
    Then every description is a c2d gallery item and a d2c query; ``ranks["d2c"]`` holds each image's best rank
    and ``ranks["d2c_each"]`` the rank of each of its descriptions, in order; ``top["d2c"]`` one list per
    description. With one description per image everything is as before.
    """
    sides = retrieval_sides(captions, descriptions)
    prep_manifest = _prepare(sides, caption_mode, cache_dir, prep_options)
    retriever = _text_retriever(embedder, device, cache_dir)
    options = ScoreOptions(ks, tie_rule, n_bootstrap, seed, device, backend, top_k)
    out = evaluate_sides(retriever, sides, options)
    if sides.multi:
        out["rule"] = MULTI_DESCRIPTION_RULE
    return {
        **out,
        "n": len(sides.query_ids),
        "n_descriptions": len(sides.gallery_ids),
        "skipped": sides.skipped,
        "text_prep": prep_manifest,
        "embedder": retriever.manifest(),
    }


def _text_retriever(embedder: Any, device: str | None, cache_dir: Any) -> Any:
    from pancap_retrieval.retrieval.embedder import Embedder, build_embedder
    from pancap_retrieval.retrieval.retriever import TextRetriever

    if isinstance(embedder, TextRetriever):
        return embedder
    if not isinstance(embedder, Embedder):
        embedder = build_embedder(embedder, device=device, cache_dir=cache_dir)
    return TextRetriever(embedder)


def _ranks_by_image(label: str, owners: list[str], ranks: np.ndarray, each: bool) -> dict[str, Any]:
    """``{label: {image id: rank}}``; with ``each`` (back queries, several per image) the best rank per image and
    ``<label>_each`` (every rank, in order)."""
    if not each:
        return {label: dict(zip(owners, (int(r) for r in ranks)))}
    by_owner: dict[str, list[int]] = {}
    for owner, rank in zip(owners, ranks):
        by_owner.setdefault(owner, []).append(int(rank))
    return {label: {owner: min(values) for owner, values in by_owner.items()}, f"{label}_each": by_owner}


def retrieval_sides(
    captions: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
    descriptions: Descriptions,
) -> Sides:
    """The sides step: gallery (descriptions, an image id per description) and queries (captions) with separate id
    lists; unusable items counted."""
    skipped = {"empty_caption": 0, "no_description": 0, "empty_description": 0}
    gallery_ids, gallery_texts = description_gallery(descriptions, skipped)
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
    return Sides(gallery_ids, gallery_texts, query_ids, query_texts, skipped)


def description_gallery(descriptions: Descriptions, skipped: dict[str, int]) -> tuple[list[str], list[str]]:
    """Every usable description with its image id (an image may have several); empty ones counted in ``skipped``."""
    skipped.setdefault("empty_description", 0)
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
    return gallery_ids, gallery_texts


def _prepare(
    sides: Sides, caption_mode: str, cache_dir: Any, prep_options: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Captions prepared for embedding (boxes stripped, kept or rewritten) in place in ``sides``; those left empty
    are counted out."""
    from pancap_retrieval.retrieval.textprep import prepare_texts

    prepared = prepare_texts(sides.query_items, caption_mode, cache_dir=cache_dir, **dict(prep_options or {}))
    keep = [i for i, text in enumerate(prepared.texts) if text.strip()]
    if len(keep) < len(sides.query_ids):
        sides.skipped["empty_after_prep"] = len(sides.query_ids) - len(keep)
    if not keep:
        raise RetrievalError(f"every caption is empty after {caption_mode!r} preparation")
    sides.query_ids = [sides.query_ids[i] for i in keep]
    sides.query_items = [prepared.texts[i] for i in keep]
    return prepared.manifest


def _top(
    pairs: dict[str, tuple[np.ndarray, np.ndarray, Any, Any]],
    options: ScoreOptions,
    sides: Sides,
    owners: dict[str, list[str]],
    labels: tuple[str, str],
) -> dict[str, Any]:
    """The search step: each query's ``top_k`` gallery ids per direction from the search backend, to look at.

    The forward direction lists the image id of each gallery item found (an image with several descriptions may
    appear more than once); with several per image, the back direction holds one list per item, in order.
    """
    from pancap_retrieval.retrieval.index import search

    top: dict[str, Any] = {"backend": options.backend}
    forward, back = labels
    for label, ids in ((forward, sides.gallery_ids), (back, sides.query_ids)):
        queries, gallery = pairs[label][:2]
        _, found = search(queries, gallery, min(options.top_k, len(ids)), backend=options.backend, device=options.device)
        lists = [[ids[i] for i in row if i >= 0] for row in found]
        if label == back and sides.multi:
            grouped: dict[str, list[list[str]]] = {}
            for owner, found_ids in zip(owners[label], lists):
                grouped.setdefault(owner, []).append(found_ids)
            top[label] = grouped
        else:
            top[label] = dict(zip(owners[label], lists))
    return top
