"""Runs: caption a dataset, import captions, retrieve, redraw; each stage a cached artifact in the run folder.

A run folder holds ``captions/`` (one store per captioner), ``retrieval/`` (one result per captioner, keyed by a
fingerprint of its inputs so a rerun skips what is done), ``results.json``, ``leaderboard.md/.csv``,
``recall_at_k.png`` and ``manifest.json``; with reconstruction also ``images/``, ``layouts.jsonl`` and
``reconstruction.json``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import CaptionRecord, CaptionStore, store_path
from pancap_retrieval.errors import PancapError
from pancap_retrieval.results import base_manifest, fingerprint, read_results, write_json
from pancap_retrieval.suite import CaptionerSpec, EmbedderSpec, Suite

log = logging.getLogger(__name__)
# Bumped when the shape of a retrieval row changes, so reruns recompute rather than reuse old rows.
RETRIEVAL_ROW_VERSION = 2


def default_cache_dir() -> Path:
    """Where embeddings and rewrites are cached across runs: ``$PANCAP_CACHE_DIR`` or ``~/.cache/pancap``."""
    return Path(os.environ.get("PANCAP_CACHE_DIR") or Path.home() / ".cache" / "pancap")


def _split_of(dataset: Any, asked: str | None) -> str:
    return dataset.select_columns(["split"])[0]["split"] if len(dataset) else (asked or "-")


def _load(spec: str, split: str | None, limit: int | None):
    from pancap_retrieval.data import load_dataset

    return load_dataset(spec, split=split, limit=limit)


def run_captioner(
    name: str,
    options: dict[str, Any],
    dataset_spec: str,
    split: str | None,
    limit: int | None,
    out: str | Path,
    batch_size: int | None = None,
    retry_failed: bool = False,
    dataset: Any = None,
):
    """Caption a dataset with a registered captioner into ``out/captions/`` (resumable).

    Under ``accelerate launch`` or ``torchrun`` (WORLD_SIZE > 1) each rank captions its shard into its own store
    file and rank 0 merges them.
    """
    from pancap_retrieval.captioners import get_captioner
    from pancap_retrieval.captioners.base import caption_dataset

    dataset = dataset if dataset is not None else _load(dataset_spec, split, limit)
    store = CaptionStore(store_path(out, name, dataset_spec, _split_of(dataset, split)))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from pancap_retrieval.captioners.distributed import run_captioning

        stats, manifest = run_captioning(name, dataset, store.path, batch_size, retry_failed, **options)
    else:
        captioner = get_captioner(name, **options)
        stats = caption_dataset(captioner, dataset, store, batch_size=batch_size, retry_failed=retry_failed)
        manifest = captioner.manifest()
    write_json(store.path.with_suffix(".manifest.json"), base_manifest(captioner=manifest))
    return stats, store.path


def import_captions(
    file: str | Path,
    captioner: str,
    dataset_spec: str,
    split: str | None,
    out: str | Path,
    dataset: Any = None,
) -> dict[str, Any]:
    """Copy a precomputed captions file into the run's store, checking its ids against the dataset.

    Ids that are not in the dataset, repeated ids (the first is kept) and empty captions are counted, never
    dropped silently: empty ones are stored as failed records.
    """
    records = read_captions(file)
    dataset = dataset if dataset is not None else _load(dataset_spec, split, None)
    known = set(dataset["example_id"])
    path = store_path(out, captioner, dataset_spec, _split_of(dataset, split))
    report = {"file": str(file), "store": str(path), "read": len(records), "imported": 0, "empty": 0}
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
    if not kept:
        raise PancapError(
            f"{file}: none of its {len(records)} captions belongs to {dataset_spec} "
            f"({report['not_in_dataset']} ids not in the dataset)"
        )
    tmp = path.with_suffix(".importing")
    tmp.unlink(missing_ok=True)
    store = CaptionStore(tmp)
    for record in kept:
        record.meta = {**record.meta, "imported_from": str(file)}
        store.append(record)
    os.replace(tmp, path)
    report["imported"] = len(kept) - report["empty"]
    return report


def _captions_of(
    spec: CaptionerSpec, suite: Suite, dataset: Any, out: Path
) -> tuple[list[CaptionRecord], dict]:
    if spec.file:
        report = import_captions(spec.file, spec.name, suite.dataset.name, suite.dataset.split, out, dataset)
        return CaptionStore(report["store"]).records(), report
    options = {"model": spec.model} if spec.model else {}
    options.update(spec.options)
    stats, path = run_captioner(
        spec.name,
        options,
        suite.dataset.name,
        suite.dataset.split,
        None,
        out,
        spec.batch_size,
        dataset=dataset,
    )
    return CaptionStore(path).records(), stats.to_dict()


def _retrieval_row(
    name: str,
    records: list[CaptionRecord],
    descriptions: dict[str, str],
    embedder: Any,
    embedder_spec: EmbedderSpec,
    suite: Suite,
    stage_dir: Path,
) -> dict[str, Any]:
    from pancap_retrieval.retrieval.metrics import evaluate_retrieval

    captions = {r.example_id: r.caption for r in records if r.status == "ok" and r.example_id in descriptions}
    skipped = {
        "failed": sum(r.status != "ok" for r in records),
        "not_in_dataset": sum(r.example_id not in descriptions for r in records),
        "no_caption": len(set(descriptions) - {r.example_id for r in records}),
    }
    key = fingerprint(
        RETRIEVAL_ROW_VERSION,
        sorted(captions.items()),
        sorted(descriptions.items()),
        embedder_spec.model_dump(),
        embedder.fingerprint,
        suite.retrieval.model_dump(),
        suite.seed,
    )
    stage_file = stage_dir / f"{name}.json"
    if stage_file.is_file():
        cached = json.loads(stage_file.read_text())
        if cached.get("key") == key:
            return cached["row"]
    result = evaluate_retrieval(
        captions,
        descriptions,
        embedder=embedder,
        caption_mode=suite.retrieval.text_prep,
        n_bootstrap=suite.retrieval.bootstrap_samples,
        seed=suite.seed,
        cache_dir=default_cache_dir(),
        backend=suite.retrieval.backend,
    )
    write_json(stage_dir / f"{name}.top10.json", result["top"])
    row = {
        "captioner": name,
        "n": result["n"],
        "coverage": result["n"] / max(1, len(descriptions)),
        "skipped": {**skipped, **result["skipped"]},
        "c2d": result["c2d"],
        "d2c": result["d2c"],
        "text_prep": result["text_prep"],
        "embedding": result["embedding"],
    }
    write_json(stage_file, {"key": key, "row": row})
    return row


def run_suite(suite: Suite, out: str | Path) -> list[Path]:
    """Run every stage of ``suite`` under ``out``; returns the run folders written (one per embedder)."""
    from pancap_retrieval.leaderboard import write_leaderboard
    from pancap_retrieval.retrieval.embedder import Embedder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "suite.json", suite.model_dump())
    dataset = _load(suite.dataset.name, suite.dataset.split, suite.dataset.limit)
    if len(dataset) == 0:
        raise PancapError(f"dataset {suite.dataset.name} has no example to evaluate")
    split = _split_of(dataset, suite.dataset.split)
    descriptions = dict(zip(dataset["example_id"], dataset["description"]))

    captions: dict[str, list[CaptionRecord]] = {}
    caption_reports: dict[str, Any] = {}
    for spec in suite.captioners:
        if spec.name in captions:
            raise PancapError(f"captioner {spec.name!r} appears twice in suite {suite.name}")
        captions[spec.name], caption_reports[spec.name] = _captions_of(spec, suite, dataset, out)

    reconstruction = None
    if suite.reconstruction is not None:
        reconstruction = _reconstruct(suite, dataset, captions, out)

    dataset_info = {
        "name": suite.dataset.name,
        "split": split,
        "limit": suite.dataset.limit,
        "n": len(dataset),
    }
    run_dirs = []
    for embedder_spec in suite.embedders:
        run_dir = out if len(suite.embedders) == 1 else out / embedder_spec.name.replace("/", "--")
        embedder = Embedder(
            embedder_spec.name,
            long_text=embedder_spec.long_text,
            batch_size=embedder_spec.batch_size,
            cache_dir=default_cache_dir(),
        )
        rows = [
            _retrieval_row(name, records, descriptions, embedder, embedder_spec, suite, run_dir / "retrieval")
            for name, records in captions.items()
        ]
        manifest = base_manifest(
            suite=suite.model_dump(),
            dataset=dataset_info,
            embedder=embedder.manifest(),
            captioners=caption_reports,
            seed=suite.seed,
        )
        results = {
            "dataset": dataset_info,
            "embedder": {
                "name": embedder_spec.name,
                "long_text": embedder_spec.long_text,
                **embedder.manifest(),
            },
            "rows": rows,
            "manifest": manifest,
        }
        if reconstruction is not None:
            results["reconstruction"] = reconstruction
        write_json(run_dir / "results.json", results)
        write_json(run_dir / "manifest.json", manifest)
        write_leaderboard([run_dir], run_dir)
        run_dirs.append(run_dir)
    if len(run_dirs) > 1:
        write_leaderboard(run_dirs, out)
    return run_dirs


def _reconstruct(suite: Suite, dataset: Any, captions: dict[str, list[CaptionRecord]], out: Path) -> dict:
    from reconstruct import reconstruct_run
    from reconstruct.gallery import write_gallery

    spec = suite.reconstruction
    result = reconstruct_run(
        out,
        captions,
        dataset,
        redrawer=spec.redrawer,
        model=spec.model,
        seed=suite.seed,
        steps=spec.steps,
        scores=spec.scores,
        **spec.options,
    )
    write_gallery(out)
    return result


def run_reconstruction(
    dataset_spec: str,
    split: str | None,
    limit: int | None,
    captioners: list[dict[str, str]],
    out: str | Path,
    redrawer: str = "sketch",
    model: str | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> dict[str, Any]:
    """Redraw and score the given captions (files or stores of captioners in ``out``) without retrieval."""
    out = Path(out)
    suite = Suite.model_validate(
        {
            "name": "reconstruct",
            "dataset": {"name": dataset_spec, "split": split, "limit": limit},
            "captioners": captioners,
            "reconstruction": {"redrawer": redrawer, "model": model, "steps": steps},
            "seed": seed,
        }
    )
    dataset = _load(dataset_spec, split, limit)
    captions = {}
    for spec in suite.captioners:
        if not spec.file:
            path = store_path(out, spec.name, dataset_spec, _split_of(dataset, split))
            if not path.is_file():
                raise PancapError(
                    f"no captions of {spec.name} in {out}: run `pancap caption` first or pass a file"
                )
            captions[spec.name] = CaptionStore(path).records()
        else:
            captions[spec.name] = _captions_of(spec, suite, dataset, out)[0]
    return _reconstruct(suite, dataset, captions, out)


__all__ = [
    "default_cache_dir",
    "import_captions",
    "read_results",
    "run_captioner",
    "run_reconstruction",
    "run_suite",
]
