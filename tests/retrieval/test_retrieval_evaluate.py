"""End-to-end retrieval evaluation on real SA-Pancap captions with the real MiniLM embedder."""

from __future__ import annotations

import pytest

from pancap_retrieval.captions import strip_boxes
from pancap_retrieval.errors import RetrievalError
from pancap_retrieval.retrieval.embedder import Embedder
from pancap_retrieval.retrieval.metrics import evaluate_retrieval

UNRELATED = "A plate of spaghetti with tomato sauce sits on a kitchen counter."


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder("minilm")


@pytest.fixture(scope="module")
def images(sapancap_captions: list[dict]) -> dict[str, str]:
    """24 real panoptic captions (with boxes), keyed by image path."""
    return {item["image_path"]: item["gt_response"] for item in sapancap_captions[:24]}


@pytest.mark.slow
def test_half_copied_half_constant_captions_score_about_one_half(
    images: dict[str, str], minilm: Embedder
) -> None:
    # descriptions: the captions without boxes; captions: half are the boxed caption of the image (equal to its
    # description once stripped), half one identical unrelated sentence
    descriptions = {image: strip_boxes(text) for image, text in images.items()}
    captions = {image: (text if i % 2 == 0 else UNRELATED) for i, (image, text) in enumerate(images.items())}
    result = evaluate_retrieval(
        captions, descriptions, embedder=minilm, caption_mode="strip", n_bootstrap=200
    )
    assert result["n"] == 24 and result["n_descriptions"] == 24
    assert 0.5 <= result["c2d"]["R@1"] <= 0.55
    # d2c: the 12 identical captions tie for every description of their images, and ties go against the positive
    assert result["d2c"]["R@1"] == 0.5
    assert result["d2c"]["median_rank"] >= 1
    lo, hi = result["c2d"]["R@1_ci"]
    assert lo <= result["c2d"]["R@1"] <= hi
    assert result["text_prep"]["mode"] == "strip"
    assert result["embedder"]["embedder"] == "minilm"
    assert result["embedder"]["stats"]["over_limit_rate"] > 0  # panoptic captions exceed 256 word pieces


def test_same_image_id_on_both_sides_is_a_hit_not_dropped(minilm: Embedder) -> None:
    texts = {
        "img1": "A red car parked on a street.",
        "img2": "A dog asleep on a rug.",
        "img3": "Snowy mountains.",
    }
    result = evaluate_retrieval(texts, texts, embedder=minilm, caption_mode="keep", n_bootstrap=0)
    assert result["c2d"]["R@1"] == 1.0 and result["d2c"]["R@1"] == 1.0 and result["n"] == 3


def test_skips_are_counted(minilm: Embedder) -> None:
    descriptions = {
        "a": "A red car parked on a street.",
        "b": "A dog asleep on a rug.",
        "c": "",
        "d": "Snow.",
    }
    captions = {"a": "A red car on a street.", "b": "   ", "c": "Anything.", "x": "A cat.", "d": None}
    result = evaluate_retrieval(captions, descriptions, embedder=minilm, caption_mode="keep", n_bootstrap=0)
    assert result["n"] == 1
    assert result["skipped"] == {"empty_caption": 2, "no_description": 2, "empty_description": 1}
    assert result["c2d"]["gallery_size"] == 3 and result["d2c"]["gallery_size"] == 1


def test_no_usable_pair_is_an_error(minilm: Embedder) -> None:
    with pytest.raises(RetrievalError, match="no caption has a matching description"):
        evaluate_retrieval({"x": "A cat."}, {"a": "A dog."}, embedder=minilm, caption_mode="keep")
    with pytest.raises(RetrievalError, match="duplicate caption id 'a'"):
        evaluate_retrieval([("a", "x"), ("a", "y")], {"a": "A dog."}, embedder=minilm, caption_mode="keep")
