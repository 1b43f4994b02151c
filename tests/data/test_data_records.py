"""The dataset registry, spec parsing, the shared schema helpers and open_image."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pancap_retrieval.data import DATASETS, describe_datasets, load_dataset, open_image, parse_spec
from pancap_retrieval.data.records import COLUMNS, Row, check_limit, choose_split, first_n, image_size
from pancap_retrieval.errors import DatasetError, RegistryError


def test_registry_names_and_targets() -> None:
    assert DATASETS.names() == ["docci", "hf", "iiw", "imagefolder", "sample", "sapancap", "sharegpt4v-1k", "urban1k"]
    assert DATASETS.target("sapancap") == "pancap_retrieval.data.sapancap:load_sapancap"
    assert DATASETS.target("docci") == "pancap_retrieval.data.docci:load_docci"


def test_importing_the_data_package_loads_neither_torch_nor_datasets() -> None:
    code = (
        "import sys, pancap_retrieval.data as d; d.describe_datasets(); d.parse_spec('imagefolder:/x'); "
        "print(sorted(m for m in ('torch', 'datasets', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_parse_spec() -> None:
    assert parse_spec("sample") == ("sample", None)
    assert parse_spec("imagefolder:/data/my:photos") == ("imagefolder", "/data/my:photos")
    assert parse_spec("docci:someone/docci-parquet") == ("docci", "someone/docci-parquet")
    with pytest.raises(DatasetError, match="empty argument"):
        parse_spec("docci:")


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(
        RegistryError, match="unknown dataset 'coco'; known: docci, hf, iiw, imagefolder, sample, sapancap, sharegpt4v-1k, urban1k"
    ):
        load_dataset("coco")


def test_describe_datasets() -> None:
    rows = {row["name"]: row for row in describe_datasets()}
    assert sorted(rows) == ["docci", "hf", "iiw", "imagefolder", "sample", "sapancap", "sharegpt4v-1k", "urban1k"]
    assert rows["docci"]["splits"] == ["train", "test", "qual_dev", "qual_test"]
    assert rows["sample"]["splits"] == ["test"]
    assert rows["imagefolder"]["splits"] == ["train"]
    for row in rows.values():
        assert set(row) == {"name", "description", "splits", "source", "spec"}


def test_columns() -> None:
    assert COLUMNS == ("example_id", "image", "description", "width", "height", "split")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_limit_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(DatasetError, match="limit must be a positive integer"):
        check_limit(bad)  # type: ignore[arg-type]


def test_choose_split() -> None:
    assert choose_split("x", None, ["test", "train"], "test") == "test"
    assert choose_split("x", "train", ["test", "train"], "test") == "train"
    with pytest.raises(DatasetError, match="x has no split 'val'; known splits: test, train"):
        choose_split("x", "val", ["train", "test"], "test")


def test_first_n_sorts_by_id_and_refuses_duplicates() -> None:
    rows = [Row(eid, "p", "", "test") for eid in ("b", "c", "a")]
    assert [row.example_id for row in first_n(rows, 2)] == ["a", "b"]
    assert [row.example_id for row in first_n(rows, None)] == ["a", "b", "c"]
    with pytest.raises(DatasetError, match="duplicate example_id 'a'"):
        first_n([*rows, Row("a", "q", "", "test")], None)


def test_image_size_reads_headers_and_gives_zero_for_garbage(
    tmp_path: Path, photos: dict[str, bytes]
) -> None:
    assert image_size(photos["chelsea"]) == (90, 60)
    (tmp_path / "x.jpg").write_bytes(photos["coffee"])
    assert image_size(str(tmp_path / "x.jpg")) == (60, 40)
    assert image_size(b"not an image") == (0, 0)
    assert image_size(str(tmp_path / "missing.jpg")) == (0, 0)


def test_open_image_accepts_every_cell_form(tmp_path: Path, photos: dict[str, bytes]) -> None:
    path = tmp_path / "cat.jpg"
    path.write_bytes(photos["chelsea"])
    grey = Image.new("L", (7, 5), 128)
    for cell in (
        {"bytes": photos["chelsea"], "path": None},
        {"bytes": None, "path": str(path)},
        str(path),
        path,
        photos["chelsea"],
        Image.open(io.BytesIO(photos["chelsea"])),
    ):
        image = open_image({"example_id": "cat", "image": cell})
        assert (image.mode, image.size) == ("RGB", (90, 60))
    assert open_image({"example_id": "g", "image": grey}).getpixel((0, 0)) == (128, 128, 128)


def test_open_image_names_the_example_on_failure(tmp_path: Path, photos: dict[str, bytes]) -> None:
    truncated = photos["chelsea"][: len(photos["chelsea"]) // 2]
    cases = {
        "garbage": {"bytes": b"\x00garbage bytes", "path": None},
        "missing": {"bytes": None, "path": str(tmp_path / "nope.jpg")},
        "truncated": {"bytes": truncated, "path": None},
        "empty": {"bytes": None, "path": None},
        "number": 42,
    }
    for example_id, cell in cases.items():
        with pytest.raises(DatasetError, match=rf"^{example_id}: cannot decode image \(") as caught:
            open_image({"example_id": example_id, "image": cell})
        assert "\n" not in str(caught.value)
