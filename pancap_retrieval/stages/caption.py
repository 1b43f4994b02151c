"""The caption stage: caption a dataset with a registered captioner into the run's store, keyed by its inputs.

A store (``captions/`` in the run folder) is reused only for the inputs that made it (:func:`caption_inputs`): the
captioner, the dataset and split, and the options that decide its captions (:data:`SPEED_OPTIONS` left out) or the
content of the file its captions were imported from. The stage is resumable: only the images still to caption are
captioned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import file_digests, file_name, key, path_fingerprint, write_json
from pancap_retrieval.captions.store import (
    CaptionRecord,
    CaptionStore,
    check_store_key,
    manifest_path,
    store_path,
)
from pancap_retrieval.errors import PancapError
from pancap_retrieval.results import base_manifest
from pancap_retrieval.suite import CaptionerSpec

# Options that change how fast captions are made, not what they say: left out of a store's key.
SPEED_OPTIONS = frozenset({"batch_size", "device", "providers"})


@dataclass
class CaptionReport:
    """What the caption and import stages hand on: each captioner's records in dataset order, and the report of how
    they were had (captioned, reused or imported), by captioner name."""

    records: dict[str, list[CaptionRecord]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)


def split_of(dataset: Any, asked: str | None) -> str:
    """The split of ``dataset`` (read from its first row), else ``asked``, else ``-``."""
    return dataset.select_columns(["split"])[0]["split"] if len(dataset) else (asked or "-")



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

    split = split_of(dataset, None)
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



def in_dataset_order(records: list[CaptionRecord], dataset: Any) -> list[CaptionRecord]:
    """``records`` in the order of the dataset's rows; records of ids the dataset lacks last, as they came."""
    position = {str(example_id): n for n, example_id in enumerate(dataset["example_id"])}
    return sorted(records, key=lambda record: position.get(record.example_id, len(position)))


def is_captioner(name: str) -> bool:
    from pancap_retrieval.captioners import CAPTIONERS

    return name in CAPTIONERS


def has_store(out: Path | None, name: str) -> bool:
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



def count_captions(entry: dict[str, Any], report: dict[str, Any]) -> None:
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


def failed_counts(reports: dict[str, Any]) -> dict[str, int]:
    return {name: int(r.get("failed_in_store", r.get("empty", 0)) or 0) for name, r in reports.items()}
