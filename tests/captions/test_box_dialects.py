"""Every box dialect means one place: a box written in dialect D for a W x H image reads back, through
``read_boxes``, to the same fractions of the unpadded image, for any size, very wide and very tall included."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pancap_retrieval.captions import DIALECTS, Box, read_boxes
from pancap_retrieval.captions.boxes import ASMV2_SCALE, format_box_group
from pancap_retrieval.errors import ImageSizeError

SIDES = st.one_of(st.integers(1, 64), st.integers(65, 4000), st.integers(4001, 40000))


@st.composite
def boxes(draw) -> Box:
    x1, x2 = sorted(draw(st.floats(0, 1, allow_nan=False)) for _ in range(2))
    y1, y2 = sorted(draw(st.floats(0, 1, allow_nan=False)) for _ in range(2))
    return Box(x1, y1, x2, y2)


def _tolerance(dialect: str, width: int, height: int) -> tuple[float, float]:
    """How far apart (as fractions of the image's width and height) the read box may be: the dialect's rounding.

    norm is written with 6 digits; pixel rounds to a pixel (half a pixel either way); asmv2 rounds to a unit of
    the 0..1000 square of side max(w, h), and writes at most 999 (one unit short of the far edge)."""
    if dialect == "norm":
        return 5e-7, 5e-7
    if dialect == "pixel":
        return 0.5 / width, 0.5 / height
    unit = max(width, height) / ASMV2_SCALE
    return unit / width, unit / height


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialect=st.sampled_from(DIALECTS), box=boxes(), width=SIDES, height=SIDES)
def test_a_box_written_in_any_dialect_reads_back_to_the_same_fractions(dialect, box, width, height):
    written = f"A red kite {format_box_group([box], dialect, width, height, ndigits=6)} flies."
    read = read_boxes(written, dialect, (width, height))
    assert read.n_boxes == 1, (written, read.warnings)
    tx, ty = _tolerance(dialect, width, height)
    got = read.boxes[0]
    assert abs(got.x1 - box.x1) <= tx + 1e-9 and abs(got.x2 - box.x2) <= tx + 1e-9, written
    assert abs(got.y1 - box.y1) <= ty + 1e-9 and abs(got.y2 - box.y2) <= ty + 1e-9, written
    assert read.entities[0].phrase == "A red kite"


@pytest.mark.parametrize(
    ("size", "raw", "expected"),
    [
        ((451, 300), [0, 167, 1000, 833], [0.0, 0.0, 1.0, 1.0]),  # a wide image: bars above and below
        ((300, 451), [167, 0, 833, 1000], [0.0, 0.0, 1.0, 1.0]),  # a tall one: bars left and right
        ((4000, 100), [0, 487, 500, 513], [0.0, 0.0, 0.5, 1.0]),  # very wide: the image is a thin band
        ((200, 200), [250, 250, 750, 750], [0.25, 0.25, 0.75, 0.75]),  # square: no padding
    ],
)
def test_asmv2_is_de_padded_from_the_centred_square(size, raw, expected):
    caption = read_boxes(f"the photo <box>[[{', '.join(map(str, raw))}]]</box>", "asmv2", size)
    assert caption.boxes[0].as_list(2) == expected


@pytest.mark.parametrize(
    ("text", "dialect"),
    [
        ("the photo <box>[[0, 167, 1000, 833]]</box>", "asmv2"),
        ("the photo <box>[[0, 167, 1000, 833]]</box>", "auto"),
        ("a dog, positioned at [115, 334, 288, 903]", "pixel"),
        ("a dog, positioned at [115, 334, 288, 903]", "auto"),
    ],
)
def test_a_sized_dialect_without_a_size_is_an_error_that_says_the_fix(text, dialect):
    with pytest.raises(ImageSizeError, match="give the image's width and height"):
        read_boxes(text, dialect)


def test_fractions_need_no_size():
    caption = read_boxes("A dog [[0.1, 0.2, 0.5, 0.9]] sits.", "norm")
    assert caption.boxes == [Box(0.1, 0.2, 0.5, 0.9)]
    assert read_boxes("A dog [[0.1, 0.2, 0.5, 0.9]] sits.").boxes == caption.boxes
