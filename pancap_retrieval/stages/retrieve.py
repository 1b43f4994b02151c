"""The retrieve stage: the row of every captioner (its captions against the dataset's descriptions) through the one
retrieval door (:class:`~pancap_retrieval.retrieval.retriever.TextRetriever`), the rows of the suite's retrievers
(:mod:`pancap_retrieval.stages.retrievers`), and the run's ``results.json`` and ``manifest.json``.

A row is keyed by its inputs (captions, descriptions, embedder, retriever fingerprint, retrieval settings, seed) in
the run's ``retrieval/`` folder, with its ranks and top-10 files beside it, so a rerun reuses it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import default_cache_dir, key, read_json, write_json
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.directions import CAPTION_TO_DESCRIPTION, DESCRIPTION_TO_CAPTION
from pancap_retrieval.results import base_manifest
from pancap_retrieval.runs import RunSummary, ranks_file, row_file, top_file
from pancap_retrieval.suite import EmbedderSpec, Suite

log = logging.getLogger(__name__)
# Bumped when the shape of a retrieval row changes, so reruns recompute rather than reuse old rows.
RETRIEVAL_ROW_VERSION = 5


@dataclass
class RetrievalInputs:
    """What the retrieve stage reads: the captions and their reports (by captioner), the descriptions by image id,
    the dataset and its description, and what earlier stages measured (PancapScore, reconstruction) for the
    results file."""

    captions: dict[str, list[CaptionRecord]]
    reports: dict[str, dict[str, Any]]
    descriptions: dict[str, Any]
    dataset: Any
    dataset_info: dict[str, Any]
    pancapscore: dict[str, Any] | None = None
    reconstruction: dict[str, Any] | None = None


@dataclass
class CaptionerRows:
    """The rows of the captioners with one embedder, the names of the reused ones, and the embedding figures of
    the runs that made them (reused ones included)."""

    rows: list[dict[str, Any]]
    reused: list[str]
    stats: Any


@dataclass
class RetrievalReport:
    """One embedder's run folder (``results.json``, ``manifest.json``, ``retrieval/``) and the rows it reused."""

    run_dir: Path
    rows_reused: list[str]


def retrieve(
    suite: Suite,
    embedder_spec: EmbedderSpec,
    out: Path,
    inputs: RetrievalInputs,
    summary: RunSummary,
    siblings: Sequence[Path] = (),
) -> RetrievalReport:
    """Retrieval rows of every captioner and retriever with one embedder, written with the run's results and
    manifest. ``siblings`` are the ``retrieval/`` folders of the embedders done before: a retriever's row, which
    needs no text embedder, is copied from there rather than made again."""
    from pancap_retrieval.retrieval.retriever import TextRetriever

    run_dir = out if len(suite.embedders) == 1 else out / embedder_spec.name.replace("/", "--")
    retriever = TextRetriever.build(
        embedder_spec.name,
        long_text=embedder_spec.long_text,
        batch_size=embedder_spec.batch_size,
        cache_dir=default_cache_dir(),
        show_progress=True,
    )
    made = captioner_rows(suite, embedder_spec, retriever, inputs, run_dir / "retrieval", summary)
    retrievers = _retriever_rows(suite, inputs, run_dir / "retrieval", summary, siblings)
    made.rows += [one.row for one in retrievers.values()]
    made.reused += [name for name, one in retrievers.items() if one.reused]
    _write_run(suite, embedder_spec, retriever.embedder, inputs, made, retrievers, run_dir)
    return RetrievalReport(run_dir=run_dir, rows_reused=made.reused)


def _write_run(
    suite: Suite,
    embedder_spec: EmbedderSpec,
    embedder: Any,
    inputs: RetrievalInputs,
    made: CaptionerRows,
    retrievers: dict[str, Any],
    run_dir: Path,
) -> None:
    """``results.json`` (only what the inputs decide) and ``manifest.json`` (how the run went) of one embedder."""
    from pancap_retrieval.retrieval.metrics import MULTI_DESCRIPTION_RULE

    extra = {"retrievers": {name: one.manifest for name, one in retrievers.items()}} if retrievers else {}
    manifest = base_manifest(
        suite=suite.model_dump(),
        dataset=inputs.dataset_info,
        retrieval_rule=MULTI_DESCRIPTION_RULE,
        embedder=embedder.manifest(made.stats),
        captioners=inputs.reports,
        seed=suite.seed,
        cache={"embedding": embedder.stats.cache_counts(), "rows_reused": made.reused},
        **extra,
    )
    spec = {"name": embedder_spec.name, "long_text": embedder_spec.long_text}
    results = {  # only what the inputs decide: a rerun writes the same file, whatever the caches hold
        "dataset": inputs.dataset_info,
        "embedder": {**spec, **embedder.manifest(made.stats)},
        "retrieval": suite.retrieval.model_dump(),
        "rows": made.rows,
    }
    if reported := suite.reported_rows():  # published figures, from the suite (none: no key)
        results["reported"] = reported
    if inputs.reconstruction is not None:
        results["reconstruction"] = inputs.reconstruction
    if inputs.pancapscore:
        results["pancapscore"] = inputs.pancapscore
    write_json(run_dir / "results.json", results)
    write_json(run_dir / "manifest.json", manifest)


def captioner_rows(
    suite: Suite,
    embedder_spec: EmbedderSpec,
    retriever: Any,
    inputs: RetrievalInputs,
    stage_dir: Path,
    summary: RunSummary,
) -> CaptionerRows:
    """The row of every captioner through the text retriever, the names of the reused ones, and the embedding
    figures of the runs that made them (reused ones included)."""
    from pancap_retrieval.retrieval.embedder import EmbedStats

    embedder, descriptions = retriever.embedder, inputs.descriptions
    rows, rows_reused = [], []
    stats = EmbedStats(long_text=embedder.long_text)
    for name, records in inputs.captions.items():
        with summary.stage(f"retrieve {name} ({embedder_spec.name})") as entry:
            before = embedder.stats.counts()
            row, reused = retrieval_row(name, records, descriptions, retriever, embedder_spec, suite, stage_dir)
            made = embedder.stats.since(before) if reused is None else EmbedStats.from_counts(reused, stats.long_text)
            stats.add(made)
            entry.update(done=0 if reused is not None else row["n"], reused=row["n"] if reused is not None else 0)
            entry["repaired"] = int(bool(row.pop("repaired", False)))
            entry["note"] = _coverage_note(row, len(descriptions))
            rows.append(row)
            rows_reused += [name] * (reused is not None)
    return CaptionerRows(rows=rows, reused=rows_reused, stats=stats)


def _retriever_rows(
    suite: Suite, inputs: RetrievalInputs, stage_dir: Path, summary: RunSummary, siblings: Sequence[Path]
) -> dict[str, Any]:
    """The row of every retriever of the suite (images against descriptions), by name."""
    from pancap_retrieval.stages.retrievers import retriever_row

    made = {}
    for spec in suite.retrievers:
        with summary.stage(f"retrieve {spec.name}") as entry:
            made[spec.name] = retriever_row(spec, inputs.dataset, inputs.descriptions, suite, stage_dir, siblings)
            n = made[spec.name].row["n"]
            entry.update(done=0 if made[spec.name].reused else n, reused=n if made[spec.name].reused else 0)
    return made


def _coverage_note(row: dict[str, Any], images: int) -> str | None:
    """What the summary says of a row that scored under 95% of the images: how many were left out, and why."""
    from pancap_retrieval.leaderboard import COVERAGE_FLOOR

    if row.get("coverage", 1.0) >= COVERAGE_FLOOR:
        return None
    why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (row.get("skipped") or {}).items() if v)
    return f"scored {row['n']} of {images} images; left out: {why or 'no reason recorded'}"


def retrieval_row(
    name: str,
    records: list[CaptionRecord],
    descriptions: dict[str, str | list[str]],
    retriever: Any,
    embedder_spec: EmbedderSpec,
    suite: Suite,
    stage_dir: Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The retrieval row of one captioner, and None when it was computed now, or the embedding counts of the run
    that computed it when it was reused from ``stage_dir``."""
    captions = {r.example_id: r.caption for r in records if r.status == "ok" and r.example_id in descriptions}
    skipped = {
        "failed": sum(r.status != "ok" for r in records),
        "not_in_dataset": sum(r.example_id not in descriptions for r in records),
        "no_caption": len(set(descriptions) - {r.example_id for r in records}),
    }
    row_key = key(
        RETRIEVAL_ROW_VERSION,
        sorted(captions.items()),
        sorted(descriptions.items()),
        embedder_spec.model_dump(),
        retriever.fingerprint,
        suite.retrieval.model_dump(),
        suite.seed,
    )
    stage_file = row_file(stage_dir, name)
    cached = read_json(stage_file)
    same = isinstance(cached, dict) and cached.get("key") == row_key
    if same and _whole_json(stage_dir, name):
        return cached["row"], cached.get("embed_counts") or {}
    repaired = same  # its ranks or top-10 file was cut: computed again
    embedder = retriever.embedder
    before = embedder.stats.counts()
    row = _computed_row(name, captions, descriptions, retriever, suite, stage_dir, skipped)
    counts = embedder.stats.since(before).counts()
    write_json(stage_file, {"key": row_key, "row": row, "embed_counts": counts})
    return {**row, "repaired": True} if repaired else row, None


def _computed_row(
    name: str,
    captions: dict[str, str],
    descriptions: dict[str, str | list[str]],
    retriever: Any,
    suite: Suite,
    stage_dir: Path,
    skipped: dict[str, int],
) -> dict[str, Any]:
    """The row of one captioner computed now, its ranks and top-10 files written beside it in ``stage_dir``."""
    from pancap_retrieval.retrieval.metrics import evaluate_retrieval

    result = evaluate_retrieval(
        captions,
        descriptions,
        embedder=retriever,
        caption_mode=suite.retrieval.text_prep,
        n_bootstrap=suite.retrieval.bootstrap_samples,
        seed=suite.seed,
        cache_dir=default_cache_dir(),
        backend=suite.retrieval.backend,
    )
    write_json(top_file(stage_dir, name), result["top"])
    write_json(ranks_file(stage_dir, name), result["ranks"])
    return {
        "system": name,
        "kind": "captioner",
        "n": result["n"],
        "coverage": result["n"] / max(1, len(descriptions)),
        "skipped": {**skipped, **result["skipped"]},
        **{d.name: result[d.label] for d in (CAPTION_TO_DESCRIPTION, DESCRIPTION_TO_CAPTION)},
        "text_prep": result["text_prep"],
        "embedding": result["embedding"],
        **{k: result[k] for k in ("descriptions_per_image", "rule") if k in result},
    }


def _whole_json(stage_dir: Path, name: str) -> bool:
    """Whether the ranks and top-10 files of a reused row (which the gallery shows) read back; a broken one is
    named in a warning and the row is computed again."""
    for path in (ranks_file(stage_dir, name), top_file(stage_dir, name)):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log.warning("%s: missing or cut; the retrieval of %s is computed again", path, name)
            return False
    return True
