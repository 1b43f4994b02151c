"""DOCCI from the official local layout, from a local parquet copy, and the Hub paths that must fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from pancap_retrieval.data import load_dataset, open_image, undecoded, unreadable_ids
from pancap_retrieval.data.records import features
from pancap_retrieval.errors import DatasetError


def test_local_release_schema_and_default_split(docci_dir: Path) -> None:
    ds = load_dataset(f"docci:{docci_dir}")
    assert ds.features == features()
    assert list(ds.features) == ["example_id", "image", "description", "width", "height", "split"]
    assert ds["example_id"] == ["test_00001", "test_00002"]  # the default split is test, sorted by id
    assert ds["split"] == ["test", "test"]
    assert ds["description"] == [
        "A red espresso cup on a saucer on a wooden table.",
        "A close-up of a tabby cat with green eyes.",
    ]
    assert list(zip(ds["width"], ds["height"])) == [(60, 40), (90, 60)]
    image = open_image(ds[1])
    assert (image.mode, image.size) == ("RGB", (90, 60))


def test_train_split_and_limit(docci_dir: Path) -> None:
    train = load_dataset(f"docci:{docci_dir}", split="train")
    assert train["example_id"] == ["train_00000"]
    assert (train[0]["width"], train[0]["height"]) == (50, 50)
    assert load_dataset(f"docci:{docci_dir}", split="test", limit=1)["example_id"] == ["test_00001"]
    assert load_dataset(f"docci:{docci_dir}", split="test", limit=10)["example_id"] == [
        "test_00001",
        "test_00002",
    ]


def test_unknown_split_names_the_known_ones(docci_dir: Path) -> None:
    with pytest.raises(DatasetError, match="docci has no split 'val'; known splits: test, train"):
        load_dataset(f"docci:{docci_dir}", split="val")


def test_missing_directory_is_one_line_naming_the_path_and_the_download(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "docci"
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"docci:{missing}")
    assert str(caught.value) == (
        f"docci: no such directory: {missing}; download it with pancap data download docci --to {missing}"
    )


def test_relative_missing_directory_names_it_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as caught:
        load_dataset("docci:./data/docci")
    assert str(caught.value) == (
        "docci: no such directory: data/docci; download it with pancap data download docci --to data/docci"
    )


def test_directory_without_the_release_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"docci:{tmp_path}")
    assert "has no docci_descriptions.jsonlines and no parquet files" in str(caught.value)
    assert f"pancap data download docci --to {tmp_path}" in str(caught.value)


def test_a_file_instead_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "docci.zip").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"is not a directory; download the official release with pancap data"):
        load_dataset(f"docci:{tmp_path / 'docci.zip'}")


def test_missing_images_folder(docci_dir: Path) -> None:
    for path in (docci_dir / "images").iterdir():
        path.unlink()
    (docci_dir / "images").rmdir()
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"docci:{docci_dir}")
    message = str(caught.value)
    assert message.startswith(f"docci: image folder not found: {docci_dir / 'images'}; unpack docci_images.tar.gz")
    assert f"pancap data download docci --to {docci_dir}" in message


def test_malformed_line_names_file_and_line(docci_dir: Path) -> None:
    path = docci_dir / "docci_descriptions.jsonlines"
    path.write_text(path.read_text() + '{"example_id": "test_9", "split": "test"\n')
    with pytest.raises(DatasetError, match=r"docci_descriptions\.jsonlines:4: not valid JSON"):
        load_dataset(f"docci:{docci_dir}")
    path.write_text(json.dumps({"example_id": "test_9", "split": "test", "image_file": "x.jpg"}) + "\n")
    with pytest.raises(DatasetError, match=r":1: missing or non-string description"):
        load_dataset(f"docci:{docci_dir}")


def test_duplicate_ids_are_an_error(docci_dir: Path) -> None:
    path = docci_dir / "docci_descriptions.jsonlines"
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    with pytest.raises(DatasetError, match="duplicate example_id 'test_00002'"):
        load_dataset(f"docci:{docci_dir}")


def test_corrupt_and_missing_images_load_and_fail_on_open(docci_dir: Path) -> None:
    (docci_dir / "images" / "test_00001.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (docci_dir / "images" / "test_00002.jpg").unlink()
    ds = load_dataset(f"docci:{docci_dir}")
    assert len(ds) == 2
    assert unreadable_ids(ds) == ["test_00001", "test_00002"]
    assert ds["width"] == [0, 0]
    rows = list(undecoded(ds))
    with pytest.raises(DatasetError, match=r"^test_00001: cannot decode image"):
        open_image(rows[0])
    with pytest.raises(DatasetError, match=r"^test_00002: cannot decode image \(FileNotFoundError"):
        open_image(rows[1])


def test_google_docci_script_is_refused_with_the_working_ways() -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset("docci:google/docci")
    message = str(caught.value)
    assert "loading script" in message
    assert "pancap data download docci --to ./data/docci" in message
    assert "parquet mirror" in message


def test_hub_mirror_offline_says_to_pass_a_local_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError) as caught:
        load_dataset("docci:someone/docci-parquet-mirror")
    message = str(caught.value)
    assert "'someone/docci-parquet-mirror' is not a local directory" in message
    assert "cannot be fetched offline" in message
    assert "pancap data download docci --to someone/docci-parquet-mirror" in message
    assert "\n" not in message
    with pytest.raises(DatasetError, match=r"cannot be loaded from the Hub at revision 'v1\.0'"):
        load_dataset("docci:someone/docci-parquet-mirror@v1.0")


def test_no_argument_uses_the_environment(docci_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANCAP_DOCCI_DIR", raising=False)
    with pytest.raises(DatasetError, match="docci needs a source: download the official release with pancap"):
        load_dataset("docci")
    monkeypatch.setenv("PANCAP_DOCCI_DIR", str(docci_dir))
    assert load_dataset("docci", split="train")["example_id"] == ["train_00000"]


def test_local_parquet_copy_is_normalised(
    tmp_path: Path, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    root = tmp_path / "mirror"
    (root / "data").mkdir(parents=True)
    mirror_features = datasets.Features(
        {
            "image": datasets.Image(),
            "example_id": datasets.Value("string"),
            "description": datasets.Value("string"),
        }
    )
    splits = {
        "test": [
            ("test_00002", "chelsea", "cat"),
            ("test_00001", "coffee", "cup"),
            ("test_00003", None, "bad"),
        ],
        "train": [("train_00000", "astronaut", "astronaut")],
    }
    for split, rows in splits.items():
        table = datasets.Dataset.from_dict(
            {
                "image": [{"bytes": photos[p] if p else b"garbage", "path": f"{e}.jpg"} for e, p, _ in rows],
                "example_id": [e for e, _, _ in rows],
                "description": [d for _, _, d in rows],
            },
            features=mirror_features,
        )
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    ds = load_dataset(f"docci:{root}", split="test", limit=2)
    assert ds.features == features()
    assert ds["example_id"] == ["test_00001", "test_00002"]
    assert ds["description"] == ["cup", "cat"]
    assert list(zip(ds["width"], ds["height"])) == [(60, 40), (90, 60)]
    assert ds["split"] == ["test", "test"]
    assert open_image(ds[1]).size == (90, 60)
    everything = load_dataset(f"docci:{root}", split="test")
    assert unreadable_ids(everything) == ["test_00003"]
    with pytest.raises(
        DatasetError, match=r"docci:.*mirror has no split 'qual_dev'; known splits: test, train"
    ):
        load_dataset(f"docci:{root}", split="qual_dev")
