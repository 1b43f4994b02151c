"""Any folder of images, with descriptions from an optional metadata.jsonl."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pancap_retrieval.data import load_dataset, open_image, undecoded, unreadable_ids
from pancap_retrieval.data.records import features
from pancap_retrieval.errors import DatasetError


@pytest.fixture
def folder(tmp_path: Path, photos: dict[str, bytes]) -> Path:
    root = tmp_path / "photos"
    (root / "kitchen").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    (root / "cat.jpg").write_bytes(photos["chelsea"])
    png = io.BytesIO()
    Image.open(io.BytesIO(photos["coffee"])).save(png, format="PNG")
    (root / "kitchen" / "cup.PNG").write_bytes(png.getvalue())
    webp = io.BytesIO()
    Image.open(io.BytesIO(photos["astronaut"])).save(webp, format="WEBP")
    (root / "astronaut.webp").write_bytes(webp.getvalue())
    (root / "notes.txt").write_text("not an image")
    (root / ".thumbs" / "cat.jpg").write_bytes(photos["chelsea"])
    (root / ".hidden.jpg").write_bytes(photos["chelsea"])
    metadata = [
        {"file_name": "cat.jpg", "text": "A tabby cat."},
        {"file_name": "kitchen/cup.PNG", "caption": "An espresso cup."},
        {"file_name": "gone.jpg", "description": "Not there."},
    ]
    (root / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metadata))
    return root


def test_schema_ids_and_descriptions(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = load_dataset(f"imagefolder:{folder}")
    assert ds.features == features()
    assert ds["example_id"] == ["astronaut", "cat", "kitchen/cup"]
    assert ds["description"] == ["", "A tabby cat.", "An espresso cup."]
    assert list(zip(ds["width"], ds["height"])) == [(50, 50), (90, 60), (60, 40)]
    assert ds["split"] == ["train", "train", "train"]
    assert [open_image(row).size for row in ds] == [(50, 50), (90, 60), (60, 40)]
    assert "1 metadata entries name no image" in caplog.text


def test_limit_is_the_first_ids_in_sorted_order(folder: Path) -> None:
    assert load_dataset(f"imagefolder:{folder}", limit=2)["example_id"] == ["astronaut", "cat"]
    assert load_dataset(f"imagefolder:{folder}", limit=2)["example_id"] == ["astronaut", "cat"]


def test_only_train_split(folder: Path) -> None:
    assert len(load_dataset(f"imagefolder:{folder}", split="train")) == 3
    with pytest.raises(DatasetError, match="imagefolder has no split 'test'; known splits: train"):
        load_dataset(f"imagefolder:{folder}", split="test")


def test_missing_folder_is_one_line_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    assert str(caught.value) == f"imagefolder: no such folder: {tmp_path / 'nowhere'}"


def test_empty_folder_and_file_argument(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no image files in"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'a.txt'}")
    with pytest.raises(DatasetError, match="imagefolder needs a folder"):
        load_dataset("imagefolder")


def test_corrupt_image_loads_and_fails_on_open(folder: Path) -> None:
    (folder / "broken.jpg").write_bytes(b"garbage bytes, not a JPEG")
    ds = load_dataset(f"imagefolder:{folder}")
    assert ds["example_id"] == ["astronaut", "broken", "cat", "kitchen/cup"]
    assert unreadable_ids(ds) == ["broken"]
    broken = undecoded(ds)[1]
    with pytest.raises(DatasetError, match=r"^broken: cannot decode image \(UnidentifiedImageError"):
        open_image(broken)
    assert open_image(undecoded(ds)[2]).size == (90, 60)


def test_two_files_with_one_id_are_an_error(folder: Path, photos: dict[str, bytes]) -> None:
    (folder / "cat.png").write_bytes(photos["chelsea"])
    with pytest.raises(DatasetError, match="both give example_id 'cat'"):
        load_dataset(f"imagefolder:{folder}")


def test_malformed_metadata(folder: Path) -> None:
    (folder / "metadata.jsonl").write_text('{"file_name": "cat.jpg", "text": "ok"}\n{"text": "no file"}\n')
    with pytest.raises(DatasetError, match=r"metadata\.jsonl:2: needs a string 'file_name'"):
        load_dataset(f"imagefolder:{folder}")
    (folder / "metadata.jsonl").write_text("{broken\n")
    with pytest.raises(DatasetError, match=r"metadata\.jsonl:1: not valid JSON"):
        load_dataset(f"imagefolder:{folder}")
