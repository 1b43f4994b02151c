"""Dataset specs parsed once into a typed DatasetSpec (with a Hub revision), what a manifest records of a dataset,
and the errors that say the fix when data is missing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pancap_retrieval.data import (
    DATASET_SPEC_HELP,
    as_dataset_spec,
    dataset_info,
    load_dataset,
    require_descriptions,
    split_spec,
)
from pancap_retrieval.errors import DatasetError, RegistryError
from pancap_retrieval.suite import DatasetSpec, SuiteError, load_suite


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sample", ("sample", None, None)),
        ("docci:./data/docci", ("docci", "./data/docci", None)),
        ("docci:owner/mirror", ("docci", "owner/mirror", None)),
        ("docci:owner/mirror@v1.0", ("docci", "owner/mirror", "v1.0")),
        ("docci:owner/mirror@refs/convert/parquet", ("docci", "owner/mirror", "refs/convert/parquet")),
        ("docci:./data/docci@2024", ("docci", "./data/docci@2024", None)),  # an @ in a local path stays
        ("imagefolder:/data/me@host/photos", ("imagefolder", "/data/me@host/photos", None)),
        ("imagefolder:owner/photos@2x", ("imagefolder", "owner/photos@2x", None)),
    ],
)
def test_split_spec(spec: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "revision", "message"),
    [
        ("docci:owner/mirror@", None, "has an empty revision after '@'"),
        ("docci:owner/mirror@v1", "v2", "pins revision 'v1' but revision 'v2' is also given; keep one"),
        ("imagefolder:/photos", "v1", "a revision ('v1') pins a dataset on the Hub"),
        ("docci:./data/docci", "v1", "local data has none: remove it"),
        ("sample", "main", "pins a dataset on the Hub (docci:OWNER/NAME@REVISION)"),
        ("coco:x", None, "unknown dataset 'coco'; known: docci, hf, iiw, imagefolder, sample, sapancap, sharegpt4v-1k, urban1k"),
    ],
)
def test_split_spec_refuses(spec: str, revision: str | None, message: str) -> None:
    with pytest.raises((DatasetError, RegistryError), match=message.replace("(", r"\(").replace(")", r"\)")):
        split_spec(spec, revision)


def test_dataset_spec_is_parsed_once_into_typed_parts() -> None:
    pinned = DatasetSpec.model_validate({"name": "docci:owner/mirror@v1", "split": "test", "limit": 5})
    assert (pinned.kind, pinned.arg, pinned.revision, pinned.split, pinned.limit) == (
        "docci", "owner/mirror", "v1", "test", 5,
    )
    keyed = DatasetSpec(name="docci:owner/mirror", revision="v1")
    assert keyed.name == "docci:owner/mirror@v1"  # canonical: passed on as a string it still names v1
    assert keyed.revision == pinned.revision and keyed.arg == pinned.arg
    assert DatasetSpec.model_validate("sample") == DatasetSpec(name="sample")
    assert DatasetSpec(name="sample").arg is None
    assert DatasetSpec(name="docci:./data/docci").model_copy(update={"limit": 3}).arg == "./data/docci"
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        DatasetSpec(name="coco")
    with pytest.raises(ValueError, match="revision"):
        DatasetSpec(name="imagefolder:/x", revision="v1")


def test_a_suite_pins_the_revision_and_fails_on_a_bad_dataset_before_any_work(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    base = "name: s\ncaptioners: [{name: reference}]\ndataset:\n"
    suite.write_text(base + "  name: docci:owner/mirror\n  revision: 3f2a9c1\n  split: test\n")
    dataset = load_suite(suite).dataset
    assert (dataset.name, dataset.revision, dataset.arg) == ("docci:owner/mirror@3f2a9c1", "3f2a9c1", "owner/mirror")
    suite.write_text(base + "  name: cocoa:/data\n")
    with pytest.raises(SuiteError, match="unknown dataset 'cocoa'; known: docci, hf, iiw, imagefolder, sample, sapancap, sharegpt4v-1k, urban1k"):
        load_suite(suite)
    suite.write_text(base + "  name: sample\n  revision: main\n")
    with pytest.raises(SuiteError, match="pins a dataset on the Hub"):
        load_suite(suite)


def test_load_dataset_takes_the_typed_spec_or_a_string(docci_dir: Path) -> None:
    typed = DatasetSpec(name=f"docci:{docci_dir}", split="test", limit=1)
    assert load_dataset(typed)["example_id"] == ["test_00001"]
    assert load_dataset(typed, split="train", limit=None)["example_id"] == ["train_00000"]  # split replaced
    assert load_dataset(f"docci:{docci_dir}", split="test", limit=1)["example_id"] == ["test_00001"]
    assert as_dataset_spec(typed, limit=2).limit == 2 and typed.limit == 1
    with pytest.raises(DatasetError, match="limit must be a positive integer, got 0"):
        load_dataset(typed, limit=0)
    with pytest.raises(RegistryError, match="unknown dataset 'coco'"):
        load_dataset("coco:x")
    with pytest.raises(DatasetError, match=r"^dataset spec 'docci:owner/mirror@' has an empty revision after '@'$"):
        load_dataset("docci:owner/mirror@")


def test_a_revision_on_a_local_folder_is_refused(docci_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(docci_dir.parent.parent)
    local = f"{docci_dir.parent.name}/docci"  # OWNER/NAME in form, but a folder here
    assert load_dataset(f"docci:{local}", limit=1)["example_id"] == ["test_00001"]
    with pytest.raises(DatasetError, match=rf"^docci: {local} is a local folder; a revision \(@v1\) pins a Hub"):
        load_dataset(f"docci:{local}@v1")


def test_dataset_info_names_the_data_evaluated(docci_dir: Path) -> None:
    spec = DatasetSpec(name=f"docci:{docci_dir}")
    info = dataset_info(spec, load_dataset(spec))
    assert {key: info[key] for key in ("name", "kind", "source", "split", "revision", "limit", "n")} == {
        "name": f"docci:{docci_dir}",
        "kind": "docci",
        "source": str(docci_dir.resolve()),
        "split": "test",
        "revision": None,
        "limit": None,
        "n": 2,
    }
    assert info["unreadable_images"] == 0 and len(info["rows_sha256"]) == 64
    json.dumps(info)
    assert dataset_info(str(spec.name), load_dataset(spec))["rows_sha256"] == info["rows_sha256"]
    path = docci_dir / "docci_descriptions.jsonlines"
    path.write_text(path.read_text().replace("tabby cat", "grey cat"))
    assert dataset_info(spec, load_dataset(spec))["rows_sha256"] != info["rows_sha256"]
    hub = dataset_info("docci:owner/mirror@v1", load_dataset(spec))
    assert (hub["source"], hub["revision"], hub["name"]) == ("owner/mirror", "v1", "docci:owner/mirror@v1")
    sample = dataset_info("sample", load_dataset("sample", limit=2))
    assert (sample["source"], sample["split"], sample["n"]) == ("installed packages", "test", 2)


def test_imagefolder_without_metadata_warns_and_says_what_it_must_contain(
    tmp_path: Path, photos: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cat.jpg").write_bytes(photos["chelsea"])
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(f"imagefolder:{tmp_path}")
    assert dataset["description"] == [""]
    assert f"no metadata.jsonl in {tmp_path}" in caplog.text
    with pytest.raises(DatasetError) as caught:
        require_descriptions(dataset, f"imagefolder:{tmp_path}")
    message = str(caught.value)
    assert message.startswith(f"imagefolder:{tmp_path}: no image has a description; add {tmp_path}/metadata.jsonl")
    assert '{"file_name": "cat.jpg", "description": "A tabby cat asleep on a red sofa."}' in message
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "cat.jpg", "text": "A cat."}) + "\n")
    require_descriptions(load_dataset(f"imagefolder:{tmp_path}"), f"imagefolder:{tmp_path}")


def test_sa1b_folder_missing_says_where_the_images_come_from(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"sapancap:{tmp_path / 'sa1b'}")
    message = str(caught.value)
    assert message.startswith(f"sapancap: SA-1B image folder not found: {tmp_path / 'sa1b'}; ")
    assert "https://ai.meta.com/datasets/segment-anything/" in message
    assert "the test split needs 46: sa_000000.tar ... sa_000063.tar" in message
    assert f"{tmp_path / 'sa1b' / 'sam' / 'sa_000009' / 'sa_101767.jpg'} exists" in message
    (tmp_path / "sa1b").mkdir()
    with pytest.raises(DatasetError, match=r"none of the 500 val images is under .*the val split needs 64"):
        load_dataset(f"sapancap:{tmp_path / 'sa1b'}", split="val")


def test_unknown_split_lists_the_known_ones(tmp_path: Path, photos: dict[str, bytes]) -> None:
    (tmp_path / "cat.jpg").write_bytes(photos["chelsea"])
    for spec, message in (
        ("sample", "sample has no split 'val'; known splits: test"),
        (f"imagefolder:{tmp_path}", "imagefolder has no split 'val'; known splits: train"),
        (f"sapancap:{tmp_path}", "sapancap has no split 'val2'; known splits: test, val"),
    ):
        with pytest.raises(DatasetError, match=message):
            load_dataset(spec, split="val2" if spec.startswith("sapancap") else "val")


def test_spec_help_shows_every_form() -> None:
    for form in ("`sample`", "`docci:DIR`", "`docci:OWNER/MIRROR`", "@REVISION", "`imagefolder:PATH`",
                 "`sapancap:SA1B_DIR`", "metadata.jsonl", "PANCAP_MAX_IMAGE_PIXELS"):
        assert form in DATASET_SPEC_HELP


@pytest.mark.parametrize("command", [["caption"], ["retrieve"], ["reconstruct"], ["captions", "import"]])
def test_every_dataset_option_explains_the_spec(command: list[str]) -> None:
    from click.testing import CliRunner

    from pancap_retrieval.cli import cli

    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for form in ("`docci:DIR`", "docci:OWNER/MIRROR@a1b2c3d", "`imagefolder:PATH`", "`sapancap:SA1B_DIR`"):
        assert form in text
