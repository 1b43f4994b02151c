from __future__ import annotations

import pytest

from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.testing import byte_level_tokenizer
from reconstruct.layout import (
    MAX_BOXES,
    MAX_TOKENS,
    MIN_SIDE,
    Layout,
    LayoutError,
    approx_token_count,
    build_layout,
    layout_from_caption,
    layout_from_record,
    tokenizer_counter,
)


@pytest.fixture(scope="module")
def char_tokenizer():
    """A real CLIPTokenizer with one token per character: every limit is reached early."""
    return byte_level_tokenizer()


def _valid(layout: Layout, count) -> None:
    assert len(layout.boxes) == len(layout.phrases) == len(layout.source_boxes) <= MAX_BOXES
    for box in [*layout.boxes, *layout.source_boxes]:
        assert all(0.0 <= v <= 1.0 for v in box)
        assert box[2] > box[0] and box[3] > box[1]
    assert count(layout.prompt) <= MAX_TOKENS
    assert all(count(p) <= MAX_TOKENS and p for p in layout.phrases)


def test_every_sapancap_caption_gives_a_valid_layout(sapancap_captions):
    assert len(sapancap_captions) == 630
    boxes = 0
    for item in sapancap_captions:
        layout = layout_from_caption(item["gt_response"], item["image_path"])
        _valid(layout, approx_token_count)
        assert layout.prompt and not layout.prompt.lower().startswith(("here", "below is"))
        assert "**" not in layout.prompt
        boxes += len(layout.boxes)
    assert boxes > 630 * 3  # about 6.9 boxes per caption before duplicates are merged


def test_sapancap_layouts_fit_a_real_clip_tokenizer(sapancap_captions, char_tokenizer):
    count = tokenizer_counter(char_tokenizer)
    for item in sapancap_captions[:60]:
        layout = layout_from_caption(item["gt_response"], tokenizer=char_tokenizer)
        _valid(layout, count)
        assert len(char_tokenizer(layout.prompt)["input_ids"]) <= 77


def test_opening_of_a_real_caption():
    text = (
        "Here's a detailed description of the image:\nThe image depicts a traffic monitoring system against a blue "
        "sky with clouds. The sky [[0.003, 0.003, 0.996, 0.997]] is a light blue."
    )
    layout = layout_from_caption(text, "x")
    assert layout.prompt == (
        "The image depicts a traffic monitoring system against a blue sky with clouds. The sky is a light blue."
    )
    assert layout.phrases == ["The sky"]


def test_caption_without_boxes_is_text_only():
    layout = layout_from_caption("A quiet lake at dawn, mist over the water.", "lake")
    assert layout.is_text_only and layout.boxes == [] and layout.phrases == []
    assert layout.prompt == "A quiet lake at dawn, mist over the water."
    assert layout.n_changed == 0


def test_200_boxes_are_cut_to_the_30_largest():
    # box i has width (i + 1) / 400: the 30 largest are i = 170..199
    entities = [{"phrase": f"thing {i}", "boxes": [[0.0, 0.0, (i + 1) / 400, 0.5]]} for i in range(200)]
    layout = build_layout("many", "Many things.", entities)
    assert len(layout.boxes) == 30
    assert layout.counts["dropped_over_limit"] == 170
    assert layout.phrases == [f"thing {i}" for i in range(170, 200)]


def test_zero_area_box_is_grown_or_dropped():
    entities = [
        {"phrase": "a pole", "boxes": [[0.5, 0.2, 0.5, 0.8]]},
        {"phrase": "a dot", "boxes": [[1, 1, 1, 1]]},
    ]
    fixed = build_layout("z", "Poles.", entities)
    assert fixed.counts["zero_area_fixed"] == 2
    pole, dot = fixed.source_boxes
    assert pole[2] - pole[0] == pytest.approx(MIN_SIDE, abs=1e-5) and pole[0] == pytest.approx(
        0.5 - MIN_SIDE / 2, abs=1e-5
    )
    assert pole[1:4:2] == [0.2, 0.8]
    assert dot == pytest.approx([1 - MIN_SIDE, 1 - MIN_SIDE, 1.0, 1.0], abs=1e-5)
    dropped = build_layout("z", "Poles.", entities, zero_area="drop")
    assert dropped.boxes == [] and dropped.counts["zero_area_removed"] == 2


def test_500_word_phrase_is_cut_and_counted(char_tokenizer):
    phrase = " ".join(["enormous"] * 500)
    entities = [{"phrase": phrase, "boxes": [[0.1, 0.1, 0.9, 0.9]]}]
    approx = build_layout("long", "A long thing.", entities)
    assert approx.counts["truncated_phrases"] == 1
    assert approx_token_count(approx.phrases[0]) <= 77
    # one token per letter here: "enormous " is 8 tokens, 75 tokens leave room for 9 words
    real = build_layout("long", "A long thing.", entities, tokenizer=char_tokenizer)
    assert real.phrases[0] == " ".join(["enormous"] * 9)
    assert len(char_tokenizer(real.phrases[0])["input_ids"]) == 2 + 9 * 8 == 74


def test_one_huge_word_is_cut_by_characters(char_tokenizer):
    layout = build_layout(
        "w", "x", [{"phrase": "a" * 500, "boxes": [[0, 0, 1, 1]]}], tokenizer=char_tokenizer
    )
    assert layout.phrases == ["a" * 75]


def test_duplicates_are_merged():
    entities = [
        {"phrase": "a light", "boxes": [[0.305, 0.38, 0.701, 0.997]]},
        {"phrase": "A light", "boxes": [[0.306, 0.38, 0.701, 0.996]]},  # same phrase, near-identical box
        {"phrase": "the lamp", "boxes": [[0.305, 0.38, 0.701, 0.997]]},  # identical box
        {"phrase": "a light", "boxes": [[0.0, 0.0, 0.2, 0.2]]},  # same phrase elsewhere: kept
    ]
    layout = build_layout("d", "Lights.", entities)
    assert layout.phrases == ["a light", "a light"]
    assert layout.counts["merged"] == 2


def test_bad_boxes_are_counted_not_fatal():
    entities = [
        {"phrase": "cup", "boxes": [[-0.2, 0.1, 1.3, 0.5]]},
        {"phrase": "nan", "boxes": [[float("nan"), 0, 1, 1], [0, 0, 1]]},
        {"phrase": "", "boxes": [[0, 0, 0.5, 0.5]]},
    ]
    layout = build_layout("b", "A cup.", entities)
    assert layout.source_boxes == [[0.0, 0.1, 1.0, 0.5]]
    assert (
        layout.counts["clamped"] == 1
        and layout.counts["invalid_boxes"] == 2
        and layout.counts["no_phrase"] == 1
    )


def test_canvas_letterbox_and_aspect():
    wide = layout_from_caption("A dog [[0, 0, 1, 1]].", "w", image_size=(400, 200), canvas_size=512)
    assert wide.canvas == (512, 512) and wide.boxes == [[0.0, 0.25, 1.0, 0.75]]
    assert wide.content == (0.0, 0.25, 1.0, 0.75)
    tall = layout_from_caption(
        "A dog [[0.5, 0.5, 1, 1]].", "t", image_size=(200, 400), mode="aspect", canvas_size=512
    )
    assert tall.canvas == (256, 512) and tall.boxes == [[0.5, 0.5, 1.0, 1.0]]
    with pytest.raises(LayoutError, match="canvas mode"):
        layout_from_caption("x", mode="stretch")


def test_entities_from_stage_outputs_win():
    record = CaptionRecord(
        "img1",
        "A cat [[0.1, 0.1, 0.4, 0.4]] sleeps.",
        stages={
            "stage1": {"entities": [{"phrase": "old", "boxes": [[0, 0, 1, 1]]}]},
            "stage3": {"entities": [{"phrase": "a grey cat", "boxes": [[0.1, 0.1, 0.45, 0.42]]}]},
            "stage4": {"text": "not entities"},
        },
    )
    layout = layout_from_record(record)
    assert layout.source == "stages:stage3"
    assert layout.phrases == ["a grey cat"] and layout.prompt == "A cat sleeps."
    plain = layout_from_record(CaptionRecord("img2", "A cat [[0.1, 0.1, 0.4, 0.4]] sleeps."))
    assert plain.source == "caption" and plain.phrases == ["A cat"]


def test_failed_and_empty_records_raise_layout_error():
    with pytest.raises(LayoutError, match="failed"):
        layout_from_record(CaptionRecord.failed("x", "CUDA out of memory"))
    with pytest.raises(LayoutError, match="empty caption"):
        layout_from_record(CaptionRecord("y", "   "))


def test_layout_round_trips_through_json():
    import json

    layout = layout_from_caption("A dog [[0.1, 0.2, 0.5, 0.9]] on grass.", "x", image_size=(200, 100))
    again = Layout.from_dict(json.loads(json.dumps(layout.to_dict())))
    assert again == layout
