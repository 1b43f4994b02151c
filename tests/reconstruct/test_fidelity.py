from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.detection import Detection
from reconstruct.fidelity import (
    InceptionFeatures,
    adherence,
    coco_class_of,
    content_crop,
    fid,
    fidelity_scores,
    inception_model_path,
    kid,
    match_instances,
)
from reconstruct.layout import build_layout, layout_from_caption

CAPTIONS = {
    "astronaut": "A woman [[0.02, 0.02, 0.72, 1.0]] in a white spacesuit poses before a flag [[0.75, 0.1, 1.0, 0.5]].",
    "coffee": "A cup [[0.27, 0.03, 0.69, 0.78]] of coffee on a saucer.",
    "chelsea": "A cat [[0.01, 0.0, 0.93, 0.98]] lies on a rug.",
    "rocket": "A rocket on a launch pad under a clear sky.",
}


@pytest.fixture(scope="module")
def features():
    return InceptionFeatures(device="cpu")


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sa @ sb).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * root))


def test_fid_matches_the_textbook_formula_on_both_routes():
    rng = np.random.default_rng(0)
    small_a, small_b = (
        rng.normal(size=(5, 8)),
        rng.normal(1.0, 2.0, size=(6, 8)),
    )  # 30 <= 64: nuclear-norm route
    big_a, big_b = rng.normal(size=(40, 3)), rng.normal(0.5, 1.5, size=(30, 3))  # 1200 > 9: eigen route
    assert fid(small_a, small_b) == pytest.approx(_scipy_fid(small_a, small_b), rel=1e-6)
    assert fid(big_a, big_b) == pytest.approx(_scipy_fid(big_a, big_b), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid(small_a[:1], small_b)


def test_kid_reports_the_subset_size_it_used():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(9, 4))
    result = kid(a, b, subset_size=6, n_subsets=20)
    assert result["subset_size"] == 6 and result["n_subsets"] == 20 and result["std"] > 0
    shifted = kid(a, b + 3.0, subset_size=6, n_subsets=20)
    assert shifted["mean"] > 10 * abs(result["mean"])


def test_kid_of_sets_within_one_subset_has_no_std():
    """Below the subset size every "subset" is both whole sets: one MMD^2, and no spread to report (it used to
    be the spread of one number repeated, 1e-16)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    result = kid(a, b, subset_size=1000, n_subsets=20)
    assert result["std"] is None and result["n_subsets"] == 1 and "not available" in result["note"]
    k = {name: (x @ y.T / 4 + 1) ** 3 for name, (x, y) in {"aa": (a, a), "bb": (b, b), "ab": (a, b)}.items()}
    mmd = sum((k[s].sum() - np.trace(k[s])) / (len(x) * (len(x) - 1)) for s, x in (("aa", a), ("bb", b)))
    assert result["mean"] == pytest.approx(mmd - 2 * k["ab"].mean())


def test_inception_features_are_2048_d_and_deterministic(features, photos):
    assert inception_model_path().name == "default_1.pt"
    feats = features([photos["coffee"], photos["coffee"], photos["chelsea"]])
    assert feats.shape == (3, 2048)
    assert np.array_equal(feats[0], feats[1])
    assert (feats >= 0).all()  # pool features after ReLU


def test_phrases_naming_coco_classes():
    assert coco_class_of("two cameras") is None
    assert coco_class_of("a woman in a white spacesuit") == 0  # synonym of person
    assert coco_class_of("three cups") == 41  # plural
    assert coco_class_of("a wooden dining table") == 60
    assert coco_class_of("a traffic light") == 9  # two-word name
    assert coco_class_of("the sofa") == 57  # couch
    assert coco_class_of("a man holding a dog") == 0  # the head is the man; the dog is in his participle phrase


# Hand-labelled: the COCO class each phrase's entity is (None: not a COCO object, or only a part of one).
LABELLED = {
    "an orange retina": None,
    "an orange spacesuit": None,
    "an apple tree": None,
    "a hot dog stand": None,
    "a man in a red hat": "person",
    "a teddy bear": "teddy bear",
    "a wine glass": "wine glass",
    "the traffic light": "traffic light",
    "a cell phone": "cell phone",
    "a dog": "dog",
    "two cats": "cat",
    "a red car": "car",
    "a sports ball": "sports ball",
    "a ripe orange": "orange",
    "three green apples": "apple",
    "a hot dog": "hot dog",
    "a red fire hydrant": "fire hydrant",
    "a stop sign": "stop sign",
    "a parking meter": "parking meter",
    "a wooden baseball bat": "baseball bat",
    "a tennis racket": "tennis racket",
    "a woman holding an umbrella": "person",
    "a cat on a couch": "cat",
    "a brown teddy bear": "teddy bear",
    "an empty wine bottle": "bottle",
    "a bus stop": None,
    "a car door": None,
    "a bicycle wheel": None,
    "a polar bear": "bear",
    "a pair of skis": "skis",
    "a slice of pizza": "pizza",
    "a laptop computer": "laptop",
    "a computer mouse": "mouse",
    "a flat-screen television": "tv",
    "a kitchen sink": "sink",
    "a microwave oven": "microwave",
    "a white pickup truck": "truck",
    "a small sailboat": "boat",
    "two zebras grazing": "zebra",
    "the clock tower": None,
    "a wall clock": "clock",
    "a man wearing a tie": "person",
    "a skateboard ramp": None,
    "an orange cat": "cat",
    "a bowl of fruit": "bowl",
    "a baseball glove": "baseball glove",
    "a baseball player": "person",
    "a donut shop": None,
    "a refrigerator door": None,
    "the sky": None,
}


def test_the_coco_class_is_read_from_the_head_noun_of_50_hand_labelled_phrases():
    from pancap_retrieval.detection import COCO80_NAMES

    assert len(LABELLED) == 50
    wrong = {}
    for phrase, name in LABELLED.items():
        got = coco_class_of(phrase)
        if got != (None if name is None else COCO80_NAMES.index(name)):
            wrong[phrase] = None if got is None else COCO80_NAMES[got]
    assert len(wrong) <= 2, wrong


def test_greedy_one_to_one_matching():
    dets = [Detection("dog", 16, 0.9, Box(0.0, 0.0, 0.5, 0.5))]
    # two dogs where one was detected: only one can take the detection, the better one
    assert match_instances([(16, Box(0.0, 0.0, 0.5, 0.25)), (16, Box(0.0, 0.0, 0.5, 0.5))], dets) == [
        0.0,
        1.0,
    ]


def test_adherence_counts_only_coco_named_boxes():
    layout = build_layout(
        "x",
        "x",
        [
            {"phrase": "a dog", "boxes": [[0.0, 0.0, 0.5, 0.5]]},
            {"phrase": "a cat", "boxes": [[0.5, 0.5, 1.0, 1.0]]},
            {"phrase": "the sky", "boxes": [[0.0, 0.0, 1.0, 0.3]]},
        ],
    )
    dets = [
        Detection("dog", 16, 0.9, Box(0.0, 0.0, 0.5, 0.4)),
        Detection("cat", 15, 0.9, Box(0.0, 0.5, 0.5, 1.0)),
    ]
    result = adherence([layout], [dets])
    assert result["instances"] == 2 and result["matched"] == 1
    assert result["success_rate"] == 0.5 and result["mIoU"] == pytest.approx(0.4)
    assert result["per_class"] == {
        "cat": {"instances": 1, "matched": 0},
        "dog": {"instances": 1, "matched": 1},
    }


def test_content_crop_removes_the_letterbox(photos):
    from PIL import Image

    layout = layout_from_caption("x", image_size=(200, 100), canvas_size=64)
    crop = content_crop(Image.new("RGB", (64, 64)), layout)
    assert crop.size == (64, 32)


@pytest.mark.slow
def test_redraws_equal_to_originals_score_perfectly(features, photos):
    from pancap_retrieval.detection import Detector

    names = list(CAPTIONS)
    originals = [photos[n] for n in names]
    layouts = [layout_from_caption(CAPTIONS[n], n, image_size=photos[n].size, mode="aspect") for n in names]
    scores = fidelity_scores(originals, originals, layouts, features=features, detector=Detector())
    assert scores["n_pairs"] == 4
    assert scores["cosine"]["mean"] == pytest.approx(1.0)
    assert scores["retrieval"]["R@1"] == 1.0 and scores["shuffled"]["R@1"] == 0.0
    assert scores["fid"]["value"] == pytest.approx(0.0, abs=1e-6) and "biased" in scores["fid"]["note"]
    assert scores["kid"]["subset_size"] == 4
    # woman, cup and cat are COCO-named and where the captions say; the flag is not a COCO class
    for side in ("redraw", "original"):
        assert scores["adherence"][side]["instances"] == 3
        assert scores["adherence"][side]["matched"] == 3
    assert scores["adherence"]["original"]["mIoU"] > 0.95


@pytest.mark.slow
def test_one_pair_is_reported_not_crashed(features, photos):
    layout = layout_from_caption(CAPTIONS["coffee"], "coffee")
    scores = fidelity_scores([photos["coffee"]], [photos["chelsea"]], [layout], features=features)
    assert scores["fid"]["value"] is None and "at least 2" in scores["fid"]["note"]
    assert scores["adherence"] == {"skipped": "no detector"}
    assert scores["retrieval"]["R@1"] == 1.0  # one candidate: trivially found
