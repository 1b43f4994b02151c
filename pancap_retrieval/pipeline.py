"""Runs: caption a dataset, import captions, retrieve, redraw; each stage a keyed artefact in the run folder.

A run folder holds ``captions/`` (one store per captioner, with the manifest that keys it), ``retrieval/`` (one
result per captioner, keyed by its inputs), ``results.json``, ``leaderboard.*``, ``recall_at_k.png``,
``manifest.json`` and ``run_summary.json``; with reconstruction also ``originals/``, ``images/`` and
``reconstruction.json``. The whole suite is validated before any work (:func:`validate_suite`); one process writes a
run folder at a time (:class:`~pancap_retrieval.artifacts.RunLock`); every artefact is reused only when the key of
its inputs matches, so a rerun of a finished suite does no model work.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import (
    RunLock,
    atomic_write,
    default_cache_dir,
    file_digests,
    file_name,
    key,
    path_fingerprint,
    read_json,
    to_jsonable,
    write_json,
)
from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import (
    CaptionRecord,
    CaptionStore,
    StoreMismatchError,
    check_store_key,
    manifest_path,
    store_dialect,
    store_path,
)
from pancap_retrieval.directions import CAPTION_TO_DESCRIPTION, DESCRIPTION_TO_CAPTION
from pancap_retrieval.errors import CaptionFileError, PancapError
from pancap_retrieval.results import base_manifest, read_results
from pancap_retrieval.runs import (
    RunOptions,
    RunSummary,
    make_run_dir,
    ranks_file,
    row_file,
    summary_lines,
    top_file,
)
from pancap_retrieval.suite import CaptionerSpec, EmbedderSpec, Suite

log = logging.getLogger(__name__)
# Bumped when the shape of a retrieval row changes, so reruns recompute rather than reuse old rows.
RETRIEVAL_ROW_VERSION = 5
# Options that change how fast captions are made, not what they say: left out of a store's key.
SPEED_OPTIONS = frozenset({"batch_size", "device", "providers"})


# ---------------------------------------------------------------- dataset


def _split_of(dataset: Any, asked: str | None) -> str:
    return dataset.select_columns(["split"])[0]["split"] if len(dataset) else (asked or "-")


def load_data(spec: Any, split: str | None = None, limit: int | None = None):
    """The dataset of a spec string or :class:`~pancap_retrieval.suite.DatasetSpec` (see
    :func:`pancap_retrieval.data.load_dataset`)."""
    from pancap_retrieval.data import load_dataset

    return load_dataset(spec, split=split, limit=limit)


# ---------------------------------------------------------------- captioning


def captioner_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against captioner ``name`` (names and types) and completed with its defaults: what
    decides its captions. An unknown option or a bad value is a one-line error."""
    import inspect

    from pancap_retrieval.captioners import CAPTIONERS
    from pancap_retrieval.registry import check_options

    factory = CAPTIONERS.get(name)
    checked = check_options(factory, options, f"captioner {name!r}")
    resolved = {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    return {**resolved, **checked}


def caption_inputs(spec: CaptionerSpec, dataset_name: str, split: str) -> dict[str, Any]:
    """What makes the captions of ``spec`` on (dataset, split), with its key: a store is reused only for these."""
    base = {"captioner": spec.name, "dataset": dataset_name, "split": split}
    if spec.file:
        files = sorted(Path(spec.file).glob("*.json*")) if Path(spec.file).is_dir() else [Path(spec.file)]
        inputs = {**base, "source": "file", "file": str(spec.file), "options": {}}
        if spec.dialect is not None:  # the dialect the file's captions are declared in (store_dialect reads it)
            inputs["box_dialect"] = spec.dialect
        files = [p for p in files if p.is_file()]
        inputs["model_fingerprint"] = key(*[(p.name, d) for p, d in zip(files, file_digests(files))])
    else:
        options = captioner_options(spec.name, spec.captioner_options())
        kept = {k: v for k, v in options.items() if k not in SPEED_OPTIONS}
        inputs = {**base, "source": "captioner", "options": kept}
        inputs["model_fingerprint"] = key(*[path_fingerprint(v) for _, v in sorted(kept.items())])
    # A file is known by its content (model_fingerprint), not by how its path is spelled: it is recorded only.
    inputs["key"] = key({k: v for k, v in inputs.items() if k != "file"})
    return inputs


def run_captioner(
    spec: CaptionerSpec,
    dataset_name: str,
    dataset: Any,
    out: str | Path,
    retry_failed: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Caption ``dataset`` with the registered captioner of ``spec`` into ``out/captions/`` (resumable).

    The store is keyed by :func:`caption_inputs`; a store made with other inputs stops the run unless
    ``overwrite``. The captioner is built only when some image is still to caption. Under ``accelerate launch`` or
    ``torchrun`` (WORLD_SIZE > 1) each rank captions its shard into its own store file and rank 0 merges them.
    """
    from pancap_retrieval.captioners import CAPTIONERS
    from pancap_retrieval.captioners.base import caption_dataset, input_keys

    split = _split_of(dataset, None)
    inputs = caption_inputs(spec, dataset_name, split)
    path = store_path(out, spec.name, dataset_name, split)
    check_store_key(path, inputs, overwrite)
    store = CaptionStore(path)
    rows = input_keys(dataset, CAPTIONERS.get(spec.name))
    done = store.done_ids(include_failed=not retry_failed, inputs=rows)
    pending = [i for i in dataset["example_id"] if i not in done]
    options = spec.captioner_options()
    if not pending:
        stats = {"total": len(dataset), "skipped_done": len(dataset), "ok": 0, "failed": 0, "failures": {}}
        return _with_store_counts({**stats, "changed": 0, "cut": 0}, store), path
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from pancap_retrieval.captioners.distributed import run_captioning

        result, manifest = run_captioning(spec.name, dataset, path, spec.batch_size, retry_failed, **options)
    else:
        from pancap_retrieval.captioners import get_captioner

        captioner = get_captioner(spec.name, **options)
        result = caption_dataset(
            captioner, dataset, store, batch_size=spec.batch_size, retry_failed=retry_failed, progress=progress
        )
        manifest = captioner.manifest()
    write_json(manifest_path(path), {**base_manifest(captioner_manifest=manifest), **inputs})
    return _with_store_counts(result.to_dict(), store), path


def _with_store_counts(stats: dict[str, Any], store: CaptionStore) -> dict[str, Any]:
    records = store.records()
    stats["failed_in_store"] = sum(r.status != "ok" for r in records)
    stats["duplicate_ids"] = store.duplicate_ids
    stats["repaired"] = store.torn_lines  # torn lines dropped (and cut away) before captioning: their images redone
    return stats


def read_import(file: str | Path, dataset_name: str, dataset: Any) -> tuple[dict[str, Any], list[CaptionRecord]]:
    """The records of a captions file to import, checked and screened against ``dataset``; nothing is written.

    Ids that are not in the dataset, repeated ids (the first is kept) and empty captions are counted, never
    dropped silently: empty ones become failed records. A caption over the text limit is cut to it and counted.
    A file that cannot be read, a field of the wrong type, or a file without one caption of the dataset is one
    :class:`CaptionFileError` line.
    """
    from pancap_retrieval.data import cut_texts

    records = read_captions(file)
    report, kept = _screen_imported(records, set(dataset["example_id"]), str(file))
    if not kept:
        raise CaptionFileError(
            f"{file}: none of its {len(records)} captions belongs to {dataset_name} "
            f"({report['not_in_dataset']} ids not in the dataset)"
        )
    texts = {r.example_id: r.caption for r in kept if isinstance(r.caption, str)}
    cut = {i: t for i, t in cut_texts(texts, f"{file} captions").items() if t != texts[i]}
    for record in kept:
        record.caption = cut.get(record.example_id, record.caption)
        record.meta = {**record.meta, "imported_from": str(file)}
    report["cut"] = len(cut)
    return report, kept


def import_captions(
    file: str | Path,
    captioner: str,
    dataset_name: str,
    dataset: Any,
    out: str | Path,
    overwrite: bool = False,
    dialect: str | None = None,
    screened: tuple[dict[str, Any], list[CaptionRecord]] | None = None,
) -> dict[str, Any]:
    """Copy a precomputed captions file into the run's store (see :func:`read_import`, whose result may be passed
    as ``screened``).

    A store made from the same file is reused while it is whole (its size is the one recorded); a broken one is
    imported again, with a warning. A store made from anything else is replaced only with ``overwrite``. Store and
    manifest are replaced together.
    """
    spec = CaptionerSpec(name=captioner, file=str(file), dialect=dialect)
    split = _split_of(dataset, None)
    inputs = caption_inputs(spec, dataset_name, split)
    path = store_path(out, captioner, dataset_name, split)
    recorded = read_json(manifest_path(path)) or {}
    same = path.is_file() and recorded.get("key") == inputs["key"] and recorded.get("report")
    if same and path.stat().st_size == recorded.get("store_bytes", path.stat().st_size):
        return {**recorded["report"], "reused": True}
    if same:
        log.warning("%s: not the store imported from %s (cut or changed); imported again", path, file)
    elif path.is_file() and path.stat().st_size > 0 and not overwrite:
        raise StoreMismatchError(
            f"{path} already holds captions of {captioner!r} ({len(CaptionStore(path))} records, "
            f"from {recorded.get('file') or _made_by(recorded) or 'an unknown source'}); "
            "pass --overwrite to replace them, or give these captions another name (--captioner on the command "
            "line, name: in a suite)"
        )
    report, kept = screened or read_import(file, dataset_name, dataset)
    report = {**report, "store": str(path)}
    blob = "".join(json.dumps(to_jsonable(asdict(record)), ensure_ascii=False) + "\n" for record in kept)
    manifest_path(path).unlink(missing_ok=True)  # no manifest that names the old store in between
    atomic_write(path, blob)
    write_json(manifest_path(path), {**inputs, "report": report, "store_bytes": path.stat().st_size, **base_manifest()})
    return {**report, "repaired": 1} if same else report


def _made_by(manifest: dict[str, Any]) -> str | None:
    made = manifest.get("captioner")  # a dict in the manifests of older runs: the captioner's own manifest
    return made.get("name") if isinstance(made, dict) else made


def _screen_imported(
    records: list[CaptionRecord], known: set[str], file: str
) -> tuple[dict[str, Any], list[CaptionRecord]]:
    report = {"file": file, "read": len(records), "imported": 0, "empty": 0}
    report.update({"not_in_dataset": 0, "duplicates": 0})
    seen: set[str] = set()
    kept: list[CaptionRecord] = []
    for record in records:
        if record.example_id not in known:
            report["not_in_dataset"] += 1
        elif record.example_id in seen:
            report["duplicates"] += 1
        else:
            seen.add(record.example_id)
            if record.status == "ok" and not (record.caption or "").strip():
                record = CaptionRecord.failed(record.example_id, "empty caption in the imported file")
                report["empty"] += 1
            kept.append(record)
    report["imported"] = len(kept) - report["empty"]
    return report, kept


def _captions_of(
    spec: CaptionerSpec, dataset_name: str, dataset: Any, out: Path, options: RunOptions
) -> tuple[list[CaptionRecord], dict]:
    """The records of one captioner in dataset order (what a run measures never depends on the order of a store's
    lines: an image captioned again after a torn line is appended last), with the report of how they were had."""
    if spec.file:
        report = import_captions(spec.file, spec.name, dataset_name, dataset, out, options.overwrite, spec.dialect)
        return in_dataset_order(CaptionStore(report["store"]).records(), dataset), report
    if not _is_captioner(spec.name):  # a store made earlier in this folder (imported or captioned)
        store = existing_store(out, spec.name, dataset_name, _split_of(dataset, None))
        records = in_dataset_order(store.records(), dataset)
        return records, {"store": str(store.path), "imported": len(records), "reused": True, "empty": 0}
    stats, path = run_captioner(spec, dataset_name, dataset, out, options.retry_failed, options.overwrite)
    return in_dataset_order(CaptionStore(path).records(), dataset), stats


def in_dataset_order(records: list[CaptionRecord], dataset: Any) -> list[CaptionRecord]:
    """``records`` in the order of the dataset's rows; records of ids the dataset lacks last, as they came."""
    position = {str(example_id): n for n, example_id in enumerate(dataset["example_id"])}
    return sorted(records, key=lambda record: position.get(record.example_id, len(position)))


def _is_captioner(name: str) -> bool:
    from pancap_retrieval.captioners import CAPTIONERS

    return name in CAPTIONERS


def _has_store(out: Path | None, name: str) -> bool:
    return out is not None and any((Path(out) / "captions").glob(f"{file_name(name)}__*.jsonl"))


def existing_store(out: Path, name: str, dataset_name: str, split: str) -> CaptionStore:
    """The store of captioner ``name`` already in ``out`` (made by ``pancap caption`` or imported)."""
    path = store_path(out, name, dataset_name, split)
    if not path.is_file():
        raise PancapError(
            f"no captions of {name!r} for {dataset_name} ({split}) in {out}: run `pancap caption` or "
            "`pancap captions import` first, or pass a captions file"
        )
    return CaptionStore(path)


# ---------------------------------------------------------------- retrieval


def _retrieval_row(
    name: str,
    records: list[CaptionRecord],
    descriptions: dict[str, str | list[str]],
    retriever: Any,
    embedder_spec: EmbedderSpec,
    suite: Suite,
    stage_dir: Path,
) -> tuple[dict[str, Any], bool]:
    """The retrieval row of one captioner, and None when it was computed now, or the embedding counts of the run
    that computed it when it was reused from ``stage_dir``."""
    from pancap_retrieval.retrieval.metrics import evaluate_retrieval

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
    row = {
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
    counts = embedder.stats.since(before).counts()
    write_json(stage_file, {"key": row_key, "row": row, "embed_counts": counts})
    return {**row, "repaired": True} if repaired else row, None


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
        elif _is_captioner(spec.name) or not _has_store(out, spec.name):
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

    captions: dict[str, list[CaptionRecord]] = {}
    caption_reports: dict[str, Any] = {}
    for spec in suite.captioners:
        with summary.stage(f"caption {spec.name}") as entry:
            captions[spec.name], caption_reports[spec.name] = _captions_of(
                spec, suite.dataset.name, dataset, out, options
            )
            _count_captions(entry, caption_reports[spec.name])

    reconstruction = None
    if suite.reconstruction is not None:
        reconstruction = _reconstruct(suite, dataset, captions, out, summary)
    from pancap_retrieval.ranks import Ranks

    if not Ranks.current().main:  # under a launcher: retrieval, tables and gallery run once, on rank 0
        return []

    from pancap_retrieval.data import dataset_info as describe

    dataset_info = describe(suite.dataset, dataset)
    if dataset.info.license:  # the source's licence, for whoever shares the results (pancap export)
        dataset_info["license"] = dataset.info.license
    inputs = {"captions": captions, "reports": caption_reports, "descriptions": descriptions, "dataset": dataset}
    if suite.pancapscore is not None:
        with summary.stage("pancapscore") as entry:
            inputs["pancapscore"] = _pancapscore(suite, out, dataset)
            entry["done"] = len(inputs["pancapscore"])
    run_dirs = [
        _retrieve(suite, embedder_spec, out, inputs, dataset_info, reconstruction, summary)
        for embedder_spec in suite.embedders
    ]
    with summary.stage("leaderboard"):
        from pancap_retrieval.leaderboard import write_leaderboard

        for run_dir in run_dirs:
            write_leaderboard([run_dir], run_dir)
        if len(run_dirs) > 1:
            write_leaderboard(run_dirs, out)
    if reconstruction is not None:
        with summary.stage("gallery") as entry:
            from reconstruct.gallery import write_gallery

            write_gallery(out, report=entry)
    write_json(out / "run_summary.json", {"stages": summary.stages, "failed_captions": _failed(caption_reports)})
    return run_dirs


def _count_captions(entry: dict[str, Any], report: dict[str, Any]) -> None:
    notes = []
    if report.get("cut"):
        notes.append(f"{report['cut']} captions over the text limit cut")
    if "skipped_done" in report:  # captioned here
        entry.update(done=report["ok"], reused=report["skipped_done"], failed=report["failed_in_store"])
        entry["repaired"] = report.get("repaired")
        changed = report.get("changed", 0)
        if changed:
            images = "1 image" if changed == 1 else f"{changed} images"
            notes.insert(0, f"{images} changed since the last run: recaptioned {changed}")
        if report["failed_in_store"]:
            notes.append("rerun with --retry-failed to caption the failed images again")
    else:
        imported = report["imported"]  # imported from a file
        reused = bool(report.get("reused"))
        entry.update(done=0 if reused else imported, reused=imported if reused else 0, failed=report["empty"])
        entry["repaired"] = report.get("repaired")
    if notes:
        entry["note"] = "; ".join(notes)


def _failed(reports: dict[str, Any]) -> dict[str, int]:
    return {name: int(r.get("failed_in_store", r.get("empty", 0)) or 0) for name, r in reports.items()}


def _retrieve(
    suite: Suite,
    embedder_spec: EmbedderSpec,
    out: Path,
    inputs: dict[str, Any],
    dataset_info: dict[str, Any],
    reconstruction: dict[str, Any] | None,
    summary: RunSummary,
) -> Path:
    """Retrieval rows of every captioner with one embedder, written with the run's results and manifest."""
    from pancap_retrieval.retrieval.retriever import TextRetriever

    run_dir = out if len(suite.embedders) == 1 else out / embedder_spec.name.replace("/", "--")
    retriever = TextRetriever.build(
        embedder_spec.name,
        long_text=embedder_spec.long_text,
        batch_size=embedder_spec.batch_size,
        cache_dir=default_cache_dir(),
        show_progress=True,
    )
    embedder = retriever.embedder
    rows, rows_reused, stats = _captioner_rows(suite, embedder_spec, retriever, inputs, run_dir / "retrieval", summary)
    retrievers = _retriever_rows(suite, inputs, run_dir / "retrieval", summary)
    rows += [made.row for made in retrievers.values()]
    rows_reused += [name for name, made in retrievers.items() if made.reused]
    from pancap_retrieval.retrieval.metrics import MULTI_DESCRIPTION_RULE

    extra = {"retrievers": {name: made.manifest for name, made in retrievers.items()}} if retrievers else {}
    manifest = base_manifest(
        suite=suite.model_dump(),
        dataset=dataset_info,
        retrieval_rule=MULTI_DESCRIPTION_RULE,
        embedder=embedder.manifest(stats),
        captioners=inputs["reports"],
        seed=suite.seed,
        cache={"embedding": embedder.stats.cache_counts(), "rows_reused": rows_reused},
        **extra,
    )
    results = {  # only what the inputs decide: a rerun writes the same file, whatever the caches hold
        "dataset": dataset_info,
        "embedder": {"name": embedder_spec.name, "long_text": embedder_spec.long_text, **embedder.manifest(stats)},
        "retrieval": suite.retrieval.model_dump(),
        "rows": rows,
    }
    if reported := suite.reported_rows():  # published figures, from the suite (none: no key)
        results["reported"] = reported
    if reconstruction is not None:
        results["reconstruction"] = reconstruction
    if inputs.get("pancapscore"):
        results["pancapscore"] = inputs["pancapscore"]
    write_json(run_dir / "results.json", results)
    write_json(run_dir / "manifest.json", manifest)
    return run_dir


def _captioner_rows(
    suite: Suite,
    embedder_spec: EmbedderSpec,
    retriever: Any,
    inputs: dict[str, Any],
    stage_dir: Path,
    summary: RunSummary,
) -> tuple[list[dict[str, Any]], list[str], Any]:
    """The row of every captioner through the text retriever, the names of the reused ones, and the embedding
    figures of the runs that made them (reused ones included)."""
    from pancap_retrieval.retrieval.embedder import EmbedStats

    embedder, descriptions = retriever.embedder, inputs["descriptions"]
    rows, rows_reused = [], []
    stats = EmbedStats(long_text=embedder.long_text)
    for name, records in inputs["captions"].items():
        with summary.stage(f"retrieve {name} ({embedder_spec.name})") as entry:
            before = embedder.stats.counts()
            row, reused = _retrieval_row(name, records, descriptions, retriever, embedder_spec, suite, stage_dir)
            made = embedder.stats.since(before) if reused is None else EmbedStats.from_counts(reused, stats.long_text)
            stats.add(made)
            entry.update(done=0 if reused is not None else row["n"], reused=row["n"] if reused is not None else 0)
            entry["repaired"] = int(bool(row.pop("repaired", False)))
            entry["note"] = _coverage_note(row, len(descriptions))
            rows.append(row)
            rows_reused += [name] * (reused is not None)
    return rows, rows_reused, stats


def _retriever_rows(suite: Suite, inputs: dict[str, Any], stage_dir: Path, summary: RunSummary) -> dict[str, Any]:
    """The row of every retriever of the suite (images against descriptions), by name."""
    from pancap_retrieval.stages.retrievers import retriever_row

    made = {}
    for spec in suite.retrievers:
        with summary.stage(f"retrieve {spec.name}") as entry:
            made[spec.name] = retriever_row(spec, inputs["dataset"], inputs["descriptions"], suite, stage_dir)
            n = made[spec.name].row["n"]
            entry.update(done=0 if made[spec.name].reused else n, reused=n if made[spec.name].reused else 0)
    return made


def _pancapscore(suite: Suite, out: Path, dataset: Any) -> dict[str, Any]:
    """PancapScore of every captioner of the suite against its reference (pancap_retrieval.pancapscore.run_scores)."""
    from pancap_retrieval.data import description_dialect
    from pancap_retrieval.pancapscore.run_scores import score_captioners

    split = _split_of(dataset, None)
    stores = {spec.name: store_path(out, spec.name, suite.dataset.name, split) for spec in suite.captioners}
    return score_captioners(out, stores, suite.pancapscore, dataset, description_dialect(suite.dataset))


def _coverage_note(row: dict[str, Any], images: int) -> str | None:
    """What the summary says of a row that scored under 95% of the images: how many were left out, and why."""
    from pancap_retrieval.leaderboard import COVERAGE_FLOOR

    if row.get("coverage", 1.0) >= COVERAGE_FLOOR:
        return None
    why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (row.get("skipped") or {}).items() if v)
    return f"scored {row['n']} of {images} images; left out: {why or 'no reason recorded'}"


def _reconstruct(
    suite: Suite, dataset: Any, captions: dict[str, list[CaptionRecord]], out: Path, summary: RunSummary
) -> dict:
    from reconstruct.run import reconstruct_spec

    dialects = _store_dialects(out, list(captions), suite.dataset.name, _split_of(dataset, None))
    return reconstruct_spec(
        out, captions, dataset, suite.reconstruction, seed=suite.seed, summary=summary, dialects=dialects
    )


def _store_dialects(out: Path, names: list[str], dataset_name: str, split: str) -> dict[str, str]:
    """Captioner name -> the box dialect its store in ``out`` declares."""
    return {name: store_dialect(store_path(out, name, dataset_name, split)) for name in names}


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
    from reconstruct.gallery import write_gallery
    from reconstruct.run import check_redrawer

    out = Path(out)
    options = options or RunOptions()
    check_redrawer(reconstruction)
    split = _split_of(dataset, None)
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
        from reconstruct.run import reconstruct_spec

        dialects = _store_dialects(out, list(captions), dataset_name, split)
        result = reconstruct_spec(
            out, captions, dataset, reconstruction, seed=seed, summary=RunSummary(), dialects=dialects
        )
        write_gallery(out)
    return result


__all__ = [
    "RunOptions",
    "RunSummary",
    "caption_inputs",
    "default_cache_dir",
    "existing_store",
    "import_captions",
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
