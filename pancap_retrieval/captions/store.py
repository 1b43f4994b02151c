"""The caption store: one JSONL file per (captioner, dataset, split), appended one record at a time.

Each record is written in one ``write`` of one line, flushed and fsynced, so a crash loses at most the record
being written. A rerun reads the finished ids and skips them. A torn last line (the crash case) is detected,
dropped with a warning and truncated away before new records are appended.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pancap_retrieval.errors import CaptionFileError

Status = Literal["ok", "failed"]


@dataclass
class CaptionRecord:
    """One image's caption. A failed generation has ``status="failed"``, ``caption=None`` and the error."""

    example_id: str
    caption: str | None
    stages: dict[str, Any] = field(default_factory=dict)
    status: Status = "ok"
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, example_id: str, error: str, **meta: Any) -> CaptionRecord:
        return cls(example_id, None, status="failed", error=error, meta=meta)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionRecord:
        if "example_id" not in data:
            raise CaptionFileError(f"record without example_id: {str(data)[:80]}")
        return cls(
            example_id=str(data["example_id"]),
            caption=data.get("caption"),
            stages=data.get("stages") or {},
            status=data.get("status", "ok"),
            error=data.get("error"),
            meta=data.get("meta") or {},
        )


def _slug(text: str) -> str:
    """A file-name-safe form of a dataset spec; specs with paths get a short hash to stay unique."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60]
    if slug != text:
        slug += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return slug


def store_path(root: str | Path, captioner: str, dataset: str, split: str) -> Path:
    """Where the captions of (captioner, dataset, split) live under a run folder.

    >>> store_path("runs/x", "detector", "sample", "test").as_posix()
    'runs/x/captions/detector__sample__test.jsonl'
    """
    return Path(root) / "captions" / f"{_slug(captioner)}__{_slug(dataset)}__{_slug(split)}.jsonl"


class CaptionStore:
    """Append-only JSONL of :class:`CaptionRecord`; the last record of an id wins when read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.torn_lines = 0

    def _read_lines(self, repair: bool) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            data = handle.read()
        offset = 0
        for number, line in enumerate(data.splitlines(keepends=True), start=1):
            end = offset + len(line)
            is_last = end == len(data)
            text = line.strip()
            if text:
                try:
                    record = json.loads(text)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    if is_last:
                        self.torn_lines += 1
                        warnings.warn(
                            f"{self.path}: torn last line dropped ({len(line)} bytes)", stacklevel=3
                        )
                        if repair:
                            with self.path.open("r+b") as handle:
                                handle.truncate(offset)
                        return
                    raise CaptionFileError(f"{self.path}:{number}: not a JSON record") from None
                if not isinstance(record, dict):
                    raise CaptionFileError(f"{self.path}:{number}: not a JSON object")
                yield record
            if is_last and not line.endswith(b"\n") and repair:
                with self.path.open("ab") as handle:  # a complete record that lost its newline
                    handle.write(b"\n")
            offset = end

    def records(self) -> list[CaptionRecord]:
        """Every record, the last one per id kept, in first-seen order."""
        latest: dict[str, CaptionRecord] = {}
        for data in self._read_lines(repair=False):
            record = CaptionRecord.from_dict(data)
            latest[record.example_id] = record
        return list(latest.values())

    def done_ids(self, include_failed: bool = False) -> set[str]:
        """Ids with a finished caption (failed ones too when asked), repairing a torn tail first."""
        done = {}
        for data in self._read_lines(repair=True):
            done[str(data.get("example_id"))] = data.get("status", "ok")
        return {i for i, status in done.items() if include_failed or status == "ok"}

    def append(self, record: CaptionRecord) -> None:
        line = json.dumps(asdict(record), ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def __len__(self) -> int:
        return len(self.records())
