"""PancapScore reads each side's boxes in its own dialect on the image's size: the same boxes written in any
dialect give the same location F1 (predictions in PancapChain's ASMv2, references in SA-Pancap's fractions)."""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.captions.model import format_caption, parse_caption
from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.cli import cli
from pancap_retrieval.data.sapancap import caption_file
from pancap_retrieval.errors import ImageSizeError
from pancap_retrieval.pancapscore import BoxFrames, TagSimilarity, score_pancapscore

SIZES = [(451, 300), (300, 451), (1500, 250), (250, 1500), (640, 640), (2250, 1500)]


@pytest.fixture(scope="module")
def similarity() -> TagSimilarity:
    return TagSimilarity("minilm")


@pytest.fixture(scope="module")
def refs() -> list[CaptionRecord]:
    return read_captions(caption_file("test"))[:40]


def _moved(text: str, index: int):
    """The caption parsed, every other image's boxes moved sideways by half their width where there is room
    (IoU 1/3 with the reference, far from the 0.5 threshold): right about some places, wrong about others."""
    parsed = parse_caption(text)
    if index % 2:
        for group in parsed.groups:
            moved = []
            for b in group.boxes:
                half = b.width / 2
                dx = half if b.x2 + half <= 1 else (-half if b.x1 - half >= 0 else 0.0)
                moved.append(Box(b.x1 + dx, b.y1, b.x2 + dx, b.y2))
            group.boxes[:] = moved
    return parsed


def _predictions(refs, dialect: str) -> tuple[list[CaptionRecord], dict[str, tuple[int, int]]]:
    sizes = dict(zip((r.example_id for r in refs), itertools.cycle(SIZES)))
    preds = []
    for index, ref in enumerate(refs):
        width, height = sizes[ref.example_id]
        parsed = _moved(ref.caption, index)
        preds.append(CaptionRecord(ref.example_id, format_caption(parsed, dialect, width, height, ndigits=6)))
    return preds, sizes


def _location(result) -> tuple[float, float, float]:
    row = result["dimensions"]["location"]
    return row["precision"], row["recall"], row["f1"]


def test_the_same_boxes_in_any_dialect_give_the_same_location_f1(refs, similarity):
    scores = {}
    for dialect in ("norm", "asmv2", "pixel"):
        preds, sizes = _predictions(refs, dialect)
        frames = BoxFrames(pred_dialect=dialect, ref_dialect="norm", sizes=sizes)
        result = score_pancapscore(preds, refs, "rule", similarity=similarity, frames=frames)
        scores[dialect] = _location(result)
        assert result["box_dialects"] == {"pred": dialect, "ref": "norm"}
    assert 0.3 < scores["norm"][2] < 0.9  # some places right, some wrong: a figure that can move
    assert scores["asmv2"] == pytest.approx(scores["norm"], abs=1e-9)
    assert scores["pixel"] == pytest.approx(scores["norm"], abs=1e-9)


def test_asmv2_predictions_without_image_sizes_are_an_error_that_says_how(refs, similarity):
    preds, _ = _predictions(refs, "asmv2")
    with pytest.raises(ImageSizeError, match="pass --dataset"):
        score_pancapscore(preds, refs, "rule", similarity=similarity, frames=BoxFrames("asmv2", "norm"))
    with pytest.raises(ImageSizeError, match="image_path"):
        score_pancapscore(preds, refs, "rule", similarity=similarity)  # told asmv2 by its <box> tags


def _write_files(tmp_path, refs, dialect: str):
    """A PancapChain-style answer list naming real image files of each size, and the reference file."""
    from PIL import Image

    preds, sizes = _predictions(refs, dialect)
    (tmp_path / "images").mkdir(exist_ok=True)
    items = []
    for pred in preds:
        name = f"images/{pred.example_id}.png"
        if not (tmp_path / name).is_file():
            Image.new("RGB", sizes[pred.example_id], (90, 120, 30)).save(tmp_path / name)
        items.append({"image_path": name, "model_response": pred.caption})
    pred_file = tmp_path / f"pred_{dialect}.json"
    pred_file.write_text(json.dumps(items))
    ref_file = tmp_path / "ref.json"
    ref_file.write_text(json.dumps([{"image_path": f"x/{r.example_id}.jpg", "gt_response": r.caption} for r in refs]))
    return pred_file, ref_file


def test_the_command_reads_image_sizes_from_the_files_the_records_name(tmp_path, refs):
    printed = {}
    for dialect in ("norm", "asmv2"):
        pred_file, ref_file = _write_files(tmp_path, refs, dialect)
        command = ["score", "pancapscore", "--pred", str(pred_file), "--ref", str(ref_file), "--judge", "rule"]
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, result.output
        printed[dialect] = next(line for line in result.output.splitlines() if line.startswith("| location |"))
    assert printed["asmv2"] == printed["norm"]
    (tmp_path / "images" / f"{refs[0].example_id}.png").unlink()
    result = CliRunner().invoke(
        cli, ["score", "pancapscore", "--pred", str(pred_file), "--ref", str(ref_file), "--judge", "rule"]
    )
    assert result.exit_code != 0 and "pass --dataset" in result.output and refs[0].example_id in result.output
    assert len(result.output.strip().splitlines()) == 1
