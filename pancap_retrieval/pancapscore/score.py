"""PancapScore of predicted captions against reference captions: per image, per dimension, overall.

Per image and dimension, precision / recall / F1:

- *tag*: matched instances / reference instances (recall), / predicted instances (precision);
- *location*: matched instances whose boxes overlap with IoU >= 0.5 / instances with a box on each side;
- *attribute*, *relation*, *global*: each reference statement whose entities were matched is asked, as its
  question pair, of the predicted caption (and each predicted statement of the reference caption); a pair
  earns 0.5 for "yes" to the first question and 0.5 for "no" to the second. Recall is the earned sum over the
  reference statements, precision over the predicted statements (a statement that cannot be asked earns 0).

Dimension scores are the means over images; overall = 100 x (tag + location + attribute + relation
+ 0.1 x global), maximum 410. A dimension a judge does not compute is reported as not computed, and the
overall with it; the ``rule`` judge then reports a labelled partial ``tag+location`` figure (maximum 200).

Where this differs from the published evaluation scripts, on purpose: decoding is greedy (the scripts sample),
so a score is reproducible; the judge is asked for JSON instead of ``ID | type -->> (tuple)`` lines, and
extraction and question writing are one call; statement precision divides by all predicted statements (the
scripts divide by the answered ones); a dimension whose reference is empty is skipped and counted
(``empty_ref="zero"`` scores it 0, as the scripts do for attributes, relations and global state); tag
containment is by words, not substrings; the sentence encoder defaults to the offline MiniLM (the scripts use
``all-mpnet-base-v2``, selectable with ``embedder="all-mpnet-base-v2"`` where its weights are local).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pancap_retrieval.artifacts import atomic_write, write_json
from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import CaptionRecord, store_dialect
from pancap_retrieval.errors import CaptionFileError
from pancap_retrieval.pancapscore.items import (
    DIMENSIONS,
    MAX_OVERALL,
    STATEMENT_KINDS,
    WEIGHTS,
    CaptionItems,
    overall_score,
    partial_score,
    remap_entities,
)
from pancap_retrieval.pancapscore.judges import Judge, get_judge, normalised_text
from pancap_retrieval.pancapscore.matching import (
    IOU_THRESHOLD,
    MatchedPair,
    TagSimilarity,
    f1,
    match_entities,
)

EmptyRef = Literal["skip", "zero"]
RESULT_FILE = "pancapscore.json"
TABLE_FILE = "pancapscore.md"
NOT_COMPUTED = "not computed"


def _prf(earned_ref: float, n_ref: int, earned_pred: float, n_pred: int) -> dict[str, Any]:
    recall = earned_ref / n_ref if n_ref else 0.0
    precision = earned_pred / n_pred if n_pred else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1(precision, recall),
        "n_ref": n_ref,
        "n_pred": n_pred,
    }


def _pair_score(answer: tuple[str | None, str | None] | None) -> float:
    if answer is None:
        return 0.0
    return 0.5 * (answer[0] == "yes") + 0.5 * (answer[1] == "no")


def score_items(
    ref: CaptionItems,
    pred: CaptionItems,
    matches: Sequence[MatchedPair],
    ref_answers: Sequence[tuple[str, str | None, str | None]] | None = None,
    pred_answers: Sequence[tuple[str, str | None, str | None]] | None = None,
    empty_ref: EmptyRef = "skip",
) -> dict[str, dict[str, Any]]:
    """Per-dimension scores of one image.

    ``ref_answers`` are the predicted caption's answers to the reference statements, one ``(kind, first,
    second)`` per reference statement in order (None answers for statements that could not be asked);
    ``pred_answers`` likewise the reference caption's answers to the predicted statements. Without
    statements extracted the statement dimensions are ``{"status": "not computed"}``; a dimension the reference
    has nothing in is ``{"status": "skipped", ...}`` (``empty_ref="skip"``) or scored 0 (``"zero"``).
    """
    counts_ref, counts_pred = ref.counts(), pred.counts()
    located = sum(1 for m in matches if m.location_match)
    out: dict[str, dict[str, Any]] = {
        "tag": _prf(len(matches), counts_ref["tag"], len(matches), counts_pred["tag"]),
        "location": _prf(located, counts_ref["location"], located, counts_pred["location"]),
    }
    computed = ref.statements_extracted and pred.statements_extracted
    for kind in STATEMENT_KINDS:
        if not computed:
            out[kind] = {"status": NOT_COMPUTED}
            continue
        earned_ref = sum(_pair_score((a, b)) for k, a, b in (ref_answers or []) if k == kind)
        earned_pred = sum(_pair_score((a, b)) for k, a, b in (pred_answers or []) if k == kind)
        out[kind] = _prf(earned_ref, counts_ref[kind], earned_pred, counts_pred[kind])
    for dim, value in out.items():
        if "status" in value:
            continue
        value["status"] = "scored"
        if value["n_ref"] == 0:
            if empty_ref == "skip":
                out[dim] = {
                    "status": "skipped",
                    "reason": f"the reference has no {dim} items",
                    "n_pred": value["n_pred"],
                }
            else:
                value["status"] = "scored (empty reference: 0)"
    return out


def _questions(
    source: CaptionItems, target: CaptionItems, mapping: dict[int, int]
) -> tuple[list[int], list[tuple[str, str]]]:
    """Indices of the source statements that can be asked of the target caption, and their remapped questions."""
    tags = {e.id: f"the {e.tag}" for e in source.entities}
    askable, questions = [], []
    for index, statement in enumerate(source.statements):
        if all(e in mapping for e in statement.entities):
            askable.append(index)
            questions.append(
                (
                    remap_entities(statement.yes_question, mapping, tags),
                    remap_entities(statement.no_question, mapping, tags),
                )
            )
    return askable, questions


def _ask(
    judge: Judge, caption: str, source: CaptionItems, target: CaptionItems, mapping: dict[int, int]
) -> tuple[list[tuple[str, str | None, str | None]], dict[str, int]]:
    askable, questions = _questions(source, target, mapping)
    replies = judge.answer(caption, target.entities, questions) if questions else []
    answers: list[tuple[str, str | None, str | None]] = [(s.kind, None, None) for s in source.statements]
    for index, reply in zip(askable, replies):
        answers[index] = (source.statements[index].kind, reply[0], reply[1])
    unanswered = sum(1 for reply in replies if reply[0] is None or reply[1] is None)
    return answers, {
        "asked": len(questions),
        "not_askable": len(source.statements) - len(questions),
        "unanswered": unanswered,
    }


def _records(source: str | Path | Sequence[CaptionRecord], side: str) -> tuple[list[CaptionRecord], str]:
    if isinstance(source, str | Path):
        return read_captions(source), str(source)
    records = list(source)
    for record in records:
        if not isinstance(record, CaptionRecord):
            raise CaptionFileError(f"{side}: expected CaptionRecord items, got {type(record).__name__}")
    return records, f"<{len(records)} records>"


def _by_id(records: list[CaptionRecord]) -> tuple[dict[str, CaptionRecord], list[str]]:
    """Records by id (the last one of an id kept) and the ids that occurred more than once."""
    out: dict[str, CaptionRecord] = {}
    duplicates: list[str] = []
    for record in records:
        if record.example_id in out:
            duplicates.append(record.example_id)
        out[record.example_id] = record
    return out, sorted(set(duplicates))


def _usable(record: CaptionRecord) -> bool:
    return record.status == "ok" and isinstance(record.caption, str) and bool(record.caption.strip())


def _id_list(ids: Sequence[str], shown: int = 50) -> dict[str, Any]:
    return {"count": len(ids), "ids": list(ids[:shown]), "truncated": len(ids) > shown}


@dataclass
class _Pairing:
    """The two sides paired by example id, with what could not be paired or scored."""

    pred_records: list[CaptionRecord]
    ref_records: list[CaptionRecord]
    pred_name: str
    ref_name: str
    preds: dict[str, CaptionRecord]
    refs: dict[str, CaptionRecord]
    duplicates: dict[str, list[str]]
    only_pred: list[str]
    only_ref: list[str]
    common: list[str]
    ref_unusable: list[str]
    pred_unusable: list[str]

    @property
    def ids(self) -> list[str]:
        """The paired ids whose reference can be scored."""
        unusable = set(self.ref_unusable)
        return [i for i in self.common if i not in unusable]


def _pair(pred: str | Path | Sequence[CaptionRecord], ref: str | Path | Sequence[CaptionRecord]) -> _Pairing:
    pred_records, pred_name = _records(pred, "pred")
    ref_records, ref_name = _records(ref, "ref")
    preds, pred_dups = _by_id(pred_records)
    refs, ref_dups = _by_id(ref_records)
    common = sorted(preds.keys() & refs.keys())
    if not common:
        raise CaptionFileError(
            f"no example id is in both {pred_name} ({len(preds)} ids, e.g. {next(iter(preds), '-')!r}) and "
            f"{ref_name} ({len(refs)} ids, e.g. {next(iter(refs), '-')!r}): both files must name the same images"
        )
    return _Pairing(
        pred_records,
        ref_records,
        pred_name,
        ref_name,
        preds,
        refs,
        {"pred": pred_dups, "ref": ref_dups},
        sorted(preds.keys() - refs.keys()),
        sorted(refs.keys() - preds.keys()),
        common,
        [i for i in common if not _usable(refs[i])],
        [i for i in common if not _usable(preds[i])],
    )


@dataclass
class BoxFrames:
    """How each side's boxes are read: in its own dialect (predictions in the captioner's, references in the
    dataset's), on each image's (width, height): from ``sizes`` (the dataset's), else from the image file a record
    names (``image_path``, absolute or relative to its captions file's folder)."""

    pred_dialect: str | None = None  # None: what the side's store declares (store_dialect), else auto
    ref_dialect: str | None = None
    sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    folders: dict[str, Path | None] = field(default_factory=dict)  # side -> the folder its image paths start from

    def size(self, side: str, record: CaptionRecord) -> tuple[int, int] | None:
        if record.example_id in self.sizes:
            return tuple(self.sizes[record.example_id])  # type: ignore[return-value]
        named = record.meta.get("image_path") if isinstance(record.meta, dict) else None
        if not isinstance(named, str) or not named:
            return None
        folder = self.folders.get(side)
        for path in (Path(named), *([folder / named] if folder is not None else [])):
            if path.is_file():
                from PIL import Image

                try:
                    with Image.open(path) as image:
                        return image.size
                except OSError:
                    return None
        return None

    def text(self, side: str, record: CaptionRecord, ndigits: int) -> str:
        """The record's caption with its boxes as fractions of its image (an error when they cannot be placed)."""
        dialect = (self.pred_dialect if side == "pred" else self.ref_dialect) or "auto"
        fix = (
            f"{side} caption {record.example_id!r}: its image's size is unknown; pass --dataset (the dataset of the "
            "images, for their sizes) or name a readable image in its image_path"
        )
        return normalised_text(record.caption or "", dialect, self.size(side, record), ndigits=ndigits, fix=fix)


def _extract(
    pairing: _Pairing, judge: Judge, frames: BoxFrames
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], CaptionItems]]:
    """The text each side is judged on (boxes as fractions of the image; three digits for a language model), and
    the items the judge extracts from it (an empty caption has none)."""
    ndigits = 3 if judge.extracts_statements else 6
    texts: dict[tuple[str, str], str] = {}
    for i in pairing.ids:
        texts["ref", i] = frames.text("ref", pairing.refs[i], ndigits)
    for i in pairing.ids:
        texts["pred", i] = frames.text("pred", pairing.preds[i], ndigits) if _usable(pairing.preds[i]) else ""
    items: dict[tuple[str, str], CaptionItems] = {}
    for key, text in texts.items():
        if not text.strip():
            items[key] = CaptionItems(statements_extracted=judge.extracts_statements)
        else:
            items[key] = judge.extract(text)
    return texts, items


def _score_image(
    i: str,
    judge: Judge,
    texts: dict[tuple[str, str], str],
    items: dict[tuple[str, str], CaptionItems],
    similarity: TagSimilarity,
    iou_threshold: float,
    empty_ref: EmptyRef,
) -> dict[str, Any]:
    """One image's entry: matches, the questions asked both ways, and the dimension scores."""
    ref_items, pred_items = items["ref", i], items["pred", i]
    matches = match_entities(ref_items.entities, pred_items.entities, similarity, iou_threshold)
    ref_answers = pred_answers = None
    questions: dict[str, Any] = {}
    if judge.extracts_statements:
        forward = {m.ref_id: m.pred_id for m in matches}
        backward = {m.pred_id: m.ref_id for m in matches}
        ref_answers, questions["ref_to_pred"] = _ask(judge, texts["pred", i], ref_items, pred_items, forward)
        pred_answers, questions["pred_to_ref"] = _ask(judge, texts["ref", i], pred_items, ref_items, backward)
    entry: dict[str, Any] = {
        "example_id": i,
        "status": "scored",
        "dimensions": score_items(ref_items, pred_items, matches, ref_answers, pred_answers, empty_ref),
        "matches": [m.to_dict() for m in matches],
        "counts": {"ref": ref_items.counts(), "pred": pred_items.counts()},
    }
    if questions:
        entry["questions"] = questions
    return entry


def _score_images(
    pairing: _Pairing,
    judge: Judge,
    texts: dict[tuple[str, str], str],
    items: dict[tuple[str, str], CaptionItems],
    similarity: TagSimilarity,
    iou_threshold: float,
    empty_ref: EmptyRef,
) -> tuple[list[dict[str, Any]], dict[str, list[str]], dict[str, int]]:
    """Per-image entries (judge failures recorded, not scored), the failed ids per side, and question totals."""
    per_image: list[dict[str, Any]] = []
    judge_failures: dict[str, list[str]] = {"ref": [], "pred": []}
    totals = {"invalid_items": 0, "questions_asked": 0, "questions_not_askable": 0, "questions_unanswered": 0}
    pred_unusable = set(pairing.pred_unusable)
    for i in pairing.ids:
        ref_items, pred_items = items["ref", i], items["pred", i]
        totals["invalid_items"] += ref_items.invalid + pred_items.invalid
        failed = [side for side, value in (("ref", ref_items), ("pred", pred_items)) if value.failed]
        if failed:
            for side in failed:
                judge_failures[side].append(i)
            per_image.append(
                {"example_id": i, "status": "judge failed", "failed": {s: items[s, i].failed for s in failed}}
            )
            continue
        entry = _score_image(i, judge, texts, items, similarity, iou_threshold, empty_ref)
        for stats in entry.get("questions", {}).values():
            totals["questions_asked"] += stats["asked"]
            totals["questions_not_askable"] += stats["not_askable"]
            totals["questions_unanswered"] += stats["unanswered"]
        if i in pred_unusable:
            entry["pred_caption"] = "failed or empty: scored as an empty caption"
        per_image.append(entry)
    return per_image, judge_failures, totals


def _counts(
    pairing: _Pairing, per_image: list[dict[str, Any]], judge_failures: dict[str, list[str]], totals: dict[str, int]
) -> dict[str, Any]:
    return {
        "pred_records": len(pairing.pred_records),
        "ref_records": len(pairing.ref_records),
        "paired": len(pairing.common),
        "scored": sum(1 for e in per_image if e["status"] == "scored"),
        "only_in_pred": _id_list(pairing.only_pred),
        "only_in_ref": _id_list(pairing.only_ref),
        "duplicate_ids": pairing.duplicates,
        "ref_failed_or_empty": _id_list(pairing.ref_unusable),
        "pred_failed_or_empty": _id_list(pairing.pred_unusable),
        "judge_failed": {side: _id_list(v) for side, v in judge_failures.items()},
        **totals,
    }


def score_pancapscore(
    pred: str | Path | Sequence[CaptionRecord],
    ref: str | Path | Sequence[CaptionRecord],
    judge: str | Judge = "rule",
    out: str | Path | None = None,
    *,
    empty_ref: EmptyRef = "skip",
    similarity: TagSimilarity | None = None,
    embedder: str = "minilm",
    iou_threshold: float = IOU_THRESHOLD,
    device: str | None = None,
    judge_kwargs: dict[str, Any] | None = None,
    frames: BoxFrames | None = None,
) -> dict[str, Any]:
    """PancapScore of ``pred`` against ``ref`` (caption files of any format the toolkit reads, or records).

    Images are paired by ``example_id``; ids on one side only are counted and listed, not scored. A failed
    or empty predicted caption is scored as an empty caption; a failed or empty reference is not scored.
    Boxes are read as ``frames`` says (:func:`box_frames`). With ``out`` the result is written to
    ``out/pancapscore.json`` and a table to ``out/pancapscore.md``.
    """
    if empty_ref not in ("skip", "zero"):
        raise ValueError(f"empty_ref must be 'skip' or 'zero', got {empty_ref!r}")
    started = time.perf_counter()
    pairing = _pair(pred, ref)
    hf = device and isinstance(judge, str) and judge.startswith("hf")
    the_judge = get_judge(judge, **{**({"device": device} if hf else {}), **(judge_kwargs or {})})
    similarity = similarity or TagSimilarity(embedder, device=device)
    frames = box_frames(pred, ref, frames)
    texts, items = _extract(pairing, the_judge, frames)
    similarity.prepare(e.tag for value in items.values() for e in value.entities)
    per_image, judge_failures, totals = _score_images(
        pairing, the_judge, texts, items, similarity, iou_threshold, empty_ref
    )
    dimensions = _aggregate(per_image, the_judge.extracts_statements)
    result: dict[str, Any] = {
        "metric": "pancapscore",
        "pred": pairing.pred_name,
        "ref": pairing.ref_name,
        "judge": the_judge.describe(),
        "matching": {**similarity.describe(), "iou_threshold": iou_threshold},
        "empty_ref": empty_ref,
        "box_dialects": {"pred": frames.pred_dialect, "ref": frames.ref_dialect},
        **_overall(dimensions),
        "counts": _counts(pairing, per_image, judge_failures, totals),
        "per_image": per_image,
        "meta": {"evaluation_time_s": round(time.perf_counter() - started, 3)},
    }
    if out is not None:
        write_result(result, Path(out))
    return result


def _overall(dimensions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The scale, the weights, the dimensions and the overall score (or the tag+location partial score when a
    dimension was not computed) of a result, in the order a result lists them."""
    f1s = {dim: dimensions[dim].get("f1") for dim in DIMENSIONS}
    overall = overall_score(f1s)
    partial = partial_score(f1s) if overall is None else None
    return {
        "scale": "precision/recall/F1 in [0, 1]; overall = 100 x (tag + location + attribute + relation + 0.1 x global)",
        "weights": WEIGHTS,
        "max_overall": MAX_OVERALL,
        "dimensions": dimensions,
        "overall": overall,
        "overall_status": "computed" if overall is not None else _not_computed(dimensions),
        "partial": None
        if partial is None
        else {"label": "tag+location", "dimensions": ["tag", "location"], "value": partial, "max": 200.0},
    }


def box_frames(
    pred: str | Path | Sequence[CaptionRecord], ref: str | Path | Sequence[CaptionRecord], frames: BoxFrames | None
) -> BoxFrames:
    """``frames`` completed: an unset dialect is what the side's store declares (``auto`` without one), and each
    side's image paths start from its captions file's folder."""
    frames = frames or BoxFrames()
    declared = {}
    folders = dict(frames.folders)
    for side, source, dialect in (("pred", pred, frames.pred_dialect), ("ref", ref, frames.ref_dialect)):
        path = Path(source) if isinstance(source, str | Path) else None
        if dialect is None:
            dialect = store_dialect(path) if path is not None and path.is_file() else "auto"
        declared[side] = dialect
        if path is not None:
            folders.setdefault(side, path if path.is_dir() else path.parent)
    return BoxFrames(declared["pred"], declared["ref"], frames.sizes, folders)


def _not_computed(dimensions: dict[str, dict[str, Any]]) -> str:
    missing = [d for d in DIMENSIONS if dimensions[d].get("f1") is None]
    return f"{NOT_COMPUTED}: no score for {', '.join(missing)}"


def _aggregate(per_image: list[dict[str, Any]], statements: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    scored = [e for e in per_image if e["status"] == "scored"]
    for dim in DIMENSIONS:
        if dim in STATEMENT_KINDS and not statements:
            out[dim] = {
                "status": NOT_COMPUTED,
                "reason": "the judge extracts no attributes, relations or global state",
            }
            continue
        rows = [e["dimensions"][dim] for e in scored if e["dimensions"][dim]["status"] != "skipped"]
        skipped = [e["example_id"] for e in scored if e["dimensions"][dim]["status"] == "skipped"]
        if not rows:
            out[dim] = {
                "status": NOT_COMPUTED,
                "reason": "no image could be scored",
                "n_images": 0,
                "skipped": _id_list(skipped),
            }
            continue
        out[dim] = {
            "status": "computed",
            **{name: sum(r[name] for r in rows) / len(rows) for name in ("precision", "recall", "f1")},
            "n_images": len(rows),
            "skipped": _id_list(skipped),
        }
    return out


def markdown_table(result: dict[str, Any]) -> str:
    """The dimension scores as a Markdown table (percent), with the overall and what was not computed."""
    lines = [
        f"PancapScore of `{result['pred']}` against `{result['ref']}`, judge `{result['judge']['name']}`",
        "",
        "| dimension | precision | recall | F1 | images |",
        "|---|---:|---:|---:|---:|",
    ]
    for dim in DIMENSIONS:
        row = result["dimensions"][dim]
        if row.get("f1") is None:
            lines.append(f"| {dim} | {NOT_COMPUTED} | | | {row.get('n_images', 0)} |")
        else:
            lines.append(
                f"| {dim} | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | {100 * row['f1']:.2f} | {row['n_images']} |"
            )
    lines.append("")
    if result["overall"] is not None:
        lines.append(f"**Overall: {result['overall']:.2f}** (maximum {result['max_overall']:.0f})")
    else:
        lines.append(f"Overall: {result['overall_status']}")
        if result.get("partial"):
            partial = result["partial"]
            lines.append(
                f"Partial ({partial['label']} only, maximum {partial['max']:.0f}): {partial['value']:.2f}"
            )
    counts = result["counts"]
    lines += [
        "",
        f"Images scored: {counts['scored']} of {counts['paired']} paired; only in pred: {counts['only_in_pred']['count']}, "
        f"only in ref: {counts['only_in_ref']['count']}; judge failures: ref {counts['judge_failed']['ref']['count']}, "
        f"pred {counts['judge_failed']['pred']['count']}.",
    ]
    return "\n".join(lines) + "\n"


def write_result(result: dict[str, Any], out: Path) -> Path:
    """Write ``pancapscore.json`` and ``pancapscore.md`` into ``out``; returns the JSON path."""
    path = write_json(out / RESULT_FILE, result)
    atomic_write(out / TABLE_FILE, markdown_table(result))
    return path


__all__ = ["BoxFrames", "box_frames", "markdown_table", "score_items", "score_pancapscore", "write_result"]
