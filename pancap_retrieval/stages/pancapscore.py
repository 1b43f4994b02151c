"""The PancapScore stage: every captioner of the suite scored against its reference, from the stores in the run
folder (:mod:`pancap_retrieval.pancapscore.run_scores`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pancap_retrieval.captions.store import store_path
from pancap_retrieval.stages.caption import split_of
from pancap_retrieval.suite import Suite


@dataclass
class PancapScoreReport:
    """The PancapScore of every captioner, by name, as the results file records it."""

    scores: dict[str, Any]


def score_suite(suite: Suite, out: Path, dataset: Any) -> PancapScoreReport:
    """PancapScore of every captioner of the suite against its reference (pancap_retrieval.pancapscore.run_scores)."""
    from pancap_retrieval.data import description_dialect
    from pancap_retrieval.pancapscore.run_scores import score_captioners

    split = split_of(dataset, None)
    stores = {spec.name: store_path(out, spec.name, suite.dataset.name, split) for spec in suite.captioners}
    return PancapScoreReport(score_captioners(out, stores, suite.pancapscore, dataset, description_dialect(suite.dataset)))
