"""The import stage: a precomputed captions file read, screened against the dataset and copied into the run's store.

Ids that are not in the dataset, repeated ids and empty captions are counted in the import's report, never dropped
silently; a store imported from the same file is reused while it is whole.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import atomic_write, read_json, to_jsonable, write_json
from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import (
    CaptionRecord,
    CaptionStore,
    StoreMismatchError,
    manifest_path,
    store_path,
)
from pancap_retrieval.errors import CaptionFileError
from pancap_retrieval.results import base_manifest
from pancap_retrieval.stages.caption import caption_inputs, split_of
from pancap_retrieval.suite import CaptionerSpec

log = logging.getLogger(__name__)


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
    split = split_of(dataset, None)
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
