"""The caption store: one JSONL file per (captioner, dataset, split), appended one record at a time, and its key.

Each record is written in one ``write`` of one line, flushed and fsynced (:class:`~pancap_retrieval.artifacts.JsonlStore`),
so a crash loses at most the record being written. A rerun reads the finished ids and skips them. A torn last line
(the crash case) is dropped with a warning and truncated away before new records are appended.

Beside each store, ``NAME.manifest.json`` records the key of what made it (captioner, options with their defaults,
model fingerprint, dataset, split) before the first record is written. A rerun whose key differs stops with one line
that names what differs (:func:`check_store_key`): a store never mixes two settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pancap_retrieval.artifacts import (
    STORE_LINE_FIX,
    ArtefactError,
    JsonlStore,
    file_name,
    read_json,
    write_json,
)
from pancap_retrieval.errors import CaptionFileError, PancapError

Status = Literal["ok", "failed"]


class StoreMismatchError(PancapError):
    """A store in the run folder was made with other inputs than this run asks for."""


@dataclass
class CaptionRecord:
    """One image's caption. A failed generation has ``status="failed"``, ``caption=None`` and the error.

    ``input`` is the key of what the captioner was given (the image's bytes and, for a captioner that reads it,
    the description): a record is reused only while its row still has that key.
    """

    example_id: str
    caption: str | None
    stages: dict[str, Any] = field(default_factory=dict)
    status: Status = "ok"
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    input: str | None = None

    @classmethod
    def failed(cls, example_id: str, error: str, **meta: Any) -> CaptionRecord:
        return cls(example_id, None, status="failed", error=error, meta=meta)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionRecord:
        """A record from its JSON object; a field of the wrong type is one :class:`CaptionFileError` line."""
        if "example_id" not in data:
            raise CaptionFileError(f"record without example_id: {str(data)[:80]}")
        example_id = data["example_id"]
        where = f"record {str(example_id)[:60]!r}"
        if not isinstance(example_id, str | int) or isinstance(example_id, bool):
            raise CaptionFileError(f"{where}: example_id must be a string, not {type(example_id).__name__}")
        status = data.get("status", "ok")
        caption = data.get("caption")
        if status not in ("ok", "failed") or (caption is not None and not isinstance(caption, str)):
            raise CaptionFileError(f"{where}: bad status or caption")
        for name, kind, what in (("stages", dict, "an object"), ("meta", dict, "an object")):
            if data.get(name) is not None and not isinstance(data[name], kind):
                raise CaptionFileError(
                    f"{where}: {name} must be {what} (or left out), not {type(data[name]).__name__}"
                )
        for name in ("error", "input"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise CaptionFileError(f"{where}: {name} must be text, not {type(data[name]).__name__}")
        return cls(
            example_id=str(example_id),
            caption=caption,
            stages=data.get("stages") or {},
            status=status,
            error=data.get("error"),
            meta=data.get("meta") or {},
            input=data.get("input"),
        )


def store_path(root: str | Path, captioner: str, dataset: str, split: str) -> Path:
    """Where the captions of (captioner, dataset, split) live under a run folder.

    >>> store_path("runs/x", "detector", "sample", "test").as_posix()
    'runs/x/captions/detector__sample__test.jsonl'
    """
    return Path(root) / "captions" / f"{file_name(captioner)}__{file_name(dataset)}__{file_name(split)}.jsonl"


def manifest_path(store: str | Path) -> Path:
    """``captions/NAME.jsonl`` -> ``captions/NAME.manifest.json``."""
    return Path(store).with_suffix(".manifest.json")


def store_dialect(store: str | Path) -> str:
    """The box dialect a store's captions are in, as the manifest beside it declares: ``box_dialect`` (what an
    import declared, or what the captioner that wrote it says it writes), else the captioner's own manifest's;
    ``auto`` (each box told by its form) when nothing is declared or there is no manifest.
    """
    manifest = read_json(manifest_path(store)) or {}
    captioner = manifest.get("captioner")
    declared = manifest.get("box_dialect") or (captioner.get("box_dialect") if isinstance(captioner, dict) else None)
    return str(declared or "auto")


class CaptionStore:
    """Append-only JSONL of :class:`CaptionRecord`; the last record of an id wins when read.

    ``duplicate_ids`` counts ids that appear on more than one line (a retried image, or a hand-made file).
    """

    def __init__(self, path: str | Path, *, input_file: bool = False) -> None:
        """``input_file``: a captions file given to pancap (being imported), not a store of a run folder."""
        self.path = Path(path)
        self._lines = JsonlStore(self.path, "fix or delete that line" if input_file else STORE_LINE_FIX)
        self.duplicate_ids = 0

    @property
    def torn_lines(self) -> int:
        return self._lines.torn_lines

    def _read(self, repair: bool = False):
        try:
            yield from self._lines.read(repair=repair)
        except ArtefactError as exc:
            raise CaptionFileError(str(exc)) from None

    def records(self) -> list[CaptionRecord]:
        """Every record, the last one per id kept, in first-seen order."""
        latest: dict[str, CaptionRecord] = {}
        lines = 0
        for data in self._read():
            try:
                record = CaptionRecord.from_dict(data)
            except CaptionFileError as exc:
                raise CaptionFileError(f"{self.path}: {exc}") from None
            latest[record.example_id] = record
            lines += 1
        self.duplicate_ids = lines - len(latest)
        return list(latest.values())

    def done_ids(self, include_failed: bool = False, inputs: Mapping[str, str] | None = None) -> set[str]:
        """Ids with a finished caption (failed ones too when asked), repairing a torn line first. With ``inputs``
        (id -> input key) only the records made from the input an id has now count."""
        done = self._latest_status(repair=True)
        return {
            i
            for i, (status, made_from) in done.items()
            if (include_failed or status == "ok") and (inputs is None or inputs.get(i) == made_from)
        }

    def changed_ids(self, inputs: Mapping[str, str]) -> set[str]:
        """Ids of ``inputs`` with a record made from another input (an image or description changed since)."""
        done = self._latest_status()
        return {i for i, (_, made_from) in done.items() if i in inputs and inputs[i] != made_from}

    def _latest_status(self, repair: bool = False) -> dict[str, tuple[str, str | None]]:
        return {
            str(data.get("example_id")): (data.get("status", "ok"), data.get("input"))
            for data in self._read(repair=repair)
        }

    def append(self, record: CaptionRecord) -> None:
        self._lines.append(asdict(record))

    def __len__(self) -> int:
        return len(self.records())


def check_store_key(store: Path, wanted: dict[str, Any], overwrite: bool = False) -> None:
    """Make sure ``store`` holds (or will hold) captions made by ``wanted`` (a dict with a ``key``).

    A store with records whose manifest has another key stops the run with one line naming what differs, unless
    ``overwrite``: then the old store and its manifest are removed. The manifest with the key is written before any
    record, so a killed run is resumed only by the same setting.
    """
    manifest = manifest_path(store)
    recorded = read_json(manifest) or {}
    has_records = store.is_file() and store.stat().st_size > 0
    if has_records and recorded.get("key") != wanted["key"] and not overwrite:
        raise StoreMismatchError(
            f"{store} was made with {_differences(recorded, wanted)}; pass --overwrite to replace it "
            "or use another --out"
        )
    if overwrite or recorded.get("key") != wanted["key"]:
        store.unlink(missing_ok=True)
        for rank_file in store.parent.glob(f"{store.name}.rank*"):
            rank_file.unlink()
        write_json(manifest, wanted)


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    if not recorded:
        return "unknown inputs (no manifest beside it)"
    parts = []
    recorded = dict(recorded)
    if isinstance(recorded.get("captioner"), dict):  # older runs kept the captioner's own manifest here
        recorded["captioner"] = recorded["captioner"].get("name")
    for name in ("captioner", "source", "model_fingerprint", "dataset", "split"):
        if recorded.get(name) != wanted.get(name):
            parts.append(f"{name} {recorded.get(name)!r} (this run: {wanted.get(name)!r})")
    old, new = recorded.get("options") or {}, wanted.get("options") or {}
    for option in sorted(set(old) | set(new)):
        if old.get(option) != new.get(option):
            parts.append(f"{option}={old.get(option)!r} (this run: {new.get(option)!r})")
    return ", ".join(parts) or "other inputs"
