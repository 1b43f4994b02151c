"""PancapScore with the offline ``rule`` judge on the real SA-Pancap ground-truth captions (630 of them)."""

from __future__ import annotations

import copy
import itertools
import json

import pytest

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.captions.model import format_caption, parse_caption
from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.data.sapancap import caption_file
from pancap_retrieval.pancapscore import (
    CaptionItems,
    RuleJudge,
    TagSimilarity,
    match_entities,
    score_items,
    score_pancapscore,
)

MALFORMED_VAL_ID = "sa_574316"  # its only boxes are two-number pairs: no entity to score


@pytest.fixture(scope="module")
def similarity() -> TagSimilarity:
    return TagSimilarity("minilm")


@pytest.fixture(scope="module")
def captions() -> dict[str, list[CaptionRecord]]:
    return {split: read_captions(caption_file(split)) for split in ("val", "test")}


def _shift(text: str, offset: float) -> str:
    """Every box moved by ``offset`` in x and in y, toward the side with room, keeping its size."""
    parsed = parse_caption(text)
    for group in parsed.groups:
        moved = []
        for b in group.boxes:
            dx = min(offset, 1 - b.x2) if 1 - b.x2 >= b.x1 else -min(offset, b.x1)
            dy = min(offset, 1 - b.y2) if 1 - b.y2 >= b.y1 else -min(offset, b.y1)
            moved.append(Box(b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy))
        group.boxes[:] = moved
    return format_caption(parsed, "norm", ndigits=6)


@pytest.mark.slow
def test_reference_against_itself_scores_one_on_all_630(captions, similarity):
    for split, expected in (("val", 499), ("test", 130)):
        result = score_pancapscore(captions[split], captions[split], "rule", similarity=similarity)
        for dim in ("tag", "location"):
            row = result["dimensions"][dim]
            assert (row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0)
            assert row["n_images"] == expected
        assert result["counts"]["paired"] == len(captions[split])
        if split == "val":
            assert result["dimensions"]["tag"]["skipped"]["ids"] == [MALFORMED_VAL_ID]
        for dim in ("attribute", "relation", "global"):
            assert result["dimensions"][dim]["status"] == "not computed"
        assert result["overall"] is None and result["overall_status"].startswith("not computed")
        assert result["partial"] == {
            "label": "tag+location",
            "dimensions": ["tag", "location"],
            "value": 200.0,
            "max": 200.0,
        }


def test_shifted_boxes_lower_location_monotonically(captions, similarity):
    refs = captions["test"][:40]
    location, tag = [], []
    for offset in (0.0, 0.05, 0.1, 0.2, 0.4):
        preds = [CaptionRecord(r.example_id, _shift(r.caption, offset)) for r in refs]
        result = score_pancapscore(preds, refs, "rule", similarity=similarity)
        location.append(result["dimensions"]["location"]["f1"])
        tag.append(result["dimensions"]["tag"]["f1"])
    assert location[0] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(location)), location
    assert location[0] > location[1] > location[2] > location[3] and location[-1] < 0.2, location
    assert tag == [1.0] * 5


def test_dropping_entities_lowers_tag_recall_in_proportion(captions, similarity):
    judge = RuleJudge()
    recalls, expected = [], []
    for record in captions["test"]:
        ref = judge.extract(record.caption)
        kept = [e for e in ref.entities if e.id % 3 != 0]  # drop every third instance
        pred = CaptionItems(kept, statements_extracted=False)
        dims = score_items(ref, pred, match_entities(ref.entities, kept, similarity))
        recalls.append(dims["tag"]["recall"])
        expected.append(len(kept) / len(ref.entities))
        assert dims["tag"]["precision"] == 1.0
        assert dims["location"]["recall"] == pytest.approx(len(kept) / len(ref.entities))
    assert recalls == pytest.approx(expected)
    assert sum(recalls) / len(recalls) == pytest.approx(0.688, abs=0.03)  # about two thirds kept


def test_ids_on_one_side_failed_records_and_files(captions, similarity, tmp_path):
    refs = captions["test"][:6]
    preds = [copy.deepcopy(r) for r in refs[1:]]  # the first id has no prediction
    preds[0] = CaptionRecord.failed(preds[0].example_id, "generation crashed")
    preds.append(CaptionRecord("not_in_ref", "A dog [[0.1, 0.1, 0.5, 0.5]]."))
    result = score_pancapscore(preds, refs, "rule", tmp_path, similarity=similarity)
    counts = result["counts"]
    assert counts["only_in_ref"] == {"count": 1, "ids": [refs[0].example_id], "truncated": False}
    assert counts["only_in_pred"]["ids"] == ["not_in_ref"]
    assert counts["pred_failed_or_empty"]["ids"] == [refs[1].example_id]
    assert counts["paired"] == counts["scored"] == 5
    failed = next(e for e in result["per_image"] if e["example_id"] == refs[1].example_id)
    assert failed["dimensions"]["tag"]["recall"] == 0.0  # scored as an empty caption, not dropped
    assert result["dimensions"]["tag"]["recall"] == pytest.approx(0.8)
    written = json.loads((tmp_path / "pancapscore.json").read_text())
    assert written["dimensions"] == result["dimensions"]
    table = (tmp_path / "pancapscore.md").read_text()
    assert "| attribute | not computed |" in table and "tag+location" in table


def test_two_runs_give_identical_scores(captions, tmp_path):
    path = tmp_path / "preds.jsonl"
    refs = captions["test"][:12]
    with path.open("w") as handle:
        for r in refs:
            handle.write(json.dumps({"question_id": r.example_id, "text": _shift(r.caption, 0.1)}) + "\n")
    ref_path = caption_file("test")
    runs = [score_pancapscore(path, ref_path, "rule", similarity=TagSimilarity("minilm")) for _ in range(2)]
    for run in runs:
        run.pop("meta")
    assert runs[0] == runs[1]
    assert runs[0]["counts"]["only_in_ref"]["count"] == 130 - 12
