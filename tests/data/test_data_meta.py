"""A dataset is one record plus one registry line: registered here at test time, it is listed, explained in the
``--dataset`` help and loaded by spec, with no library file edited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.data import (
    DATASETS,
    DatasetMeta,
    add_dataset,
    describe_datasets,
    load_dataset,
    split_spec,
)
from pancap_retrieval.errors import DatasetError

TOY = DatasetMeta(
    name="toy",
    loader=f"{__name__}:load_toy",
    help="three blank squares with one-word descriptions, for tests",
    usage="`toy:WORD` (three blank squares described by WORD)",
    spec="toy:WORD",
    source="made in memory",
    splits=("dev", "test"),
    default_split="dev",
    env="PANCAP_TOY_WORD",
)


def load_toy(arg: str | None, split: str | None = None, limit: int | None = None):
    import io

    from PIL import Image

    from pancap_retrieval.data.records import Row, build_dataset, choose_split, first_n

    chosen = choose_split(TOY.name, split, TOY.splits, TOY.default_split or "")
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    rows = [Row(f"toy{i}", buffer.getvalue(), f"{arg} {i}", chosen) for i in range(3)]
    return build_dataset(first_n(rows, limit))


@pytest.fixture
def toy() -> Iterator[DatasetMeta]:
    add_dataset(TOY)
    yield TOY
    DATASETS.remove(TOY.name)


def test_a_registered_dataset_loads_by_spec(toy: DatasetMeta) -> None:
    data = load_dataset("toy:cat", limit=2)
    assert data["description"] == ["cat 0", "cat 1"]
    assert set(data["split"]) == {"dev"}  # the record's default split
    assert set(load_dataset("toy:dog", split="test")["split"]) == {"test"}
    with pytest.raises(DatasetError, match="toy has no split 'val'; known splits: dev, test"):
        load_dataset("toy:cat", split="val")


def test_a_registered_dataset_is_listed_and_explained(toy: DatasetMeta) -> None:
    listed = CliRunner().invoke(cli, ["list", "datasets"], terminal_width=400)
    assert listed.exit_code == 0, listed.output
    assert "three blank squares with one-word descriptions" in listed.output
    assert "spec: toy:WORD; splits: dev, test" in listed.output
    help_text = CliRunner().invoke(cli, ["caption", "--help"], terminal_width=400)
    assert help_text.exit_code == 0, help_text.output
    text = " ".join(help_text.output.split())
    assert "`toy:WORD` (three blank squares described by WORD)" in text
    assert "dev for toy" in text  # the --split help names its default split
    assert {"name": "toy", "description": TOY.help, "splits": ["dev", "test"], "source": "made in memory",
            "spec": "toy:WORD"} in describe_datasets()


def test_the_record_decides_revisions(toy: DatasetMeta) -> None:
    assert split_spec("toy:someone/words@abc") == ("toy", "someone/words@abc", None)  # not pinnable: part of arg
    with pytest.raises(DatasetError, match="local data has none"):
        split_spec("toy:cat", revision="abc")
    assert split_spec("docci:someone/mirror@abc") == ("docci", "someone/mirror", "abc")


def test_an_unregistered_dataset_is_gone(toy: DatasetMeta) -> None:
    DATASETS.remove(toy.name)
    assert "toy" not in DATASETS
    assert "toy:WORD" not in " ".join(CliRunner().invoke(cli, ["caption", "--help"]).output.split())


def test_listing_pads_names_to_the_longest() -> None:
    lines = CliRunner().invoke(cli, ["list", "datasets"]).output.split("\n\n")[1].splitlines()
    starts = {line.index("spec:") for line in lines if line}
    assert starts == {len("sharegpt4v-1k") + 2}


def test_every_builtin_record_is_consistent() -> None:
    for meta in DATASETS.metas():
        assert DATASETS.target(meta.name) == meta.loader
        assert meta.splits or meta.splits_note
    assert DATASETS.meta("sapancap").env == "PANCAP_SA1B_DIR"
    assert DATASETS.meta("docci").env == "PANCAP_DOCCI_DIR"
    assert [m.name for m in DATASETS.metas() if m.revisioned] == ["docci", "hf", "iiw", "sharegpt4v-1k", "urban1k"]


def test_a_record_needs_a_loader_target_and_a_known_default_split() -> None:
    with pytest.raises(ValueError, match="module:function"):
        DatasetMeta(name="x", loader="nowhere", help="", usage="", spec="x", source="")
    with pytest.raises(ValueError, match="default split"):
        DatasetMeta(name="x", loader="m:f", help="", usage="", spec="x", source="", splits=("a",), default_split="b")
