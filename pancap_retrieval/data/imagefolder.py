"""Any folder of images as a pancap dataset: ``imagefolder:PATH``.

Every image file under PATH (recursively, hidden entries skipped) is one example; its ``example_id`` is the path
relative to PATH without the extension (``birds/owl.jpg`` -> ``birds/owl``). Descriptions come from an optional
``metadata.jsonl`` at the top of PATH, as in the Hugging Face imagefolder: one JSON object per line with a
``file_name`` relative to PATH and a ``description``, ``text`` or ``caption`` field. Images without an entry get
an empty description; a folder without ``metadata.jsonl`` loads (captioning needs no description) with a warning
that says what the file must hold, and :func:`pancap_retrieval.data.require_descriptions` turns it into an error
where descriptions are needed. Ids need not be safe file names (``a b&c``). The only split is ``train``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pancap_retrieval.data.meta import DatasetMeta
from pancap_retrieval.data.records import (
    Row,
    build_dataset,
    check_limit,
    choose_split,
    first_n,
    read_json_lines,
)
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}
)
METADATA_FILE = "metadata.jsonl"
TEXT_FIELDS = ("description", "text", "caption")
META = DatasetMeta(
    name="imagefolder",
    loader="pancap_retrieval.data.imagefolder:load_imagefolder",
    help="any folder of images; descriptions from an optional metadata.jsonl "
    "(file_name + description/text/caption)",
    usage="`imagefolder:PATH` (every image under PATH; descriptions from PATH/metadata.jsonl, one line per image "
    'like {"file_name": "cat.jpg", "description": "A tabby cat ..."})',
    spec="imagefolder:PATH",
    source="a local folder",
    splits=("train",),
    default_split="train",
    descriptions_optional=True,
    missing_descriptions="pancap_retrieval.data.imagefolder:missing_metadata_help",
)
SPLIT = META.default_split or ""


def missing_metadata_help(folder: str | Path) -> str:
    """What ``metadata.jsonl`` must hold, with an example line, for the folder ``folder``."""
    return (
        f"add {Path(folder) / METADATA_FILE} with one JSON object per line and image: its file_name relative to "
        f'the folder and its description, e.g. {{"file_name": "cat.jpg", "description": "A tabby cat asleep on a '
        f'red sofa."}}'
    )


def load_imagefolder(arg: str | None, split: str | None = None, limit: int | None = None) -> datasets.Dataset:
    """Images under the folder ``arg``, sorted by relative path; descriptions from ``metadata.jsonl``."""
    check_limit(limit)
    if not arg:
        raise DatasetError("imagefolder needs a folder: imagefolder:PATH (e.g. imagefolder:./photos)")
    root = Path(arg).expanduser()
    if not root.exists():
        raise DatasetError(f"imagefolder: no such folder: {root}")
    if not root.is_dir():
        raise DatasetError(
            f"imagefolder: not a folder: {root}; imagefolder:PATH takes the folder that holds the images"
        )
    chosen = choose_split(META.name, split, META.splits, SPLIT)
    files = image_files(root)
    if not files:
        raise DatasetError(
            f"imagefolder: no image files in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    ids: dict[str, Path] = {}
    for path in files:
        example_id = path.relative_to(root).with_suffix("").as_posix()
        if example_id in ids:
            raise DatasetError(
                f"imagefolder: {ids[example_id]} and {path} both give example_id {example_id!r}"
            )
        ids[example_id] = path
    texts = read_metadata(root, {path.relative_to(root).as_posix() for path in files})
    rows = [
        Row(example_id, str(path), texts.get(path.relative_to(root).as_posix(), ""), chosen)
        for example_id, path in ids.items()
    ]
    return build_dataset(first_n(rows, limit), what=f"imagefolder:{root}")


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` by extension, hidden files and folders skipped, in sorted order."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found)


def read_metadata(root: Path, known_files: set[str]) -> dict[str, str]:
    """``file_name -> description`` from ``root/metadata.jsonl`` (empty when absent).

    A malformed line is an error naming the line; entries for files that are not there are counted and logged.
    """
    path = root / METADATA_FILE
    if not path.is_file():
        log.warning(
            "imagefolder: no %s in %s: every description is empty, so retrieval and the reference captioner "
            "have nothing to use; %s",
            METADATA_FILE,
            root,
            missing_metadata_help(root),
        )
        return {}
    texts: dict[str, str] = {}
    unmatched = []
    for number, record in read_json_lines(path, "imagefolder"):
        if not isinstance(record.get("file_name"), str):
            raise DatasetError(f"imagefolder: {path}:{number}: needs a string 'file_name'")
        name = Path(record["file_name"]).as_posix().removeprefix("./")
        text = next((record[key] for key in TEXT_FIELDS if isinstance(record.get(key), str)), "")
        if name in texts:
            raise DatasetError(f"imagefolder: {path}:{number}: second entry for {name!r}")
        if name not in known_files:
            unmatched.append(name)
        texts[name] = text
    if unmatched:
        log.warning(
            "imagefolder: %d metadata entries name no image in %s: %s",
            len(unmatched),
            root,
            ", ".join(unmatched[:5]),
        )
    return texts
