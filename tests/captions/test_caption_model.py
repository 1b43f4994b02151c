from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pancap_retrieval.captions import Box, Entity, format_caption, format_entities, iou, parse_caption

# An independent count: every four-number list inside brackets, whatever groups it sits in.
QUAD = re.compile(r"\[\s*-?[\d.]+\s*,\s*-?[\d.]+\s*,\s*-?[\d.]+\s*,\s*-?[\d.]+\s*\]")
DOUBLE = re.compile(r"\[\[[^\[\]]*(?:\]\s*,\s*\[[^\[\]]*)*\]\]")


def test_all_sapancap_captions_parse(sapancap_captions):
    assert len(sapancap_captions) == 630
    total = malformed = 0
    for item in sapancap_captions:
        text = item["gt_response"]
        caption = parse_caption(text)
        assert caption.n_boxes == len(QUAD.findall(text))
        assert all(0.0 <= v <= 1.0 for box in caption.boxes for v in box.as_list())
        plain = caption.plain_text
        assert "[[" not in plain and "]]" not in plain
        assert not QUAD.search(plain)
        assert not re.search(r"\d\.\d{2,3}\s*,\s*\d\.\d{2,3}", plain)
        total += caption.n_boxes
        malformed += caption.malformed
        # every [[..]] group with two numbers (a point, not a box) is counted as malformed, never dropped silently
        points = sum(1 for g in DOUBLE.findall(text) if not QUAD.search(g))
        assert caption.malformed >= points
    assert total == 4725
    assert malformed == 23


def test_phrases_of_a_real_caption(sapancap_captions):
    caption = parse_caption(sapancap_captions[0]["gt_response"])
    assert [(e.phrase, len(e.boxes)) for e in caption.entities][:4] == [
        ("The sky", 1),
        ("a light", 1),
        ("two cameras", 2),
        ("a sign", 1),
    ]
    assert caption.entities[2].boxes[1] == Box(0.339, 0.526, 0.396, 0.610)
    assert "It consists of a light, two cameras, a sign, and a curved pole" in caption.plain_text


def test_asmv2_boxes_are_unpadded_with_the_image_size():
    # a 200x100 image padded to 200x200: its top edge is at 250/1000 of the square, its bottom at 750
    caption = parse_caption("dog <box>[[0, 250, 500, 750]]</box>", width=200, height=100)
    assert caption.dialect == "asmv2"
    assert caption.entities[0].phrase == "dog"
    assert caption.boxes[0] == Box(0.0, 0.0, 0.5, 1.0)


def test_asmv2_several_boxes_per_phrase_and_stage_output():
    text = "dog <box>[[115, 334, 288, 903]]</box>, t-shirt <box>[[10, 10, 20, 20], [30, 30, 40, 40]]</box>"
    caption = parse_caption(text)
    assert [(e.phrase, len(e.boxes)) for e in caption.entities] == [("dog", 1), ("t-shirt", 2)]
    assert caption.boxes[0].as_list(3) == [0.115, 0.334, 0.288, 0.903]
    assert any("square" in w for w in caption.warnings)


def test_pixel_boxes_need_and_use_the_image_size():
    text = "a dog, positioned at [115, 334, 1288, 2039], next to a tree"
    caption = parse_caption(text, width=2000, height=2500)
    assert caption.dialect == "pixel"
    assert caption.boxes[0].as_list(4) == [0.0575, 0.1336, 0.644, 0.8156]
    assert caption.plain_text == "a dog, next to a tree"
    without_size = parse_caption(text)
    assert without_size.n_boxes == 0 and without_size.malformed == 1


def test_truncated_box_is_counted_and_keeps_the_good_ones():
    text = "a cat <box>[[1, 2, 300, 400]]</box>, a dog <box>[[5, 6, 7"
    caption = parse_caption(text)
    assert caption.n_boxes == 1
    assert caption.malformed == 1
    assert any("truncated" in w for w in caption.warnings)
    assert caption.plain_text == "a cat, a dog"
    inner = parse_caption("two cups <box>[[1, 2, 3, 4], [5, 6,")
    assert inner.n_boxes == 1 and inner.malformed == 1


def test_out_of_range_box_is_clamped_and_flagged():
    caption = parse_caption("the sky [[-0.05, 0.0, 1.2, 0.5]] is blue")
    assert caption.boxes[0] == Box(0.0, 0.0, 1.0, 0.5)
    assert caption.clamped == 1
    assert any("clamped" in w for w in caption.warnings)


@pytest.mark.parametrize("dialect", ["norm", "asmv2", "pixel"])
def test_format_round_trip(sapancap_captions, dialect):
    width, height = 640, 480
    tolerance = {"norm": 1e-3, "asmv2": 1.5e-3, "pixel": 1.5e-3}[dialect]
    for item in sapancap_captions[:100]:
        original = parse_caption(item["gt_response"])
        written = format_caption(original, dialect, width, height)
        again = parse_caption(written, dialect=dialect, width=width, height=height)
        assert [e.phrase for e in again.entities] == [e.phrase for e in original.entities]
        assert again.n_boxes == original.n_boxes
        for a, b in zip(original.boxes, again.boxes):
            assert max(abs(x - y) for x, y in zip(a.as_list(), b.as_list())) <= tolerance


def test_format_entities_is_the_stage_output_form():
    entities = [Entity("dog", [Box(0.1, 0.2, 0.3, 0.4)]), Entity("cat", [Box(0, 0, 1, 1)])]
    text = format_entities(entities, "asmv2")
    assert text == "dog <box>[[100, 200, 300, 400]]</box>, cat <box>[[0, 0, 999, 999]]</box>"
    assert [e.phrase for e in parse_caption(text).entities] == ["dog", "cat"]


def test_iou():
    assert iou(Box(0, 0, 1, 1), Box(0, 0, 1, 1)) == 1.0
    assert iou(Box(0, 0, 0.5, 0.5), Box(0.5, 0.5, 1, 1)) == 0.0


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(
        alphabet=st.sampled_from(list("[]<>/box,.0123456789- \nabc()")) | st.characters(),
        max_size=200,
    )
)
def test_parser_never_raises_on_arbitrary_text(text):
    caption = parse_caption(text)
    assert all(0.0 <= v <= 1.0 for box in caption.boxes for v in box.as_list())
    assert caption.n_boxes >= 0 and caption.malformed >= 0
    parse_caption(text, width=37, height=91)
    format_caption(caption, "asmv2", 37, 91)


@pytest.mark.parametrize(
    "text",
    [
        "the [1, 2, 3, 4] steps",
        "Champions in [1999, 2003, 2007, 2011] are listed on the trophy.",
        "Scores [0.1, 0.2, 0.3, 0.4] were close.",
    ],
)
def test_number_lists_outside_a_box_context_stay_text(text):
    caption = parse_caption(text, width=640, height=480)
    assert caption.n_boxes == 0 and caption.malformed == 0 and caption.plain_text == text


def test_pixel_lists_are_boxes_after_a_cue_or_when_pixel_is_named():
    assert parse_caption("a cup, bbox [10, 20, 110, 70]", width=200, height=100).n_boxes == 1
    named = parse_caption("the [1, 2, 3, 4] steps", dialect="pixel", width=200, height=100)
    assert named.n_boxes == 1 and named.plain_text == "the steps"
    # named, but not a box of a 640 x 480 image: text
    years = parse_caption("Champions in [1999, 2003, 2007, 2011] won.", dialect="pixel", width=640, height=480)
    assert years.n_boxes == 0 and "[1999, 2003, 2007, 2011]" in years.plain_text


@pytest.mark.parametrize(
    ("text", "boxes", "malformed", "plain"),
    [
        ("a dog [[1e-1, 2e-1, 3.0e-1, 4E-1]] running.", 1, 0, "a dog running."),
        ("a dog [[nan, 0.2, inf, 0.4]] sits.", 0, 1, "a dog sits."),
        ("a cat [[[0.1, 0.2, 0.3, 0.4]]] sleeps.", 1, 0, "a cat sleeps."),
        ("a cat [[0.5, 0.6, 0.1, 0.2]] sleeps.", 0, 1, "a cat sleeps."),
        ("a cat [[0.1, 0.2, 1500, 0.4]] sleeps.", 0, 1, "a cat sleeps."),
        ("a cat [[0.1, 0.2, 0.3 is cut", 0, 1, "a cat is cut"),
    ],
)
def test_a_box_parses_or_goes_whole(text, boxes, malformed, plain):
    caption = parse_caption(text)
    assert (caption.n_boxes, caption.malformed, caption.plain_text) == (boxes, malformed, plain)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (
            "Above it is the second flower, and the second flower's bounding box is [[0.15, 0.0, 0.53, 0.52]].",
            "Above it is the second flower, and the second flower.",
        ),
        ("At its centre is a ring, and the ring's bounding box is [[0.1, 0.5, 0.3, 0.7]].", "At its centre is a ring, and the ring."),
        ("The bounding box of the gravel is [[0.0, 0.8, 1.0, 1.0]]. It is grey.", "The gravel. It is grey."),
        ("The woman, positioned at [[0.1, 0.1, 0.2, 0.2]], stands.", "The woman stands."),
        ("A man [[0.1, 0.1, 0.2, 0.2]] waves. Its bounding box is [[0.1, 0.1, 0.2, 0.3]]. He smiles.", "A man waves. He smiles."),
        ("A coat, with a bounding box of [[0.1, 0.1, 0.3, 0.3]], hangs.", "A coat hangs."),
        ("Trees (bounding box: [[0.0, 0.0, 0.3, 0.5]]) and a lawn ([[0.0, 0.5, 1.0, 1.0]]) are green.", "Trees and a lawn are green."),
        ("One pitcher is large and located at [[0.59, 0.37, 0.83, 0.81]].", "One pitcher is large."),
    ],
)
def test_stripped_text_keeps_the_entity(text, plain):
    assert parse_caption(text).plain_text == plain
