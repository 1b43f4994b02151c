"""PancapScore of every captioner of a run, as a suite asks for it (``pancapscore: {reference: ..., judge: rule}``).

Each captioner's store is scored against the reference; the full result goes to ``pancapscore/NAME/`` in the run
folder (``pancapscore.json`` and ``.md``) and its summary (F1 per dimension, overall or the tag+location partial)
into the run's results, where the leaderboard shows it. A result is reused while its key (the store's content, the
reference, the judge and the box dialects) is unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import file_digest, key, read_json, write_json
from pancap_retrieval.captions.store import CaptionRecord, store_dialect

log = logging.getLogger(__name__)
# `reference: dataset` scores against the run dataset's own descriptions (SA-Pancap's are panoptic captions).
DATASET_REFERENCE = "dataset"


def reference_records(reference: str, dataset: Any, dataset_dialect: str) -> tuple[Any, str | None, str]:
    """(what score_pancapscore takes as ``ref``, its box dialect, a digest of it) for a suite's ``reference``:
    ``dataset``, a shipped reference by name (``sapancap:test``) or a captions file."""
    if reference == DATASET_REFERENCE:
        from pancap_retrieval.data.records import descriptions_by_id

        texts = descriptions_by_id(dataset)
        records = [CaptionRecord(i, d[0] if isinstance(d, list) else d) for i, d in texts.items() if d]
        return records, dataset_dialect, key(sorted((r.example_id, r.caption) for r in records))
    from pancap_retrieval.pancapscore.sources import reference_side

    side = reference_side(reference)
    return side.path, side.dialect, file_digest(side.path)


def score_captioners(
    out: Path, stores: dict[str, Path], spec: Any, dataset: Any, dataset_dialect: str = "auto"
) -> dict[str, dict[str, Any]]:
    """PancapScore summary per captioner of ``stores`` (name -> store path) against ``spec.reference`` with
    ``spec.judge``; image sizes from ``dataset`` (its width and height columns)."""
    from pancap_retrieval.pancapscore import BoxFrames, score_pancapscore

    ref, ref_dialect, ref_digest = reference_records(spec.reference, dataset, dataset_dialect)
    table = dataset.select_columns(["example_id", "width", "height"])
    sizes = {i: (w, h) for i, w, h in zip(table["example_id"], table["width"], table["height"]) if w and h}
    summaries = {}
    for name, store in stores.items():
        folder = Path(out) / "pancapscore" / name
        wanted = key(file_digest(store), ref_digest, spec.judge, store_dialect(store), ref_dialect, sorted(sizes.items()))
        recorded = read_json(folder / "summary.json") or {}
        if recorded.get("key") == wanted and (folder / "pancapscore.json").is_file():
            summaries[name] = recorded["summary"]
            continue
        result = score_pancapscore(store, ref, judge=spec.judge, out=folder, frames=BoxFrames(None, ref_dialect, sizes))
        summaries[name] = summary_of(result)
        write_json(folder / "summary.json", {"key": wanted, "summary": summaries[name]})
    return summaries


def summary_of(result: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard shows of a PancapScore result: F1 per dimension (None where not computed), the
    overall score, the tag+location partial score when overall is not computed, and the images scored."""
    partial = result.get("partial") or {}
    return {
        "f1": {dim: values.get("f1") for dim, values in result["dimensions"].items()},
        "overall": result.get("overall"),
        "partial": partial.get("value"),
        "judge": (result.get("judge") or {}).get("name"),
        "n": result.get("counts", {}).get("scored"),
    }
