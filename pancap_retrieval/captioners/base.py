"""The captioner protocol and the loop that captions a dataset into the caption store."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pancap_retrieval.captions.store import CaptionRecord, CaptionStore

log = logging.getLogger(__name__)


@dataclass
class Example:
    """What a captioner sees of one dataset row: the decoded RGB image and its metadata."""

    example_id: str
    image: Any  # PIL.Image.Image, RGB
    width: int
    height: int
    description: str = ""


class Captioner(ABC):
    """Captions batches of examples. Implementations return one record per example, failed ones included.

    ``needs_image`` and ``reads_description`` say what a caption is made from, so that a rerun captions an
    image again exactly when that changed (:func:`input_keys`).
    """

    name: str = "captioner"
    default_batch_size: int = 1
    needs_image: bool = True
    # The box dialect of the captions it writes (pancap_retrieval.captions.boxes); its manifest says it as
    # ``box_dialect`` and the store's manifest keeps it (pancap_retrieval.captions.store.store_dialect).
    box_dialect: str = "auto"
    reads_description: bool = True

    @abstractmethod
    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        """One :class:`CaptionRecord` per example, in order. May raise; the runner then retries one by one."""

    def manifest(self) -> dict[str, Any]:
        """Model ids, revisions, prompts and options: what a run's manifest records of this captioner."""
        return {"name": self.name, "box_dialect": self.box_dialect}


@dataclass
class CaptionRunStats:
    total: int = 0
    skipped_done: int = 0
    ok: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    changed: int = 0  # images whose record was made from another image or description, captioned again
    cut: int = 0  # captions over the text limit, cut to it

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "skipped_done": self.skipped_done,
            "ok": self.ok,
            "failed": self.failed,
            "changed": self.changed,
            "cut": self.cut,
            "failures": dict(list(self.failures.items())[:50]),
        }


def input_keys(dataset: Any, captioner: Any) -> dict[str, str]:
    """example_id -> the key of what ``captioner`` (an instance or its class) is given of that row: the bytes of
    its image when it ``needs_image``, its description when it ``reads_description``. A stored caption is reused
    only while its row has the same key."""
    from pancap_retrieval.artifacts import key
    from pancap_retrieval.data import row_digests

    image = getattr(captioner, "needs_image", True)
    text = getattr(captioner, "reads_description", True)
    return {
        example_id: key(image_digest if image else None, text_digest if text else None)
        for example_id, (image_digest, text_digest) in row_digests(dataset).items()
    }


def iter_examples(dataset: Any, decode: bool = True) -> Iterable[dict[str, Any]]:
    """Rows of a pancap dataset with the image decoded safely: a bad image gives ``error``, not a crash."""
    from pancap_retrieval.data import open_image, undecoded
    from pancap_retrieval.errors import DatasetError

    if decode:
        rows = undecoded(dataset)
    else:
        rows = dataset.select_columns([c for c in dataset.column_names if c != "image"])
    for row in rows:
        row = dict(row)
        row["error"] = None
        if decode:
            try:
                row["image"] = open_image(row)
            except DatasetError as exc:
                row["image"], row["error"] = None, str(exc)
        row.setdefault("image", None)
        row.setdefault("description", "")
        yield row


def batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Consecutive lists of ``size`` items (the last one shorter) from any iterable, read lazily: the one image-batch
    loop of pancap (captioners caption, image-text retrievers encode, one batch of decoded images at a time)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def caption_dataset(
    captioner: Captioner,
    dataset: Any,
    store: CaptionStore,
    batch_size: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    rows: Callable[..., Iterable[dict[str, Any]]] | None = None,
) -> CaptionRunStats:
    """Caption every row of ``dataset`` not yet in ``store``; each record is appended as soon as it exists.

    A record is kept only while its row's input (:func:`input_keys`) is unchanged: a changed image or description
    is captioned again (counted in ``changed``). An image that cannot be decoded, or an example the captioner fails
    on, is stored as a failed record with the reason and the run goes on. With ``retry_failed`` the failed ids of
    an earlier run are tried again. A caption over the text limit is cut to it and counted in ``cut``.
    """
    from tqdm.auto import tqdm

    from pancap_retrieval.data import max_text_bytes
    from pancap_retrieval.data.records import cut_text

    batch_size = batch_size or captioner.default_batch_size
    inputs = input_keys(dataset, captioner)
    done = store.done_ids(include_failed=not retry_failed, inputs=inputs)
    stats = CaptionRunStats(changed=len(store.changed_ids(inputs)))
    ids = [str(i) for i in dataset["example_id"]]
    pending = [index for index, example_id in enumerate(ids) if example_id not in done]
    stats.total, stats.skipped_done = len(ids), len(ids) - len(pending)
    if pending and len(pending) < len(ids):
        dataset = dataset.select(pending)
    limit = max_text_bytes()
    bar = tqdm(total=len(pending), desc=f"caption {captioner.name}", unit="img", disable=not progress)
    if pending:  # rows are decoded one batch at a time: memory stays bounded at any dataset size
        for batch in batches((rows or iter_examples)(dataset, decode=captioner.needs_image), batch_size):
            for record in _caption_rows(captioner, batch):
                record.input = inputs.get(record.example_id)
                if isinstance(record.caption, str) and cut_text(record.caption, limit) != record.caption:
                    record.caption = cut_text(record.caption, limit)
                    stats.cut += 1
                store.append(record)
                if record.status == "ok":
                    stats.ok += 1
                else:
                    stats.failed += 1
                    stats.failures[record.example_id] = record.error or "unknown error"
            bar.update(len(batch))
    bar.close()
    if stats.cut:
        log.warning(
            "%s: %d caption(s) over %s bytes cut to that size (set PANCAP_MAX_TEXT_BYTES to change the limit)",
            captioner.name, stats.cut, f"{limit:,}",
        )  # fmt: skip
    return stats


def _caption_rows(captioner: Captioner, batch: list[dict[str, Any]]) -> list[CaptionRecord]:
    """Records of one batch of rows: unreadable images as failed records, the rest from the captioner."""
    records, examples = [], []
    for row in batch:
        if row.get("error"):
            records.append(CaptionRecord.failed(row["example_id"], row["error"]))
        else:
            examples.append(
                Example(row["example_id"], row["image"], row["width"], row["height"], row["description"])
            )
    return records + _caption_safely(captioner, examples)


def _caption_safely(captioner: Captioner, examples: list[Example]) -> list[CaptionRecord]:
    if not examples:
        return []
    try:
        records = captioner.caption_batch(examples)
        if len(records) != len(examples):
            raise RuntimeError(f"captioner returned {len(records)} records for {len(examples)} images")
        return records
    except Exception as exc:
        if len(examples) == 1:
            log.warning("%s failed on %s: %s", captioner.name, examples[0].example_id, exc)
            return [CaptionRecord.failed(examples[0].example_id, f"{type(exc).__name__}: {exc}")]
    return [record for example in examples for record in _caption_safely(captioner, [example])]
