"""The ``sapancap`` dataset: packaged ground-truth captions plus SA-1B images from a local folder."""

from __future__ import annotations

import pytest

from pancap_retrieval.data.records import COLUMNS, open_image
from pancap_retrieval.data.sapancap import ENV_DIR, load_sapancap, missing_images, read_ground_truth
from pancap_retrieval.errors import DatasetError


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory):
    """A folder laid out like SA-1B with real photos (from scikit-image) for the first three test ids."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("sa1b")
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    for (_example_id, image_path, _), photo in zip(read_ground_truth("test")[:3], photos):
        path = root / image_path
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(path, quality=90)
    return root


def test_ground_truth_splits_are_complete():
    val, test = read_ground_truth("val"), read_ground_truth("test")
    assert (len(val), len(test)) == (500, 130)
    assert [row[0] for row in test] == sorted(row[0] for row in test)
    assert all(row[1].startswith("sam/sa_") and row[2] for row in val + test)


def test_loads_present_images_and_counts_missing(sa1b):
    dataset = load_sapancap(str(sa1b), "test", limit=5)
    expected = [row[0] for row in read_ground_truth("test")[:3]]
    assert dataset.column_names == list(COLUMNS)
    assert dataset["example_id"] == expected
    assert (dataset[0]["width"], dataset[0]["height"]) == (512, 512)  # the astronaut
    assert (dataset[1]["width"], dataset[1]["height"]) == (600, 400)  # the coffee cup
    assert open_image(dataset[0]).size == (512, 512)
    assert set(dataset["split"]) == {"test"}
    assert dataset[0]["description"] == read_ground_truth("test")[0][2]
    assert "3 of 5 images found" in dataset.info.description and "2 skipped" in dataset.info.description
    assert dataset.features["width"].dtype == "int32"
    assert len(missing_images(sa1b, "test")) == 127


def test_root_may_be_the_sam_folder_and_env_var(sa1b, monkeypatch):
    assert len(load_sapancap(str(sa1b / "sam"), "test", limit=3)) == 3
    monkeypatch.setenv(ENV_DIR, str(sa1b))
    assert len(load_sapancap(None, None, limit=3)) == 3  # default split: test


def test_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DIR, raising=False)
    with pytest.raises(DatasetError, match="segment-anything"):
        load_sapancap(None, "test")
    with pytest.raises(DatasetError, match="image folder not found"):
        load_sapancap(str(tmp_path / "nowhere"), "test")
    with pytest.raises(DatasetError, match="none of the 130 test images"):
        load_sapancap(str(tmp_path), "test")
    with pytest.raises(DatasetError, match="no split 'train'"):
        load_sapancap(str(tmp_path), "train")
    with pytest.raises(DatasetError, match="limit"):
        load_sapancap(str(tmp_path), "val", limit=0)


def test_registered_in_the_dataset_registry(sa1b):
    from pancap_retrieval.data import load_dataset

    assert load_dataset(f"sapancap:{sa1b}", split="test", limit=2)["example_id"] == [
        row[0] for row in read_ground_truth("test")[:2]
    ]
