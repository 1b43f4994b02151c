"""The originals of a run: where their images come from, the sha256 of their bytes, and their small copies.

    originals/{file_name(id)}.png   the original, long side at most 512 (for galleries and scores)
    originals/index.jsonl           one line per original: its key (with the image's sha256), bytes, size
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.artifacts import JsonlStore, file_name, key, save_image
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ORIGINAL_MAX_SIDE = 512


def image_source(dataset: Any) -> dict[str, Any]:
    """example_id -> what :func:`~pancap_retrieval.data.open_image` decodes (a row dict with ``image``)."""
    if isinstance(dataset, str):
        from pancap_retrieval.data import load_dataset

        dataset = load_dataset(dataset)
    if isinstance(dataset, Mapping):
        return {str(k): {"example_id": str(k), "image": v} for k, v in dataset.items()}
    if hasattr(dataset, "column_names") and "image" in dataset.column_names:
        from pancap_retrieval.data.records import RowsById

        return RowsById(dataset)
    if isinstance(dataset, Iterable):
        rows = {}
        for row in dataset:
            if not isinstance(row, Mapping) or "example_id" not in row or "image" not in row:
                raise DatasetError("dataset rows must have example_id and image")
            rows[str(row["example_id"])] = row
        return rows
    raise DatasetError(f"cannot read images from a {type(dataset).__name__}")


class Originals:
    """The originals of a run: opened on demand, a small copy written once (atomically), sizes kept in an index.

    ``size(id)`` needs no decoding when the index has the image; ``image(id)`` decodes it. A small copy that is
    missing or not the size the index recorded (torn, emptied) is written again. An unreadable image is
    remembered with its reason.
    """

    def __init__(
        self, run_dir: Path, sources: Mapping[str, Any], digests: Mapping[str, str], rank: int | None = None
    ) -> None:
        self.folder = run_dir / "originals"
        self.sources = sources
        self.digests = digests  # id -> sha256 of the image's bytes: a small copy is reused only for the same bytes
        # under a launcher each rank appends to its own index file; all of them are read
        self.index = JsonlStore(self.folder / ("index.jsonl" if rank is None else f"index.jsonl.rank{rank}"))
        entries = [e for path in sorted(self.folder.glob("index.jsonl*")) for e in JsonlStore(path).read()]
        self.known = {e["example_id"]: e for e in entries if e.get("key") == self._key(e.get("example_id", ""))}
        self.bad: dict[str, str] = {}
        self.repaired = 0

    def _key(self, example_id: str) -> str:
        return key(example_id, ORIGINAL_MAX_SIDE, self.digests.get(example_id))

    def path(self, example_id: str) -> Path:
        return self.folder / f"{file_name(example_id)}.png"

    def have(self, example_id: str) -> bool:
        """Whether the small copy of ``example_id`` is on disk with the size its index line recorded."""
        entry = self.known.get(example_id)
        path = self.path(example_id)
        return entry is not None and path.is_file() and path.stat().st_size == entry.get("bytes")

    def size(self, example_id: str) -> tuple[int, int] | None:
        """The full image's (width, height), or None when it cannot be read."""
        if self.have(example_id):
            return tuple(self.known[example_id]["size"])  # type: ignore[return-value]
        image = self.image(example_id)
        return None if image is None else image.size

    def image(self, example_id: str) -> Image.Image | None:
        """The full image, decoded now (never kept: memory stays bounded), writing its small copy when missing."""
        if example_id in self.bad:
            return None
        from pancap_retrieval.data import open_image

        try:
            image = open_image(dict(self.sources[example_id]))
        except DatasetError as exc:
            self.bad[example_id] = str(exc)
            return None
        if not self.have(example_id):
            if example_id in self.known:  # indexed, but the file is gone or cut: a killed run, a damaged disk
                log.warning("%s: missing or cut; written again from its source", self.path(example_id))
                self.repaired += 1
            self._write(example_id, image)
        return image

    def _write(self, example_id: str, image: Image.Image) -> None:
        small = image.copy()
        small.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
        path = save_image(small, self.path(example_id))
        entry = {"example_id": example_id, "key": self._key(example_id), "size": list(image.size)}
        entry["bytes"] = path.stat().st_size
        self.index.append(entry)
        self.known[example_id] = entry


def image_digests(dataset: Any, sources: Mapping[str, Any]) -> dict[str, str]:
    """example_id -> sha256 of its image's bytes (of a dataset's files through the hash cache: an unchanged file is
    not read again)."""
    from pancap_retrieval.data import image_digests as digests_of
    from pancap_retrieval.data import row_digests

    if hasattr(dataset, "column_names") and "image" in dataset.column_names:
        return {example_id: image for example_id, (image, _) in row_digests(dataset).items()}
    ids = list(sources)
    return dict(zip(ids, digests_of([sources[i].get("image") for i in ids])))
