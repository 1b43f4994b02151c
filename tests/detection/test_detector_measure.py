"""Pixel measurements on images whose answer can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.detection.measure import COLOUR_NAMES, ImageAnalysis, nearest_colour


def two_halves(left: tuple[int, int, int], right: tuple[int, int, int], size=(200, 100)) -> Image.Image:
    width, height = size
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = left
    array[:, width // 2 :] = right
    return Image.fromarray(array)


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((255, 0, 0), "red"), ((0, 0, 255), "blue"), ((255, 255, 0), "yellow"), ((0, 128, 0), "green"),
     ((255, 255, 255), "white"), ((0, 0, 0), "black"), ((128, 128, 128), "grey"), ((255, 165, 0), "orange"),
     ((255, 192, 203), "pink"), ((128, 0, 128), "purple"), ((139, 69, 19), "brown"), ((0, 0, 128), "navy")],
)  # fmt: skip
def test_named_colours(rgb, name):
    assert nearest_colour(rgb) == name


def test_region_colours_follow_the_box():
    analysis = ImageAnalysis.of(two_halves((255, 0, 0), (0, 0, 255)))
    assert analysis.region_colours(Box(0.0, 0.0, 0.5, 1.0)) == [("red", 1.0)]
    assert analysis.region_colours(Box(0.5, 0.0, 1.0, 1.0)) == [("blue", 1.0)]
    # the middle fifth: the box inset leaves 0.42..0.58 of the width, half red and half blue
    assert analysis.region_colours(Box(0.4, 0.0, 0.6, 1.0)) == [("red", 0.5), ("blue", 0.5)]
    # a box thinner than a pixel still reads one pixel
    assert analysis.region_colours(Box(0.1, 0.1, 0.1001, 0.1001)) == [("red", 1.0)]


def test_global_stats_of_flat_images():
    grey = ImageAnalysis.of(Image.new("RGB", (64, 48), (128, 128, 128))).global_stats()
    assert (
        grey["greyscale"] is True and grey["temperature"] == "neutral" and grey["saturation"] == "greyscale"
    )
    assert grey["brightness"] == round(128 / 255, 4) and grey["lighting"] == "moderate"
    assert grey["palette"] == [("grey", 1.0)] and grey["contrast"] == 0.0 and grey["contrast_level"] == "low"
    red = ImageAnalysis.of(Image.new("RGB", (64, 48), (255, 0, 0))).global_stats()
    assert red["warmth"] == 1.0 and red["temperature"] == "warm" and red["greyscale"] is False
    # Hasler-Suesstrunk on a flat red: 0.3 * hypot(255, 127.5) = 85.53
    assert red["colourfulness"] == 85.53 and red["saturation"] == "vivid"
    blue = ImageAnalysis.of(Image.new("RGB", (8, 8), (0, 0, 255))).global_stats()
    assert blue["temperature"] == "cool" and blue["brightness"] == 0.114 and blue["lighting"] == "dark"
    assert ImageAnalysis.of(Image.new("RGB", (8, 8), (250, 250, 250))).global_stats()["lighting"] == "bright"


def test_brighter_half_and_contrast():
    stats = ImageAnalysis.of(two_halves((255, 255, 255), (0, 0, 0))).global_stats()
    assert stats["brighter_half"] == "left"
    assert stats["contrast"] == 0.5 and stats["contrast_level"] == "high"
    assert stats["palette"] == [("black", 0.5), ("white", 0.5)]
    assert stats["greyscale"] is True


def test_reduction_and_tiny_images():
    big = ImageAnalysis.of(Image.new("RGB", (1000, 500), (0, 128, 0)))
    assert big.names.shape == (96, 192)  # long side reduced to 192, aspect kept
    one = ImageAnalysis.of(Image.new("RGB", (1, 1), (0, 128, 0)))
    assert one.names.shape == (1, 1) and one.region_colours(Box(0, 0, 1, 1)) == [("green", 1.0)]
    assert one.global_stats()["brighter_half"] is None
    assert len(COLOUR_NAMES) == 21
