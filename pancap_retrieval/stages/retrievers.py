"""The retriever stage: one results row per retriever of the suite, made through the one retrieval door.

A retriever's queries are the dataset's images and its gallery the dataset's descriptions (an image may have
several: the any-hit rule of the caption rows). Its row is keyed like a captioner's (the retriever, its fingerprint,
the images' content, the descriptions, the retrieval settings and the seed) in the run's ``retrieval/`` folder, with
its ranks and top-10 files beside it, so a rerun reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import key, read_json, write_json
from pancap_retrieval.directions import between
from pancap_retrieval.runs import ranks_file, row_file, top_file

# Bumped when the shape of a retriever row changes, so reruns recompute rather than reuse old rows.
RETRIEVER_ROW_VERSION = 1


def build_retriever(spec: Any) -> Any:
    """The retriever of a suite's ``retrievers:`` entry, built through its registry, options checked."""
    from pancap_retrieval.retrieval.image_text import RETRIEVERS
    from pancap_retrieval.retrieval.retriever import as_retriever

    return as_retriever(RETRIEVERS.build(spec.name, **spec.options))


class _Images(Sequence[Any]):
    """The dataset's images in order, each decoded only when read."""

    def __init__(self, dataset: Any, rows: list[int]) -> None:
        self.dataset, self.rows = dataset, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: Any) -> Any:
        from pancap_retrieval.data.records import open_image

        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return open_image(self.dataset[self.rows[i]])


@dataclass
class RetrieverRow:
    """One retriever's row, whether it was reused from the run folder, and what the retriever says of itself."""

    row: dict[str, Any]
    reused: bool
    manifest: dict[str, Any]


def retriever_row(spec: Any, dataset: Any, descriptions: dict[str, Any], suite: Any, stage_dir: Path) -> RetrieverRow:
    """The row of retriever ``spec`` over ``dataset`` (images) and ``descriptions`` (by image id)."""
    from pancap_retrieval.data.records import image_digests

    retriever = build_retriever(spec)
    ids = list(dataset["example_id"])
    row_key = key(
        RETRIEVER_ROW_VERSION,
        spec.model_dump(),
        retriever.fingerprint,
        list(zip(ids, image_digests(dataset["image"]))),
        sorted(descriptions.items()),
        suite.retrieval.model_dump(),
        suite.seed,
    )
    stage_file = row_file(stage_dir, spec.name)
    cached = read_json(stage_file)
    if isinstance(cached, dict) and cached.get("key") == row_key and _whole(stage_dir, spec.name):
        return RetrieverRow(cached["row"], True, retriever.manifest())
    row = _compute(retriever, spec.name, dataset, ids, descriptions, suite, stage_dir)
    write_json(stage_file, {"key": row_key, "row": row})
    return RetrieverRow(row, False, retriever.manifest())


def _compute(
    retriever: Any, name: str, dataset: Any, ids: list[str], descriptions: dict[str, Any], suite: Any, stage_dir: Path
) -> dict[str, Any]:
    from pancap_retrieval.retrieval.metrics import ScoreOptions, Sides, description_gallery, evaluate_sides

    skipped = {"empty_description": 0}
    gallery_ids, gallery_texts = description_gallery(descriptions, skipped)
    known = set(gallery_ids)
    rows = [i for i, image_id in enumerate(ids) if image_id in known]
    skipped["no_description"] = len(ids) - len(rows)
    sides = Sides(gallery_ids, gallery_texts, [ids[i] for i in rows], _Images(dataset, rows), skipped)
    options = ScoreOptions(
        n_bootstrap=suite.retrieval.bootstrap_samples, seed=suite.seed, backend=suite.retrieval.backend
    )
    result = evaluate_sides(retriever, sides, options)
    write_json(top_file(stage_dir, name), result["top"])
    write_json(ranks_file(stage_dir, name), result["ranks"])
    n = len(sides.query_ids)
    return {
        "system": name,
        "kind": "retriever",
        "n": n,
        "coverage": n / max(1, len(descriptions)),
        "skipped": skipped,
        **{d.name: result[d.label] for d in between(retriever.query_kind, retriever.gallery_kind)},
        "embedding": result["embedding"],
        **{k: result[k] for k in ("descriptions_per_image",) if k in result},
    }


def _whole(stage_dir: Path, name: str) -> bool:
    """Whether the ranks and top-10 files of a reused row read back."""
    for path in (ranks_file(stage_dir, name), top_file(stage_dir, name)):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
    return True
