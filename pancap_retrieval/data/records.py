"""The one record schema every dataset loader returns, and the helpers the loaders share.

A pancap dataset is a ``datasets.Dataset`` with exactly the columns of :data:`COLUMNS`. Rows are sorted by
``example_id``; ``limit=N`` keeps the first N of that order, so the same N always means the same images.
Images are stored as file paths or bytes and decoded only when read. An image whose header cannot be read at
load time keeps its row with ``width == height == 0`` (see :func:`unreadable_ids`); :func:`open_image` raises a
:class:`~pancap_retrieval.errors.DatasetError` naming the example when asked to decode it.
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets
    from PIL import Image

log = logging.getLogger(__name__)

COLUMNS = ("example_id", "image", "description", "width", "height", "split")


@dataclass(frozen=True)
class Row:
    """One example before it becomes a dataset row: ``image`` is a file path or the encoded bytes."""

    example_id: str
    image: str | bytes
    description: str
    split: str


def features() -> datasets.Features:
    """The features of every pancap dataset, in column order."""
    import datasets

    return datasets.Features(
        {
            "example_id": datasets.Value("string"),
            "image": datasets.Image(),
            "description": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "split": datasets.Value("string"),
        }
    )


def check_limit(limit: int | None) -> None:
    """``limit`` is ``None`` (everything) or a positive count."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive integer, got {limit!r}")


def choose_split(dataset: str, split: str | None, known: Iterable[str], default: str) -> str:
    """The split to load: ``split`` if it is one of ``known``, ``default`` when ``split`` is None."""
    known = sorted(set(known))
    chosen = default if split is None else split
    if chosen not in known:
        raise DatasetError(f"{dataset} has no split {chosen!r}; known splits: {', '.join(known) or '(none)'}")
    return chosen


def first_n(rows: Iterable[Row], limit: int | None) -> list[Row]:
    """Rows sorted by example_id, the first ``limit`` of them; duplicate ids are an error."""
    check_limit(limit)
    ordered = sorted(rows, key=lambda row: row.example_id)
    for previous, current in itertools.pairwise(ordered):
        if previous.example_id == current.example_id:
            raise DatasetError(f"duplicate example_id {current.example_id!r}")
    return ordered if limit is None else ordered[:limit]


def image_size(image: str | bytes | Path) -> tuple[int, int]:
    """(width, height) read from the image header only; (0, 0) when the header cannot be read."""
    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(image) if isinstance(image, bytes) else image
    try:
        with Image.open(source) as opened:
            return opened.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return 0, 0


def build_dataset(rows: Sequence[Row], what: str = "dataset") -> datasets.Dataset:
    """A dataset with the pancap features from rows already ordered and limited; images stay undecoded."""
    import datasets

    sizes = [image_size(row.image) for row in rows]
    unreadable = [row.example_id for row, size in zip(rows, sizes) if size == (0, 0)]
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        log.warning(
            "%s: %d image(s) cannot be read and are kept with size 0x0: %s", what, len(unreadable), shown
        )
    images = [
        {"bytes": row.image, "path": None} if isinstance(row.image, bytes) else row.image for row in rows
    ]
    return datasets.Dataset.from_dict(
        {
            "example_id": [row.example_id for row in rows],
            "image": images,
            "description": [row.description for row in rows],
            "width": [width for width, _ in sizes],
            "height": [height for _, height in sizes],
            "split": [row.split for row in rows],
        },
        features=features(),
    )


def undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """The same dataset with the image column left as ``{"bytes", "path"}``, so iterating never decodes.

    Iterate over this when a corrupt image must not stop the loop, and decode each row with :func:`open_image`.
    """
    import datasets

    return dataset.cast_column("image", datasets.Image(decode=False))


def unreadable_ids(dataset: datasets.Dataset) -> list[str]:
    """Ids of the examples whose image header could not be read at load time (stored as 0x0)."""
    return [
        example_id
        for example_id, width, height in zip(dataset["example_id"], dataset["width"], dataset["height"])
        if width == 0 or height == 0
    ]


def open_image(example: dict[str, Any]) -> Image.Image:
    """The example's image decoded to RGB; a missing or corrupt image raises DatasetError naming the example.

    ``example["image"]`` may be a PIL image, a ``{"bytes", "path"}`` dict (see :func:`undecoded`) or a path.
    """
    from PIL import Image

    example_id = example.get("example_id", "?")
    image = example.get("image")
    try:
        if isinstance(image, dict):
            if image.get("bytes"):
                image = Image.open(io.BytesIO(image["bytes"]))
            elif image.get("path"):
                image = Image.open(image["path"])
            else:
                raise ValueError("no bytes and no path")
        elif isinstance(image, str | Path):
            image = Image.open(image)
        elif isinstance(image, bytes):
            image = Image.open(io.BytesIO(image))
        elif not isinstance(image, Image.Image):
            raise ValueError(f"unexpected image value of type {type(image).__name__}")
        image.load()
        return image.convert("RGB")
    except Exception as exc:
        raise DatasetError(f"{example_id}: cannot decode image ({type(exc).__name__}: {exc})") from None


def read_json_lines(path: Path, dataset: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSON-lines file; a bad line is an error naming it."""
    import json

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{dataset}: cannot read {path}: {exc}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{dataset}: {path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{dataset}: {path}:{number}: expected a JSON object")
        records.append((number, record))
    return records


def dataset_from_images(
    images: Mapping[str, Image.Image], descriptions: Mapping[str, str] | None = None, split: str = "test"
) -> datasets.Dataset:
    """A pancap dataset from in-memory PIL images keyed by id (kept in the given order), stored as PNG bytes."""
    descriptions = descriptions or {}
    rows = []
    for example_id, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        rows.append(Row(str(example_id), buffer.getvalue(), descriptions.get(example_id, ""), split))
    return build_dataset(rows, "in-memory images")
