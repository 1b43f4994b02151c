"""The packaged ONNX detector on real photos, its pre/post-processing on hand-made values, and its errors."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import skimage.data
from PIL import Image

from pancap_retrieval.captions.boxes import Box, iou
from pancap_retrieval.detection import (
    COCO80_NAMES,
    MODEL_PATH,
    MODEL_SHA256,
    Detection,
    Detector,
    nms,
    to_rgb,
)
from pancap_retrieval.detection import detector as detector_module
from pancap_retrieval.errors import ModelLoadError

# Boxes drawn by hand on the photos (pixels x1, y1, x2, y2) and the image sizes (width, height).
CAT_BOX, CAT_SIZE = (0, 0, 395, 300), (451, 300)  # chelsea: the cat fills the frame up to its right ear
PERSON_BOX, PERSON_SIZE = (20, 14, 362, 512), (512, 512)  # astronaut: hair top to the cut-off at the bottom
CUP_BOX, CUP_SIZE = (172, 18, 410, 305), (600, 400)  # coffee: rim, handle bottom; saucer and spoon left out


def hand_box(pixels: tuple[int, int, int, int], size: tuple[int, int]) -> Box:
    width, height = size
    x1, y1, x2, y2 = pixels
    return Box(x1 / width, y1 / height, x2 / width, y2 / height)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {
        name: Image.fromarray(getattr(skimage.data, name)()) for name in ("chelsea", "astronaut", "coffee")
    }


def best_of(found: list[Detection], label: str) -> Detection:
    matches = [d for d in found if d.label == label]
    assert matches, f"no {label} in {[(d.label, round(d.score, 2)) for d in found]}"
    return matches[0]


def test_coco80_names_in_model_order():
    assert len(COCO80_NAMES) == 80
    assert (COCO80_NAMES[0], COCO80_NAMES[15], COCO80_NAMES[16], COCO80_NAMES[41]) == (
        "person",
        "cat",
        "dog",
        "cup",
    )
    assert (COCO80_NAMES[60], COCO80_NAMES[79]) == ("dining table", "toothbrush")


def test_packaged_model_is_the_documented_file(detector):
    assert hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest() == MODEL_SHA256
    assert detector.sha256 == MODEL_SHA256
    assert detector.providers[-1] == "CPUExecutionProvider"
    manifest = detector.manifest()
    assert manifest["model"] == "centernet_coco80.onnx"
    assert (manifest["score_threshold"], manifest["nms_iou"]) == (0.3, 0.5)


def test_real_photos_one_batch(detector, photos):
    found = detector.detect([photos["chelsea"], photos["astronaut"], photos["coffee"]])
    assert len(found) == 3
    assert iou(best_of(found[0], "cat").box, hand_box(CAT_BOX, CAT_SIZE)) >= 0.5
    assert iou(best_of(found[1], "person").box, hand_box(PERSON_BOX, PERSON_SIZE)) >= 0.5
    assert iou(best_of(found[2], "cup").box, hand_box(CUP_BOX, CUP_SIZE)) >= 0.5
    for per_image in found:
        scores = [d.score for d in per_image]
        assert scores == sorted(scores, reverse=True)
        assert all(0.3 <= s <= 1.0 for s in scores)
        for d in per_image:
            assert 0.0 <= d.box.x1 < d.box.x2 <= 1.0 and 0.0 <= d.box.y1 < d.box.y2 <= 1.0
            assert COCO80_NAMES[d.class_id] == d.label
        # class-agnostic NMS: no two kept boxes overlap beyond the threshold, whatever their classes
        assert all(iou(a.box, b.box) <= 0.5 for i, a in enumerate(per_image) for b in per_image[i + 1 :])


def test_any_image_mode(detector, photos):
    coffee = photos["coffee"]
    images = [
        coffee.convert("L"),
        coffee.convert("RGBA"),
        coffee.convert("P"),
        Image.new("RGB", (1, 1), (200, 30, 30)),
    ]
    found = detector.detect(images)
    for per_image in found[:3]:
        assert iou(best_of(per_image, "cup").box, hand_box(CUP_BOX, CUP_SIZE)) >= 0.5
    assert found[3] == []  # one red pixel blown up to the whole input: nothing to detect


def test_lower_threshold_finds_more(photos):
    loose, strict = Detector(score_threshold=0.1), Detector(score_threshold=0.5)
    (many,), (few,) = loose.detect([photos["coffee"]]), strict.detect([photos["coffee"]])
    assert len(many) > len(few)
    assert all(d.score >= 0.5 for d in few)


def test_preprocess_letterboxes_centred(detector, photos):
    array, placement = detector.preprocess(photos["chelsea"])  # 451 x 300
    # long side 451 -> 512 (scale 1.1353); 300 -> 341 rows, centred: (512 - 341) // 2 = 85 black rows on top
    assert placement == (0, 85, 512, 341)
    assert array.shape == (1, 512, 512, 3) and array.dtype == np.float32
    assert array[0, :85].max() == 0 and array[0, 85 + 341 :].max() == 0
    assert array[0, 85:426].mean() > 50


def test_postprocess_hand_values(detector):
    raw = np.zeros((100, 6), dtype=np.float32)
    raw[0] = [0, 128, 256, 384, 0.9, 15]  # cat: left half of a 1024x512 image letterboxed at rows 128..384
    raw[1] = [0, 128, 250, 384, 0.8, 16]  # the same object as a dog: removed by class-agnostic NMS
    raw[2] = [-20, 100, 600, 400, 0.6, 0]  # person beyond the image: clamped to the whole image
    raw[3] = [300, 200, 400, 300, 0.2, 41]  # under the 0.3 threshold
    raw[4] = [300, 200, 400, 300, 0.7, 80]  # no such class
    raw[5] = [300, 200, 300, 300, 0.7, 41]  # empty box
    raw[6] = [np.nan, 200, 400, 300, 0.95, 41]  # not a number
    found = detector.postprocess(raw, placement=(0, 128, 512, 256))
    assert [(d.label, d.class_id, round(d.score, 3)) for d in found] == [("cat", 15, 0.9), ("person", 0, 0.6)]
    assert found[0].box == Box(0.0, 0.0, 0.5, 1.0)
    assert found[1].box == Box(0.0, 0.0, 1.0, 1.0)


def test_nms_keeps_best_and_disjoint():
    boxes = np.array([[0, 0, 1, 1], [0.5, 0.5, 1, 1], [0, 0, 0.95, 1], [0, 0, 0.1, 0.1]], dtype=float)
    scores = np.array([0.5, 0.9, 0.8, 0.9])
    # 0.9 ties: lower index first; [0, 0, 1, 1] (0.5) overlaps [0, 0, 0.95, 1] at IoU 0.95 and goes
    assert nms(boxes, scores, 0.5) == [1, 3, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5) == []


def test_to_rgb_modes():
    assert to_rgb(Image.new("L", (2, 1), 77)).getpixel((1, 0)) == (77, 77, 77)
    assert to_rgb(Image.new("RGBA", (1, 1), (10, 20, 30, 0))).getpixel((0, 0)) == (10, 20, 30)
    assert to_rgb(Image.new("I;16", (1, 1), 257 * 100)).getpixel((0, 0)) == (100, 100, 100)
    assert to_rgb(Image.fromarray(np.array([[0.0, 1000.0]], dtype=np.float32))).getpixel((1, 0)) == (
        255,
        255,
        255,
    )
    with pytest.raises(ValueError, match="no pixels"):
        to_rgb(Image.new("RGB", (0, 0)))
    with pytest.raises(ValueError, match="expected a PIL image"):
        to_rgb(np.zeros((2, 2, 3)))


def test_bad_arguments(detector, tmp_path):
    with pytest.raises(ValueError, match="score_threshold"):
        Detector(score_threshold=1.5)
    with pytest.raises(ValueError, match="nms_iou"):
        Detector(nms_iou=0.0)
    with pytest.raises(ValueError, match="list of images"):
        detector.detect(Image.new("RGB", (4, 4)))
    with pytest.raises(ModelLoadError, match="not found"):
        Detector(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match="cannot load detector"):
        Detector(garbage)
    with pytest.raises(ModelLoadError, match="NoSuchExecutionProvider"):
        Detector(providers=["NoSuchExecutionProvider"])


def test_model_by_path_is_hashed_not_checked(tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(MODEL_PATH, copy)
    assert Detector(copy).manifest()["model_sha256"] == MODEL_SHA256


def test_damaged_packaged_model_is_refused(tmp_path, monkeypatch):
    damaged = tmp_path / "centernet_coco80.onnx"
    data = bytearray(MODEL_PATH.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(detector_module, "MODEL_PATH", damaged)
    with pytest.raises(ModelLoadError, match="expected 7260f7f0"):
        Detector()
