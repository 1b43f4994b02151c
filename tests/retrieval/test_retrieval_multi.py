"""Several descriptions per image: the any-hit rule for caption->description, every description a d2c query."""

from __future__ import annotations

import numpy as np
import pytest

from pancap_retrieval.errors import RetrievalError
from pancap_retrieval.retrieval.embedder import Embedder
from pancap_retrieval.retrieval.metrics import MULTI_DESCRIPTION_RULE, evaluate_retrieval, positive_ranks


def any_hit_ranks(scores: np.ndarray, groups: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """The rule computed directly from a full score matrix: 1 + the number of gallery items of other groups that
    score at least as high as the query's best positive (ties against the positive)."""
    ranks = []
    for i, group in enumerate(positives):
        best = scores[i, groups == group].max()
        ranks.append(1 + int(((scores[i] >= best) & (groups != group)).sum()))
    return np.array(ranks)


def test_hand_made_case() -> None:
    # image 0 has descriptions at rows 0 and 2, image 1 at row 1, image 2 at rows 3 and 4
    gallery = np.array([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8], [-1, 0]], dtype=np.float32)
    groups = [0, 1, 0, 2, 2]
    queries = np.array([[0, 1], [1, 0], [1, 0]], dtype=np.float32)
    # query 0 (image 0): its row 2 scores 1.0, best of all -> rank 1 though its row 0 scores 0
    # query 1 (image 1): row 0 scores 1.0 (image 0) above its own 0.8 -> rank 2
    # query 2 (image 2): best own row 3 scores 0.6; rows 0 (1.0) and 1 (0.8) are above -> rank 3
    assert positive_ranks(queries, gallery, [0, 1, 2], groups=groups).tolist() == [1, 2, 3]
    # with one positive per query (the first description only), query 0's row 0 scores 0: rows 1, 2, 3 are above
    # and row 4 ties at 0 (against it) -> rank 5
    assert positive_ranks(queries, gallery, [0, 1, 3]).tolist() == [5, 2, 3]


def test_ties_go_against_the_positive_but_not_to_other_positives() -> None:
    gallery = np.array([[1, 0], [1, 0], [1, 0]], dtype=np.float32)
    query = np.array([[1, 0]], dtype=np.float32)
    # rows 0 and 1 are the query's (equal) positives, row 2 a negative with the same score: rank 2, not 3
    assert positive_ranks(query, gallery, [7], groups=[7, 7, 8]).tolist() == [2]
    assert positive_ranks(query, gallery, [7], groups=[7, 7, 8], tie_rule="index").tolist() == [1]
    assert positive_ranks(query, gallery, [8], groups=[7, 7, 8], tie_rule="index").tolist() == [3]
    with pytest.raises(RetrievalError, match="no gallery row"):
        positive_ranks(query, gallery, [9], groups=[7, 7, 8])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_direct_computation_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # few distinct values, so ties are common
    gallery = rng.integers(-2, 3, size=(60, 4)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(25, 4)).astype(np.float32)
    groups = rng.integers(0, 25, size=60)
    groups[:25] = np.arange(25)  # every group has a row
    positives = rng.permutation(25)
    got = positive_ranks(queries, gallery, positives, groups=groups, chunk_bytes=256)
    scores = queries.astype(np.float64) @ gallery.astype(np.float64).T
    assert got.tolist() == any_hit_ranks(scores, groups, positives).tolist()


def test_groups_of_one_give_the_single_positive_ranks() -> None:
    rng = np.random.default_rng(5)
    gallery = rng.integers(-1, 2, size=(40, 3)).astype(np.float32)
    queries = rng.integers(-1, 2, size=(40, 3)).astype(np.float32)
    positives = rng.permutation(40)
    for rule in ("pessimistic", "index"):
        single = positive_ranks(queries, gallery, positives, tie_rule=rule)
        grouped = positive_ranks(queries, gallery, positives, groups=np.arange(40), tie_rule=rule)
        assert single.tolist() == grouped.tolist()


def test_evaluate_retrieval_against_an_independent_computation() -> None:
    model = Embedder("minilm")
    descriptions = {
        "cat": ["A grey cat sleeps on a windowsill.", "Snow falls on a quiet mountain village.", "A cat naps."],
        "car": ["A red sports car on a race track."],
        "bowl": ["A bowl of ramen with an egg.", "Noodle soup in a white bowl.", "A cat eating noodles."],
    }
    captions = {"cat": "A cat asleep in the sun by a window.", "car": "A red car.", "bowl": "A bowl of soup."}
    result = evaluate_retrieval(captions, descriptions, embedder=model, caption_mode="keep", n_bootstrap=0)

    owners = [image for image, texts in descriptions.items() for _ in texts]
    texts = [text for values in descriptions.values() for text in values]
    desc = model.embed_passages(texts)
    caps = model.embed_queries(list(captions.values()))
    scores = caps.astype(np.float64) @ desc.astype(np.float64).T
    images = list(captions)
    groups = np.array([images.index(owner) for owner in owners])
    c2d = any_hit_ranks(scores, groups, np.arange(3))
    assert result["ranks"]["c2d"] == dict(zip(images, c2d.tolist()))
    assert result["c2d"]["R@1"] == pytest.approx((c2d <= 1).mean())
    # d2c: all 7 descriptions are queries against the 3 captions
    d2c = [1 + int((scores[:, j] >= scores[images.index(o), j]).sum() - 1) for j, o in enumerate(owners)]
    assert result["d2c"]["n"] == 7 and result["c2d"]["n"] == 3
    assert result["ranks"]["d2c_each"] == {i: [r for r, o in zip(d2c, owners) if o == i] for i in images}
    assert result["ranks"]["d2c"] == {i: min(r for r, o in zip(d2c, owners) if o == i) for i in images}
    assert result["d2c"]["R@1"] == pytest.approx(np.mean(np.array(d2c) <= 1))
    assert result["rule"] == MULTI_DESCRIPTION_RULE and result["descriptions_per_image"] == pytest.approx(7 / 3)
    assert result["c2d"]["positives"] == "any description of the image"
