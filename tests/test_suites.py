"""Every shipped suite loads, and names only registered datasets, captioners, embedders and redrawers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pancap_retrieval.captioners import CAPTIONERS
from pancap_retrieval.data import DATASETS
from pancap_retrieval.retrieval.embedder import get_spec
from pancap_retrieval.retrieval.image_text import RETRIEVERS
from pancap_retrieval.retrieval.index import SEARCH_BACKENDS
from pancap_retrieval.suite import SuiteError, load_suite
from reconstruct.redrawers import REDRAWERS

SUITES = sorted((Path(__file__).resolve().parents[1] / "eval_suites").glob("*.yaml"))


def test_the_five_suites_are_shipped():
    assert [p.stem for p in SUITES] == [
        "docci_pancapchain_vs_llava", "docci_paper_table", "docci_reconstruction", "docci_retrieval", "sample"
    ]


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_names_only_registered_things(path):
    suite = load_suite(path)
    assert suite.dataset.name.partition(":")[0] in DATASETS
    for captioner in suite.captioners:
        assert captioner.file or captioner.name in CAPTIONERS, captioner.name
    for retriever in suite.retrievers:
        assert retriever.entry in RETRIEVERS, retriever.entry
    for embedder in suite.embedders:
        assert get_spec(embedder.name) is not None, embedder.name
    assert suite.retrieval.backend in SEARCH_BACKENDS
    if suite.reconstruction is not None:
        assert suite.reconstruction.redrawer in REDRAWERS


def test_suite_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: {name: sample, limit: 0}\ncaptioners: []\n")
    with pytest.raises(SuiteError) as info:
        load_suite(bad)
    message = str(info.value)
    assert "\n" not in message and "dataset.limit" in message and "captioners" in message
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "missing.yaml")


def test_relative_paths_are_read_from_the_suite_file(tmp_path, monkeypatch):
    """A suite in one folder run from another: file, dataset folder and a model folder written as paths are read
    from the suite's folder; a hub id and a registry name are left as written."""
    suites = tmp_path / "suites"
    (suites / "imgs").mkdir(parents=True)
    (suites / "ckpt").mkdir()
    (suites / "caps.jsonl").write_text('{"example_id": "a", "caption": "x"}\n')
    (suites / "s.yaml").write_text(
        "name: s\ndataset: imagefolder:imgs\n"
        "captioners:\n"
        "  - {name: mine, file: caps.jsonl}\n"
        "  - {name: pancapchain, model: ./ckpt}\n"
        "  - {name: llava-1.5, model: llava-hf/llava-1.5-7b-hf}\n"
        "embedders: [{name: minilm}]\n"
        "reconstruction: {redrawer: gligen, model: ../elsewhere/gligen}\n"
    )
    monkeypatch.chdir(tmp_path)
    suite = load_suite("suites/s.yaml")
    assert suite.dataset.arg == str(suites / "imgs")
    assert suite.captioners[0].file == str(suites / "caps.jsonl")
    assert suite.captioners[1].model == str(suites / "ckpt")
    assert suite.captioners[2].model == "llava-hf/llava-1.5-7b-hf"
    assert suite.embedders[0].name == "minilm"
    assert suite.reconstruction.model == str(suites / "../elsewhere/gligen")


def test_the_suite_reference_in_readme_is_current():
    """README's suite reference is the text generated from the suite models: a new key updates it."""
    from pancap_retrieval.suite import suite_reference

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- suite-reference: start -->\n", "<!-- suite-reference: end -->"
    assert start in readme and end in readme
    shown = readme.split(start, 1)[1].split(end, 1)[0]
    from pancap_retrieval.suite import Suite

    sections = [line for line in suite_reference().splitlines() if line.startswith("**")]
    assert len(sections) == 1 + len(Suite.model_json_schema()["$defs"]), "a nested suite model has no section"
    assert shown.strip() == suite_reference().strip(), (
        "README's suite reference is stale: paste the output of "
        "`python -c 'from pancap_retrieval.suite import suite_reference; print(suite_reference())'`"
    )


def test_a_captions_file_is_known_by_its_content_not_its_spelling(tmp_path, monkeypatch):
    """The same file named by another path is the same store (reused); another content under the same name is
    refused with a fix that applies to run and import alike."""
    import json as json_

    from pancap_retrieval.data import load_dataset
    from pancap_retrieval.errors import PancapError
    from pancap_retrieval.pipeline import import_captions

    dataset = load_dataset("sample")
    ids = dataset["example_id"][:3]
    (tmp_path / "caps.jsonl").write_text("".join(json_.dumps({"example_id": i, "caption": f"a photo {i}"}) + "\n" for i in ids))
    monkeypatch.chdir(tmp_path)
    first = import_captions("caps.jsonl", "mine", "sample", dataset, tmp_path / "run")
    (tmp_path / "sub").mkdir()
    again = import_captions(str(tmp_path / "sub" / ".." / "caps.jsonl"), "mine", "sample", dataset, tmp_path / "run")
    assert first["imported"] == 3 and again.get("reused") is True
    (tmp_path / "other.jsonl").write_text(json_.dumps({"example_id": ids[0], "caption": "something else"}) + "\n")
    with pytest.raises(PancapError, match="give these captions another name"):
        import_captions("other.jsonl", "mine", "sample", dataset, tmp_path / "run")
