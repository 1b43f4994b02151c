"""The one record schema every dataset loader returns, and the helpers the loaders share.

A pancap dataset is a ``datasets.Dataset`` with exactly the columns of :data:`COLUMNS`. Rows are sorted by
``example_id``; ``limit=N`` keeps the first N of that order, so the same N always means the same images.

Images are stored as file paths or bytes (an ``Image(decode=False)`` column) and only :func:`open_image` decodes
them, one at a time, so iterating a dataset of any size holds no decoded image. Loading reads image headers only.
An image whose header cannot be read keeps its row with ``width == height == 0`` (see :func:`unreadable_ids`).
An image with more pixels than the limit (``$PANCAP_MAX_IMAGE_PIXELS``, default 178,956,970 = the size at which
PIL itself refuses an image; ``0`` = no limit) keeps its row and its real size, and is never decoded.
:func:`open_image` raises a one-line :class:`~pancap_retrieval.errors.DatasetError` naming the example for a
missing, empty, corrupt, truncated or too large image; the captioning and reconstruction stages record it as a
failed or skipped item and go on.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets
    from PIL import Image

log = logging.getLogger(__name__)

COLUMNS = ("example_id", "image", "description", "width", "height", "split")
# The one optional column: every description of an image, for sets with several (``description`` is the first).
DESCRIPTIONS_COLUMN = "descriptions"
MAX_PIXELS_ENV = "PANCAP_MAX_IMAGE_PIXELS"
# PIL warns above Image.MAX_IMAGE_PIXELS (89,478,485) and refuses twice that; pancap's default is the refusal point.
DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+")
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Row:
    """One example before it becomes a dataset row: ``image`` is a file path or the encoded bytes."""

    example_id: str
    image: str | bytes
    description: str
    split: str


def features() -> datasets.Features:
    """The features of every pancap dataset, in column order; images stay encoded until :func:`open_image`."""
    import datasets

    return datasets.Features(
        {
            "example_id": datasets.Value("string"),
            "image": datasets.Image(decode=False),
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


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the form of a Hub repository id (``OWNER/NAME``), not of a local path."""
    return _HUB_ID.fullmatch(text) is not None


def max_image_pixels() -> int | None:
    """The pixel limit of :func:`open_image`: ``$PANCAP_MAX_IMAGE_PIXELS``, else the default; None = no limit."""
    return _env_limit(MAX_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS, "pixels")


def _env_limit(env: str, default: int, unit: str) -> int | None:
    """A size limit from the environment variable ``env``: ``default`` when unset, None for ``0`` (no limit); a
    value that is not a whole number of ``unit`` is one line that says what to set."""
    value = os.environ.get(env, "").strip()
    if not value:
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise DatasetError(
            f"{env} must be a whole number of {unit} (0 for no limit), got {value!r}; unset it for the default of {default}"
        )
    return limit or None


MAX_TEXT_ENV = "PANCAP_MAX_TEXT_BYTES"
DEFAULT_MAX_TEXT_BYTES = 64 * 1024


def max_text_bytes() -> int | None:
    """The size limit of a description or a caption, in UTF-8 bytes: ``$PANCAP_MAX_TEXT_BYTES``, else 64 KiB;
    None = no limit (``0``). A longer text is cut to it with a counted warning (:func:`cut_texts`)."""
    return _env_limit(MAX_TEXT_ENV, DEFAULT_MAX_TEXT_BYTES, "bytes")


def cut_text(text: str, limit: int | None) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (at a character boundary); unchanged when it fits.

    >>> cut_text("abcdé", 5), cut_text("abc", None)
    ('abcd', 'abc')
    """
    if limit is None or len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


def cut_texts(texts: dict[str, str], what: str) -> dict[str, str]:
    """``texts`` (id -> text) with every text over :func:`max_text_bytes` cut to it; one warning counts and names
    them, so a huge text never costs minutes of silent work."""
    limit = max_text_bytes()
    cut = {i: cut_text(t, limit) for i, t in texts.items() if isinstance(t, str) and cut_text(t, limit) != t}
    if cut:
        shown = ", ".join(list(cut)[:5]) + (" ..." if len(cut) > 5 else "")
        log.warning(
            "%s: %d text(s) over %s bytes cut to that size (%s; set %s to change the limit): %s",
            what, len(cut), f"{limit:,}", "UTF-8", MAX_TEXT_ENV, shown,
        )  # fmt: skip
    return {**texts, **cut}


def image_digests(images: Sequence[Any]) -> list[str]:
    """sha256 of each image cell's encoded bytes: a file path (hashed through the cache of
    :func:`~pancap_retrieval.artifacts.file_digests`, so an unchanged file is not read again), bytes, a
    ``{"bytes", "path"}`` dict or a PIL image (its mode, size and pixels)."""
    import hashlib

    from pancap_retrieval.artifacts import file_digests

    out: list[str | None] = [None] * len(images)
    paths: dict[int, str] = {}
    for n, image in enumerate(images):
        if isinstance(image, dict):
            image = image.get("bytes") or image.get("path")
        if isinstance(image, str | Path):
            paths[n] = str(image)
        elif isinstance(image, bytes | bytearray):
            out[n] = hashlib.sha256(image).hexdigest()
        elif hasattr(image, "tobytes") and hasattr(image, "mode"):
            head = f"{image.mode}:{image.size}:".encode()
            out[n] = hashlib.sha256(head + image.tobytes()).hexdigest()
        else:
            out[n] = "none"
    for n, digest in zip(paths, file_digests(list(paths.values()))):
        out[n] = digest
    return [str(d) for d in out]


_DIGESTS: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, str]]] = weakref.WeakKeyDictionary()


def row_digests(dataset: datasets.Dataset) -> dict[str, tuple[str, str]]:
    """example_id -> (sha256 of its image's bytes, sha256 of its description): what a row's results are keyed by.

    Images are read only when their file changed since they were last hashed; the answer is kept with the
    dataset object while it lives (a dataset loaded again is hashed again: its files may have changed).
    """
    import hashlib

    if dataset in _DIGESTS:
        return _DIGESTS[dataset]
    digests: dict[str, tuple[str, str]] = {}
    columns = [c for c in ("example_id", "image", "description") if c in dataset.column_names]
    table = (undecoded(dataset) if "image" in columns else dataset).select_columns(columns)
    for batch in table.iter(batch_size=1000):
        ids = batch["example_id"]
        images = image_digests(batch["image"]) if "image" in batch else ["none"] * len(ids)
        for example_id, image, text in zip(ids, images, batch.get("description") or [""] * len(ids)):
            digests[str(example_id)] = (image, hashlib.sha256((text or "").encode()).hexdigest())
    _DIGESTS[dataset] = digests
    return digests


def _open_unchecked(source: Any) -> Image.Image:
    """``PIL.Image.open`` (header only) without PIL's own decompression-bomb check, which the pixel limit replaces.

    PIL refuses images over twice ``Image.MAX_IMAGE_PIXELS`` inside ``open``; pancap checks the size itself, so that
    its limit is the one a user sets and a huge image is reported with its size rather than as PIL's exception.
    """
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def image_size(image: str | bytes | Path) -> tuple[int, int]:
    """(width, height) read from the image header only, whatever its size; (0, 0) when it cannot be read."""
    source = io.BytesIO(image) if isinstance(image, bytes) else image
    try:
        with _open_unchecked(source) as opened:
            return opened.size
    except Exception:  # any header PIL cannot read makes an unreadable image, recorded as 0x0
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
    descriptions = cut_texts({row.example_id: row.description for row in rows}, f"{what} descriptions")
    return datasets.Dataset.from_dict(
        {
            "example_id": [row.example_id for row in rows],
            "image": images,
            "description": [descriptions[row.example_id] for row in rows],
            "width": [width for width, _ in sizes],
            "height": [height for _, height in sizes],
            "split": [row.split for row in rows],
        },
        features=features(),
    )


def undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """The dataset with its image column left as ``{"bytes", "path"}``, so iterating never decodes.

    Pancap's own datasets are already so; this casts a dataset made elsewhere. Decode rows with :func:`open_image`.
    """
    import datasets

    feature = dataset.features.get("image")
    if isinstance(feature, datasets.Image) and not feature.decode:
        return dataset
    return dataset.cast_column("image", datasets.Image(decode=False))


def descriptions_by_id(dataset: datasets.Dataset) -> dict[str, str | list[str]]:
    """example_id -> its description, or the list of all its descriptions where the set has several per image."""
    column = DESCRIPTIONS_COLUMN if DESCRIPTIONS_COLUMN in dataset.column_names else "description"
    return dict(zip(dataset["example_id"], dataset[column]))


def unreadable_ids(dataset: datasets.Dataset) -> list[str]:
    """Ids of the examples whose image header could not be read at load time (stored as 0x0)."""
    return [
        example_id
        for example_id, width, height in zip(dataset["example_id"], dataset["width"], dataset["height"])
        if width == 0 or height == 0
    ]


class RowsById(Mapping[str, dict[str, Any]]):
    """example_id -> the dataset row with its image undecoded, read on access: only the ids are held in memory."""

    def __init__(self, dataset: datasets.Dataset) -> None:
        self._rows = undecoded(dataset)
        self._index = {str(example_id): n for n, example_id in enumerate(self._rows["example_id"])}

    def __getitem__(self, example_id: str) -> dict[str, Any]:
        return self._rows[self._index[example_id]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class _Unusable(Exception):
    """An image pancap will not decode; the message is the whole reason."""


def _opened(image: Any) -> Image.Image:
    """An opened (not yet decoded) PIL image from any form of image cell."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
        if image is None:
            raise _Unusable("cannot decode image (the row has neither image bytes nor a path)")
    if isinstance(image, bytes | bytearray):
        if not image:
            raise _Unusable("cannot decode image (empty image, 0 bytes)")
        return _open_unchecked(io.BytesIO(image))
    if isinstance(image, str | Path):
        if os.path.isfile(image) and os.path.getsize(image) == 0:
            raise _Unusable(f"cannot decode image (empty file, 0 bytes: {image})")
        return _open_unchecked(image)
    raise _Unusable(f"cannot decode image (unexpected image value of type {type(image).__name__})")


def _check_pixels(image: Image.Image, limit: int | None) -> None:
    width, height = image.size
    if limit is not None and width * height > limit:
        raise _Unusable(
            f"image too large to decode: {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limit:,}; shrink it or raise {MAX_PIXELS_ENV} (0 = no limit)"
        )


def open_image(example: Mapping[str, Any], max_pixels: int | None = None) -> Image.Image:
    """The example's image decoded to RGB; an image that cannot be used raises a one-line DatasetError naming it.

    ``example["image"]`` may be a PIL image, a ``{"bytes", "path"}`` dict, a path or bytes. An image over
    ``max_pixels`` pixels (default :func:`max_image_pixels`; ``0`` = no limit) is refused from its header, before
    any pixel is decoded. Missing, empty, corrupt and truncated images are refused with the reason.
    """
    example_id = example.get("example_id", "?")
    limit = max_image_pixels() if max_pixels is None else (max_pixels or None)
    given, image = example.get("image"), None
    try:
        image = _opened(given)
        _check_pixels(image, limit)
        image.load()
        return image.convert("RGB")  # always a new image, so the opened one can be closed
    except _Unusable as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"cannot decode image ({type(exc).__name__}: {_first_line(exc)})"
    finally:
        if image is not None and image is not given:
            image.close()  # the file handle, at once rather than at garbage collection
    raise DatasetError(f"{example_id}: {reason}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


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
