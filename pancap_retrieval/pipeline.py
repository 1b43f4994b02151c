"""The suite runner: validate a suite, take the run folder's lock and call the stages in order.

A run folder holds ``captions/`` (one store per captioner, with the manifest that keys it), ``retrieval/`` (one
result per captioner, keyed by its inputs), ``results.json``, ``leaderboard.*``, ``recall_at_k.png``,
``manifest.json`` and ``run_summary.json``; with reconstruction also ``originals/``, ``images/`` and
``reconstruction.json``. The whole suite is validated before any work (:func:`validate_suite`); one process writes a
run folder at a time (:class:`~pancap_retrieval.artifacts.RunLock`); every artefact is reused only when the key of
its inputs matches, so a rerun of a finished suite does no model work. The stages live in
:mod:`pancap_retrieval.stages`: ``caption``, ``imports``, ``retrieve`` (with ``retrievers``), ``pancapscore``,
``redraw`` and ``gallery``; their public names are importable from here too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import RunLock, default_cache_dir, write_json
from pancap_retrieval.captions.store import CaptionRecord, CaptionStore
from pancap_retrieval.errors import CaptionFileError, PancapError
from pancap_retrieval.results import read_results
from pancap_retrieval.runs import RETRIEVAL_DIR, RunOptions, RunSummary, make_run_dir, summary_lines
from pancap_retrieval.stages.caption import (
    SPEED_OPTIONS,
    CaptionReport,
    caption_inputs,
    captioner_options,
    count_captions,
    existing_store,
    failed_counts,
    has_store,
    in_dataset_order,
    is_captioner,
    run_captioner,
    split_of,
)
from pancap_retrieval.stages.gallery import GalleryInputs, write_run_gallery
from pancap_retrieval.stages.imports import import_captions, read_import
from pancap_retrieval.stages.pancapscore import score_suite
from pancap_retrieval.stages.redraw import reconstruct_captions
from pancap_retrieval.stages.retrieve import RETRIEVAL_ROW_VERSION, RetrievalInputs, retrieve
from pancap_retrieval.suite import CaptionerSpec, Suite

log = logging.getLogger(__name__)


def load_data(spec: Any, split: str | None = None, limit: int | None = None):
    """The dataset of a spec string or :class:`~pancap_retrieval.suite.DatasetSpec` (see
    :func:`pancap_retrieval.data.load_dataset`)."""
    from pancap_retrieval.data import load_dataset

    return load_dataset(spec, split=split, limit=limit)


def _captions_of(
    spec: CaptionerSpec, dataset_name: str, dataset: Any, out: Path, options: RunOptions
) -> tuple[list[CaptionRecord], dict]:
    """The records of one captioner in dataset order (what a run measures never depends on the order of a store's
    lines: an image captioned again after a torn line is appended last), with the report of how they were had."""
    if spec.file:
        report = import_captions(spec.file, spec.name, dataset_name, dataset, out, options.overwrite, spec.dialect)
        return in_dataset_order(CaptionStore(report["store"]).records(), dataset), report
    if not is_captioner(spec.name):  # a store made earlier in this folder (imported or captioned)
        store = existing_store(out, spec.name, dataset_name, split_of(dataset, None))
        records = in_dataset_order(store.records(), dataset)
        return records, {"store": str(store.path), "imported": len(records), "reused": True, "empty": 0}
    stats, path = run_captioner(spec, dataset_name, dataset, out, options.retry_failed, options.overwrite)
    return in_dataset_order(CaptionStore(path).records(), dataset), stats

# ---------------------------------------------------------------- the suite


def validate_suite(suite: Suite, out: Path | None = None, dataset: Any = None) -> None:
    """Check every name, option and path of ``suite`` before any work; each problem is one PancapError line.

    A captioner name that is not registered is accepted when ``out`` already holds its store. With the loaded
    ``dataset`` every captions file is read and checked too.
    """
    from pancap_retrieval.errors import RegistryError
    from pancap_retrieval.retrieval.embedder import resolve_local
    from pancap_retrieval.retrieval.index import SEARCH_BACKENDS

    seen: set[str] = set()
    for spec in suite.captioners:
        if spec.name in seen:
            raise PancapError(f"captioner {spec.name!r} appears twice in suite {suite.name}: give each a name")
        seen.add(spec.name)
        if spec.file:
            if not Path(spec.file).exists():
                raise CaptionFileError(f"captions file not found: {spec.file} (captioner {spec.name!r})")
            if dataset is not None:
                read_import(spec.file, suite.dataset.name, dataset)
        elif is_captioner(spec.name) or not has_store(out, spec.name):
            captioner_options(spec.name, spec.captioner_options())
    for spec in suite.retrievers:
        if spec.name in seen:
            raise PancapError(f"row {spec.name!r} appears twice in suite {suite.name}: give each a name")
        seen.add(spec.name)
        from pancap_retrieval.stages.retrievers import retriever_options

        retriever_options(spec.entry, spec.retriever_options())  # names and types checked before any work
    for embedder in suite.embedders:
        resolve_local(embedder.name)
    if suite.retrieval.backend not in SEARCH_BACKENDS:
        raise RegistryError(
            f"unknown search backend {suite.retrieval.backend!r}; known: {', '.join(SEARCH_BACKENDS.names())}"
        )
    if suite.reconstruction is not None:
        from reconstruct.run import check_redrawer

        check_redrawer(suite.reconstruction)


def run_suite(suite: Suite, out: str | Path, options: RunOptions | None = None) -> list[Path]:
    """Run every stage of ``suite`` under ``out``; returns the run folders written (one per embedder).

    Validation and the dataset come first: a suite that cannot run leaves no run folder behind.
    """
    out = Path(out)
    options = options or RunOptions()
    dataset = load_data(suite.dataset)  # first: a missing dataset is the first thing to fix
    if len(dataset) == 0:
        raise PancapError(f"dataset {suite.dataset.name} has no example to evaluate")
    from pancap_retrieval.data import require_descriptions

    require_descriptions(dataset, suite.dataset)
    validate_suite(suite, out, dataset)
    created = make_run_dir(out)
    try:
        with RunLock(out):
            return _run_locked(suite, out, dataset, options)
    except BaseException:
        if created and not any(p.name != ".pancap.lock" for p in out.iterdir()):
            (out / ".pancap.lock").unlink(missing_ok=True)
            out.rmdir()
        raise


def _run_locked(suite: Suite, out: Path, dataset: Any, options: RunOptions) -> list[Path]:
    summary = RunSummary()
    write_json(out / "suite.json", suite.model_dump())
    from pancap_retrieval.data.records import descriptions_by_id

    descriptions = descriptions_by_id(dataset)
    captions = _caption_all(suite, out, dataset, options, summary)
    reconstruction = None
    if suite.reconstruction is not None:
        reconstruction = reconstruct_captions(
            out, captions.records, dataset, suite.dataset.name, suite.reconstruction, suite.seed, summary
        )
    from pancap_retrieval.ranks import Ranks

    if not Ranks.current().main:  # under a launcher: retrieval, tables and gallery run once, on rank 0
        return []
    from pancap_retrieval.data import dataset_info as describe

    dataset_info = describe(suite.dataset, dataset)
    if dataset.info.license:  # the source's licence, for whoever shares the results (pancap export)
        dataset_info["license"] = dataset.info.license
    inputs = RetrievalInputs(
        captions.records, captions.reports, descriptions, dataset, dataset_info, reconstruction=reconstruction
    )
    if suite.pancapscore is not None:
        with summary.stage("pancapscore") as entry:
            inputs.pancapscore = score_suite(suite, out, dataset).scores
            entry["done"] = len(inputs.pancapscore)
    run_dirs: list[Path] = []
    for embedder_spec in suite.embedders:  # a retriever's row is made with the first embedder, copied to the others
        siblings = [run_dir / RETRIEVAL_DIR for run_dir in run_dirs]
        run_dirs.append(retrieve(suite, embedder_spec, out, inputs, summary, siblings).run_dir)
    _publish(out, run_dirs, reconstruction is not None, summary)
    summary_file = {"stages": summary.stages, "failed_captions": failed_counts(captions.reports)}
    write_json(out / "run_summary.json", summary_file)
    return run_dirs


def _caption_all(suite: Suite, out: Path, dataset: Any, options: RunOptions, summary: RunSummary) -> CaptionReport:
    """The caption (or import) stage of every captioner of the suite, each a stage of the summary."""
    captions = CaptionReport()
    for spec in suite.captioners:
        with summary.stage(f"caption {spec.name}") as entry:
            captions.records[spec.name], captions.reports[spec.name] = _captions_of(
                spec, suite.dataset.name, dataset, out, options
            )
            count_captions(entry, captions.reports[spec.name])
    return captions


def _publish(out: Path, run_dirs: list[Path], gallery: bool, summary: RunSummary) -> None:
    """The leaderboard of every run folder (and of all of them together), then the gallery when there was a
    reconstruction."""
    with summary.stage("leaderboard"):
        from pancap_retrieval.leaderboard import write_leaderboard

        for run_dir in run_dirs:
            write_leaderboard([run_dir], run_dir)
        if len(run_dirs) > 1:
            write_leaderboard(run_dirs, out)
    if gallery:
        with summary.stage("gallery") as entry:
            entry["repaired"] = write_run_gallery(GalleryInputs(out)).repaired


def run_reconstruction(
    dataset: Any,
    dataset_name: str,
    captioners: list[CaptionerSpec],
    out: str | Path,
    reconstruction: Any,
    seed: int = 0,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Redraw and score the given captions (files, or stores already in ``out``) without retrieval."""
    from reconstruct.run import check_redrawer

    out = Path(out)
    options = options or RunOptions()
    check_redrawer(reconstruction)
    split = split_of(dataset, None)
    for spec in captioners:  # every input is checked before the run folder is made
        if spec.file:
            read_import(spec.file, dataset_name, dataset)
        else:
            existing_store(out, spec.name, dataset_name, split)
    captions = {}
    make_run_dir(out)
    with RunLock(out):
        for spec in captioners:
            if spec.file:
                captions[spec.name] = _captions_of(spec, dataset_name, dataset, out, options)[0]
            else:
                records = existing_store(out, spec.name, dataset_name, split).records()
                captions[spec.name] = in_dataset_order(records, dataset)
        result = reconstruct_captions(out, captions, dataset, dataset_name, reconstruction, seed, RunSummary())
        write_run_gallery(GalleryInputs(out))
    return result


__all__ = [
    "RETRIEVAL_ROW_VERSION",
    "SPEED_OPTIONS",
    "RunOptions",
    "RunSummary",
    "caption_inputs",
    "captioner_options",
    "default_cache_dir",
    "existing_store",
    "import_captions",
    "in_dataset_order",
    "load_data",
    "make_run_dir",
    "read_import",
    "read_results",
    "run_captioner",
    "run_reconstruction",
    "run_suite",
    "summary_lines",
    "validate_suite",
]
