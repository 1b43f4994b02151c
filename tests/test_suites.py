"""Every shipped suite loads, and names only registered datasets, captioners, embedders and redrawers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pancap_retrieval.captioners import CAPTIONERS
from pancap_retrieval.data import DATASETS
from pancap_retrieval.retrieval.embedder import get_spec
from pancap_retrieval.retrieval.index import SEARCH_BACKENDS
from pancap_retrieval.suite import SuiteError, load_suite
from reconstruct.redrawers import REDRAWERS

SUITES = sorted((Path(__file__).resolve().parents[1] / "eval_suites").glob("*.yaml"))


def test_the_three_suites_are_shipped():
    assert [p.stem for p in SUITES] == ["docci_reconstruction", "docci_retrieval", "sample"]


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_names_only_registered_things(path):
    suite = load_suite(path)
    assert suite.dataset.name.partition(":")[0] in DATASETS
    for captioner in suite.captioners:
        assert captioner.file or captioner.name in CAPTIONERS, captioner.name
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
