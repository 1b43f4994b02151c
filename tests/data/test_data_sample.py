"""The offline sample: real photos read from installed packages, each with a hand-written description."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pancap_retrieval.data import load_dataset, open_image
from pancap_retrieval.data import sample as sample_module
from pancap_retrieval.data.records import features
from pancap_retrieval.errors import DatasetError


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


def test_schema_size_and_order(sample) -> None:
    assert sample.features == features()
    assert len(sample) == 20
    ids = sample["example_id"]
    assert ids == sorted(ids)
    assert len(set(ids)) == 20
    assert set(sample["split"]) == {"test"}
    assert {"skimage-chelsea", "skimage-astronaut", "skimage-coffee"} <= set(ids)


def test_descriptions_are_docci_sized(sample) -> None:
    for example_id, text in zip(sample["example_id"], sample["description"]):
        words = len(text.split())
        assert 80 <= words <= 200, (example_id, words)


def test_every_entry_has_provenance_and_licence() -> None:
    for entry in sample_module.sample_entries():
        assert set(entry) == {"example_id", "source", "provenance", "licence", "description"}
        assert set(entry["source"]) == {"package", "file", "accessor"}
        assert entry["provenance"].strip() and entry["licence"].strip()
        assert re.fullmatch(r"[a-z]+-[a-z0-9-]+", entry["example_id"])


def test_sizes_match_the_decoded_photos(sample) -> None:
    for row in sample:
        image = open_image(row)
        assert image.mode == "RGB"
        assert image.size == (row["width"], row["height"])


@pytest.mark.parametrize(
    ("example_id", "accessor"),
    [
        ("skimage-chelsea", lambda: __import__("skimage.data").data.chelsea()),
        ("skimage-astronaut", lambda: __import__("skimage.data").data.astronaut()),
        ("skimage-coffee", lambda: __import__("skimage.data").data.coffee()),
        ("skimage-motorcycle", lambda: __import__("skimage.data").data.stereo_motorcycle()[0]),
        ("sklearn-china", lambda: __import__("sklearn.datasets").datasets.load_sample_image("china.jpg")),
    ],
)
def test_pixels_are_those_of_the_package_accessor(sample, example_id: str, accessor) -> None:
    row = sample[sample["example_id"].index(example_id)]
    assert np.array_equal(np.asarray(open_image(row)), accessor())


def test_grace_hopper_is_matplotlib_sample_data(sample) -> None:
    from matplotlib import cbook
    from PIL import Image

    row = sample[sample["example_id"].index("matplotlib-grace-hopper")]
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as expected:
        assert np.array_equal(np.asarray(open_image(row)), np.asarray(expected.convert("RGB")))


def test_limit_split_and_argument() -> None:
    assert load_dataset("sample", limit=3)["example_id"] == [
        "matplotlib-grace-hopper",
        "skimage-astronaut",
        "skimage-brick",
    ]
    with pytest.raises(DatasetError, match="sample has no split 'train'; known splits: test"):
        load_dataset("sample", split="train")
    with pytest.raises(DatasetError, match="sample takes no argument"):
        load_dataset("sample:extra")


def test_missing_photo_is_a_counted_skip(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = sample_module.package_file
    monkeypatch.setattr(
        sample_module,
        "package_file",
        lambda package, file: None if package == "sklearn" else real(package, file),
    )
    ds = load_dataset("sample")
    assert len(ds) == 18
    assert not any(eid.startswith("sklearn-") for eid in ds["example_id"])
    assert "2 photo(s) not found in the installed packages, skipped" in caplog.text
