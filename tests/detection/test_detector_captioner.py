"""The `detector` captioner: exact text on hand-made detections, round trips through the project's parser in
every dialect, and real photos through the dataset runner (with 1x1, greyscale, RGBA and corrupt images)."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import skimage.data
from PIL import Image

from pancap_retrieval.captioners import get_captioner
from pancap_retrieval.captioners.base import Example, caption_dataset
from pancap_retrieval.captioners.detector import DetectorCaptioner, compose_caption, relation
from pancap_retrieval.captions.boxes import Box, iou
from pancap_retrieval.captions.model import parse_caption
from pancap_retrieval.captions.store import CaptionStore
from pancap_retrieval.detection import COCO80_NAMES, MODEL_SHA256, Detection
from pancap_retrieval.detection.measure import ImageAnalysis

CAT_BOX = Box(0 / 451, 0 / 300, 395 / 451, 300 / 300)  # drawn by hand on skimage's chelsea (451 x 300)
PERSON_BOX = Box(20 / 512, 14 / 512, 362 / 512, 512 / 512)  # astronaut (512 x 512)
CUP_BOX = Box(172 / 600, 18 / 400, 410 / 600, 305 / 400)  # coffee (600 x 400)


def red_blue(width: int = 200, height: int = 100) -> Image.Image:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(array)


def tolerance(dialect: str, width: int, height: int) -> float:
    """How far a box can move when written in ``dialect`` and read back."""
    if dialect == "norm":
        return 5e-4 + 1e-9
    if dialect == "pixel":
        return 0.5 / min(width, height) + 1e-9
    return 0.5 / 1000 * max(width, height) / min(width, height) + 1e-9


def assert_round_trip(text: str, stages: dict, dialect: str, width: int, height: int) -> None:
    """Parsing ``text`` gives one entity per detection, with the detected box, in caption order."""
    parsed = parse_caption(text, dialect="auto", width=width, height=height)
    assert not parsed.warnings and parsed.malformed == 0
    assert len(parsed.entities) == len(stages["detections"]) == len(stages["entities"])
    assert all(len(e.boxes) == 1 for e in parsed.entities)
    assert sorted(e["box"] for e in stages["entities"]) == sorted(d["box"] for d in stages["detections"])
    limit = tolerance(dialect, width, height) + 1e-4  # stage boxes are kept to 4 decimals
    for written, read in zip([e["box"] for e in stages["entities"]], parsed.boxes):
        assert max(abs(x - y) for x, y in zip(written, read.as_list())) <= limit, (written, read)


def test_exact_caption_of_two_hand_made_detections():
    detections = [
        Detection("cat", 15, 0.9, Box(0.0, 0.0, 0.5, 1.0)),
        Detection("dog", 16, 0.8, Box(0.5, 0.0, 1.0, 1.0)),
    ]
    text, stages = compose_caption(detections, ImageAnalysis.of(red_blue()), 200, 100)
    assert text == (
        "The image shows a cat and a dog in a dimly lit, neutral-toned scene dominated by red and blue.\n\n"
        "The cat [[0.0, 0.0, 0.5, 1.0]] is large, covering about 50% of the image, and is on the left side of "
        "the image, in the foreground. The cat is mostly red.\n\n"
        "The dog [[0.5, 0.0, 1.0, 1.0]] is large, covering about 50% of the image, and is on the right side of "
        "the image, in the foreground. The dog is mostly blue. The dog is next to the cat, on its right.\n\n"
        "The lighting is dim, with a mean brightness of 21% and low contrast; the left half of the image is "
        "brighter. The colour balance is neutral and the colours are vivid; the overall palette is red and blue."
    )
    # mean luma of half (255, 0, 0) and half (0, 0, 255): (0.299 + 0.114) / 2
    assert stages["global"]["brightness"] == 0.2065
    assert stages["relations"] == [
        {"subject": 1, "relation": "next to", "object": 0, "text": "is next to the cat, on its right"}
    ]
    assert [e["colours"] for e in stages["entities"]] == [[["red", 1.0]], [["blue", 1.0]]]
    parsed = parse_caption(text)
    assert [(e.phrase, e.boxes) for e in parsed.entities] == [
        ("The cat", [detections[0].box]),
        ("The dog", [detections[1].box]),
    ]
    pixel_text, _ = compose_caption(detections, ImageAnalysis.of(red_blue()), 200, 100, dialect="pixel")
    assert (
        "The cat (bounding box: [0, 0, 100, 100]) is large" in pixel_text
        and "The dog (bounding box: [100, 0, 200, 100]) is large" in pixel_text
    )


def test_counts_ordinals_and_relations():
    people = [
        Detection("person", 0, 0.5, Box(0.6, 0.1, 0.9, 0.9)),
        Detection("person", 0, 0.7, Box(0.1, 0.1, 0.4, 0.9)),
    ]
    cup = Detection("cup", 41, 0.9, Box(0.45, 0.05, 0.55, 0.15))
    text, stages = compose_caption([cup, *people], ImageAnalysis.of(red_blue()), 200, 100)
    assert text.startswith("The image shows a cup and two people in")
    # left to right: the person at x 0.1..0.4 is the first
    assert (
        "The first person [[0.1, 0.1, 0.4, 0.9]]" in text
        and "The second person [[0.6, 0.1, 0.9, 0.9]]" in text
    )
    assert (
        "The cup [[0.45, 0.05, 0.55, 0.15]] is small, covering about 1% of the image, and is at the top centre"
        in text
    )
    assert "in the background" in text  # area 0.01 against the people's 0.24
    # centres: cup (0.5, 0.1), first person (0.25, 0.5), second person (0.75, 0.5); vertical offsets win
    assert [(r["subject"], r["relation"], r["object"]) for r in stages["relations"]] == [
        (1, "below", 0),
        (2, "below", 0),
        (2, "right of", 1),
    ]
    assert "The first person is below the cup." in text
    assert "The second person is below the cup and to the right of the first person." in text


def test_relation_words():
    assert relation(Box(0.4, 0.4, 0.5, 0.5), Box(0, 0, 1, 1))[0] == "inside"
    assert relation(Box(0, 0, 1, 1), Box(0.4, 0.4, 0.5, 0.5))[0] == "contains"
    assert relation(Box(0, 0, 0.5, 0.5), Box(0.3, 0.3, 0.8, 0.8))[0] == "overlapping"
    assert relation(Box(0.4, 0.0, 0.6, 0.2), Box(0.4, 0.6, 0.6, 0.8)) == ("above", "is above {}")
    assert relation(Box(0.4, 0.6, 0.6, 0.8), Box(0.4, 0.0, 0.6, 0.59)) == (
        "next to",
        "is next to {}, below it",
    )


def test_no_detection_still_has_the_global_state():
    text, stages = compose_caption([], ImageAnalysis.of(Image.new("L", (30, 20), 128)), 30, 20)
    assert text == (
        "The image shows a moderately lit, black-and-white scene in shades of grey. No objects of the 80 COCO "
        "categories were detected in it (score threshold 0.30).\n\n"
        "The lighting is moderate, with a mean brightness of 50% and low contrast. The image is greyscale, "
        "without colour; its tones are mostly grey."
    )
    assert parse_caption(text).entities == [] and stages["detections"] == []


@pytest.mark.parametrize("dialect", ["norm", "asmv2", "pixel"])
def test_every_category_and_many_of_one_round_trip(dialect):
    """One entity per detection, whatever the category name (multi-word ones included) and however many."""
    rng = np.random.default_rng(0)
    detections = []
    for class_id, label in enumerate([*COCO80_NAMES, *["person"] * 14]):
        x, y = (float(v) for v in rng.uniform(0, 0.8, size=2))
        w, h = (float(v) for v in rng.uniform(0.01, 0.2, size=2))
        box = Box(round(x, 4), round(y, 4), round(x + w, 4), round(y + h, 4))
        detections.append(
            Detection(label, min(class_id, 79) if label != "person" else 0, 0.9 - class_id / 200, box)
        )
    width, height = 640, 480
    text, stages = compose_caption(
        detections, ImageAnalysis.of(red_blue(64, 48)), width, height, dialect=dialect
    )
    assert "15 people" in text and "The 15th person " in text
    assert_round_trip(text, stages, dialect, width, height)
    phrases = [e.phrase for e in parse_caption(text, width=width, height=height).entities]
    assert phrases == [f"The {e['name']}" for e in stages["entities"]]
    assert {"The dining table", "The hot dog", "The twelfth person", "The 13th person"} <= set(phrases)
    assert len(stages["relations"]) == 8


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    names = ("chelsea", "astronaut", "coffee", "camera")
    return {name: Image.fromarray(getattr(skimage.data, name)()) for name in names}


@pytest.fixture(scope="module")
def captioner() -> DetectorCaptioner:
    return DetectorCaptioner()


def test_real_photos_through_the_runner(photos, captioner, tmp_path):
    rows = [
        ("chelsea", png(photos["chelsea"])),
        ("astronaut-rgba", png(photos["astronaut"].convert("RGBA"))),
        ("coffee", jpeg(photos["coffee"])),
        ("camera-grey", png(photos["camera"])),  # mode L: a real greyscale photo
        ("one-pixel", png(Image.new("RGB", (1, 1), (10, 200, 30)))),
        ("garbage", b"\x89PNG but not really an image"),
    ]
    sizes = {
        "chelsea": (451, 300),
        "astronaut-rgba": (512, 512),
        "coffee": (600, 400),
        "camera-grey": (512, 512),
    }
    from pancap_retrieval.data.records import features as pancap_features

    features = pancap_features()
    dataset = datasets.Dataset.from_list(
        [
            {
                "example_id": example_id,
                "image": {"bytes": data, "path": None},
                "description": "",
                "width": sizes.get(example_id, (1, 1))[0],
                "height": sizes.get(example_id, (1, 1))[1],
                "split": "test",
            }
            for example_id, data in rows
        ],
        features=features,
    )
    store = CaptionStore(tmp_path / "captions.jsonl")
    stats = caption_dataset(captioner, dataset, store, progress=False)
    assert (stats.total, stats.ok, stats.failed) == (6, 5, 1)
    assert "cannot decode image" in stats.failures["garbage"]
    records = {r.example_id: r for r in store.records()}
    assert records["garbage"].status == "failed" and records["garbage"].caption is None

    for example_id, label, hand in [
        ("chelsea", "cat", CAT_BOX),
        ("astronaut-rgba", "person", PERSON_BOX),
        ("coffee", "cup", CUP_BOX),
    ]:
        record = records[example_id]
        width, height = sizes[example_id]
        parsed = parse_caption(record.caption, width=width, height=height)
        entity = next(e for e in parsed.entities if label in e.phrase)
        assert iou(entity.boxes[0], hand) >= 0.5, (example_id, entity)
        assert_round_trip(record.caption, record.stages, "norm", width, height)
        assert record.meta == {"n_entities": len(parsed.entities), "dialect": "norm"}

    grey = records["camera-grey"]
    assert grey.stages["global"]["greyscale"] is True and "black-and-white scene" in grey.caption
    assert any(d["label"] == "person" for d in grey.stages["detections"])
    tiny = records["one-pixel"]
    assert tiny.status == "ok" and "No objects of the 80 COCO categories were detected" in tiny.caption
    assert tiny.stages["global"]["palette"] == [["green", 1.0]]

    again = caption_dataset(captioner, dataset, store, progress=False)
    assert (again.skipped_done, again.ok, again.failed) == (6, 0, 0)


@pytest.mark.parametrize("dialect", ["asmv2", "pixel"])
def test_real_photos_round_trip_other_dialects(photos, dialect):
    captioner = DetectorCaptioner(dialect=dialect, score_threshold=0.15)
    for name in ("chelsea", "coffee"):
        image = photos[name]
        text, stages = captioner.caption_image(image)
        assert len(stages["detections"]) >= 1
        assert_round_trip(text, stages, dialect, image.width, image.height)
        assert parse_caption(text, width=image.width, height=image.height).dialect == dialect


def test_unusable_image_is_a_failed_record(captioner):
    (record,) = captioner.caption_batch([Example("empty", Image.new("RGB", (0, 0)), 0, 0)])
    assert record.status == "failed" and record.error == "empty: image has no pixels (0x0)"


def test_options_and_manifest():
    captioner = get_captioner("detector", dialect="pixel", score_threshold=0.4, batch_size=3)
    assert isinstance(captioner, DetectorCaptioner) and captioner.default_batch_size == 3
    manifest = captioner.manifest()
    assert manifest["model_sha256"] == MODEL_SHA256
    assert (manifest["name"], manifest["box_dialect"], manifest["score_threshold"]) == ("detector", "pixel", 0.4)
    with pytest.raises(ValueError, match="unknown box dialect 'xyxy'"):
        DetectorCaptioner(dialect="xyxy")
    with pytest.raises(ValueError, match="batch_size"):
        DetectorCaptioner(batch_size=0)
