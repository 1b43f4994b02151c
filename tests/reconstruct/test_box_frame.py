"""A caption's boxes mean the same place in layouts, re-detection and the gallery: read in the captions' dialect
on the image's size. An ASMv2 box is on the image padded to a centred square; on a 451x300 image
``[[0, 167, 1000, 833]]`` is the whole image."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.cli import cli
from pancap_retrieval.detection import Detection
from pancap_retrieval.errors import ImageSizeError
from reconstruct.fidelity import adherence
from reconstruct.layout import layout_from_record

WIDE = (451, 300)
WHOLE = "A woman <box>[[0, 167, 1000, 833]]</box> in a white spacesuit stands in a room."


@pytest.mark.parametrize("dialect", ["asmv2", "auto"])
def test_an_asmv2_box_of_the_padded_square_content_is_the_whole_wide_image(dialect):
    layout = layout_from_record(CaptionRecord("wide", WHOLE), image_size=WIDE, dialect=dialect)
    assert layout.source_boxes == [[0.0, 0.0, 1.0, 1.0]]
    tall = layout_from_record(
        CaptionRecord("tall", "A woman <box>[[167, 0, 833, 1000]]</box>."), image_size=(300, 451), dialect=dialect
    )
    assert tall.source_boxes == [[0.0, 0.0, 1.0, 1.0]]


def test_asmv2_boxes_without_the_image_size_are_an_error_not_a_square():
    with pytest.raises(ImageSizeError, match="image size"):
        layout_from_record(CaptionRecord("wide", WHOLE), dialect="asmv2")
    with pytest.raises(ImageSizeError, match="asmv2"):
        layout_from_record(CaptionRecord("wide", WHOLE))  # told by its <box> form
    with pytest.raises(ImageSizeError, match="pixel"):
        layout_from_record(CaptionRecord("wide", "A woman at [0, 0, 451, 300]."), dialect="pixel")


def test_re_detection_compares_the_de_padded_box():
    layout = layout_from_record(CaptionRecord("wide", WHOLE), image_size=WIDE, dialect="asmv2")
    whole_person = Detection("person", 0, 0.9, Box(0.0, 0.0, 1.0, 1.0))
    result = adherence([layout], [[whole_person]])
    assert result["instances"] == 1 and result["mIoU"] == pytest.approx(1.0)


def _wide_image_folder(tmp_path):
    from PIL import Image
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()).convert("RGB").resize(WIDE).save(folder / "wide.png")
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "wide.png", "description": "An astronaut in a white suit."}) + "\n"
    )
    captions = tmp_path / "pancapchain.json"
    captions.write_text(json.dumps([{"image_path": "photos/wide.png", "model_response": WHOLE}]))
    return folder, captions


def test_an_imported_asmv2_store_is_de_padded_in_layouts_and_the_gallery(tmp_path):
    folder, captions = _wide_image_folder(tmp_path)
    dataset, out = f"imagefolder:{folder}", tmp_path / "run"
    runner = CliRunner()
    where = ["--dataset", dataset, "--out", str(out)]
    imported = runner.invoke(
        cli, ["captions", "import", str(captions), "--captioner", "pcc", "--dialect", "asmv2", *where]
    )
    assert imported.exit_code == 0, imported.output
    redrawn = runner.invoke(cli, ["reconstruct", "--captions", "pcc", *where])
    assert redrawn.exit_code == 0, redrawn.output
    line = json.loads((out / "images" / "pcc" / "layouts.jsonl").read_text().splitlines()[-1])
    assert line["layout"]["image_size"] == list(WIDE)
    assert line["layout"]["source_boxes"] == [[0.0, 0.0, 1.0, 1.0]]
    pages = "".join(p.read_text() for p in (out / "gallery").rglob("*.html"))
    drawn = re.findall(r"left:([\d.]+)%;top:([\d.]+)%;width:([\d.]+)%;height:([\d.]+)%", pages)
    assert drawn and set(drawn) == {("0.00", "0.00", "100.00", "100.00")}
