"""DOCCI (Descriptions of Connected and Contrasting Images, Onoe et al. 2024) as a pancap dataset.

Three sources, chosen by the argument of ``docci:ARG``:

- a local directory with the official release layout: ``docci_descriptions.jsonlines`` (one JSON object per
  line with ``example_id``, ``split``, ``image_file``, ``description``) and ``images/<image_file>``, as written by
  `pancap data download docci --to DIR`;
- a local directory of parquet files (a downloaded copy of a parquet mirror);
- a Hub id of a parquet mirror with ``image`` and ``example_id`` columns (``OWNER/NAME``, pinned with
  ``OWNER/NAME@REVISION``, which :func:`pancap_retrieval.data.split_spec` turns into ``revision``), loaded with
  ``datasets.load_dataset``; only the asked split is fetched.

``google/docci`` itself is a loading script, which current ``datasets`` refuses to run; it is rejected with the
two ways that work. Without an argument, ``$PANCAP_DOCCI_DIR`` names the local release.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pancap_retrieval.data.meta import DatasetMeta
from pancap_retrieval.data.records import (
    Row,
    build_dataset,
    check_limit,
    choose_split,
    features,
    first_n,
    image_size,
    is_hub_id,
    read_json_lines,
)
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

DESCRIPTIONS_FILE = "docci_descriptions.jsonlines"
IMAGES_DIR = "images"
META = DatasetMeta(
    name="docci",
    loader="pancap_retrieval.data.docci:load_docci",
    help="DOCCI: 15k photos with long human descriptions (Onoe et al., 2024), CC BY 4.0",
    usage="`docci:DIR` (the official DOCCI release, e.g. docci:./data/docci after pancap data download docci "
    "--to ./data/docci); `docci:OWNER/MIRROR` (a DOCCI parquet mirror on the Hub, pinned with @REVISION, e.g. "
    "docci:OWNER/MIRROR@a1b2c3d; or a local copy of one, docci:DIR)",
    spec="docci:DIR | docci:OWNER/PARQUET-MIRROR",
    source="official release in a local dir (`pancap data download docci --to DIR`), "
    "or a parquet mirror on the Hub or on disk",
    splits=("train", "test", "qual_dev", "qual_test"),
    default_split="test",
    env="PANCAP_DOCCI_DIR",
    revisioned=True,
)
SPLITS = META.splits
DEFAULT_SPLIT = META.default_split or ""
ENV_DIR = META.env
SCRIPT_IDS = ("google/docci",)
EXAMPLE_DIR = "./data/docci"


def how_to_get(folder: str | Path = EXAMPLE_DIR) -> str:
    """The two ways to DOCCI, with ``folder`` as the download target."""
    return (
        f"download the official release with pancap data download docci --to {folder} and use "
        f"docci:{folder}, or pass a parquet mirror on the Hub (docci:OWNER/NAME[@REVISION])"
    )


def load_docci(
    arg: str | None, split: str | None = None, limit: int | None = None, revision: str | None = None
) -> datasets.Dataset:
    """DOCCI from a local release dir, a local parquet dir or a Hub parquet mirror (at ``revision``); split ``test``
    by default. Every way it cannot be found is one line that says how to get it."""
    check_limit(limit)
    if arg is None:
        arg = os.environ.get(META.env or "")
        if not arg:
            raise DatasetError(f"docci needs a source: {how_to_get()}; or set ${META.env} to the folder")
    path = Path(arg).expanduser()
    if path.is_dir():
        if revision is not None:
            raise DatasetError(
                f"docci: {path} is a local folder; a revision (@{revision}) pins a Hub mirror only: remove it"
            )
        if (path / DESCRIPTIONS_FILE).is_file():
            return load_release(path, split, limit)
        if any(path.rglob("*.parquet")):
            return _load_parquet_dir(path, split, limit)
        raise DatasetError(
            f"docci: {path} has no {DESCRIPTIONS_FILE} and no parquet files; "
            f"download the release into it with pancap data download docci --to {path} (it resumes)"
        )
    if path.exists():
        raise DatasetError(f"docci: {path} is not a directory; {how_to_get()}")
    if arg.strip().lower() in SCRIPT_IDS:
        raise DatasetError(
            f"docci: {arg} is a dataset loading script, which datasets>=4 no longer runs; instead {how_to_get()}"
        )
    if not is_hub_id(arg):
        raise DatasetError(
            f"docci: no such directory: {path}; download it with pancap data download docci --to {path}"
        )
    return _load_hub(arg, revision, split, limit)


def load_release(root: Path, split: str | None = None, limit: int | None = None) -> datasets.Dataset:
    """The official release layout: descriptions jsonlines plus ``images/``; images decode lazily."""
    records = read_descriptions(root / DESCRIPTIONS_FILE)
    present = {record["split"] for record in records}
    chosen = choose_split("docci", split, present or SPLITS, DEFAULT_SPLIT)
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise DatasetError(
            f"docci: image folder not found: {images}; unpack docci_images.tar.gz in {root}, or run "
            f"pancap data download docci --to {root}, which fetches what is missing and unpacks it"
        )
    rows = [
        Row(record["example_id"], str(images / record["image_file"]), record["description"], chosen)
        for record in records
        if record["split"] == chosen
    ]
    return build_dataset(first_n(rows, limit), what=f"docci:{root}")


def read_descriptions(path: Path) -> list[dict[str, str]]:
    """Records of ``docci_descriptions.jsonlines``; a malformed line is an error naming file and line."""
    required = ("example_id", "split", "image_file", "description")
    records = []
    for number, record in read_json_lines(path, "docci"):
        missing = [key for key in required if not isinstance(record.get(key), str)]
        if missing:
            raise DatasetError(f"docci: {path}:{number}: missing or non-string {', '.join(missing)}")
        records.append({key: record[key] for key in required})
    return records


def _load_hub(repo_id: str, revision: str | None, split: str | None, limit: int | None) -> datasets.Dataset:
    try:
        return _load_mirror(repo_id, revision, split, limit)
    except DatasetError:
        raise
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0]
        pinned = f" at revision {revision!r}" if revision else ""
        raise DatasetError(
            f"docci: {repo_id!r} is not a local directory and cannot be loaded from the Hub{pinned} "
            f"({type(exc).__name__}: {reason}); data cannot be fetched offline: for a local copy run "
            f"pancap data download docci --to {repo_id} and use docci:./{repo_id}, or check the mirror id"
        ) from None


def _load_parquet_dir(root: Path, split: str | None, limit: int | None) -> datasets.Dataset:
    try:
        return _load_mirror(str(root), None, split, limit)
    except DatasetError:
        raise
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise DatasetError(
            f"docci: cannot read the parquet files in {root} ({type(exc).__name__}: {reason})"
        ) from None


def _load_mirror(source: str, revision: str | None, split: str | None, limit: int | None) -> datasets.Dataset:
    """One split of a parquet mirror (Hub id or local dir); only that split is downloaded and prepared."""
    import datasets

    names = datasets.get_dataset_split_names(source, revision=revision)
    chosen = choose_split(f"docci:{source}", split, names, DEFAULT_SPLIT)
    table = datasets.load_dataset(source, split=chosen, revision=revision)
    return _normalise(table, source, chosen, limit)


def _normalise(table: datasets.Dataset, source: str, chosen: str, limit: int | None) -> datasets.Dataset:
    """A parquet mirror's split in the pancap schema: ids sorted, limited, sizes from the image headers."""
    import datasets

    columns = set(table.column_names)
    id_column = next((c for c in ("example_id", "id", "image_id") if c in columns), None)
    text_column = next((c for c in ("description", "text", "caption") if c in columns), None)
    if "image" not in columns or id_column is None:
        raise DatasetError(
            f"docci:{source}: split {chosen!r} needs an 'image' and an 'example_id' column; "
            f"found: {', '.join(sorted(columns))}"
        )
    table = table.cast_column("image", datasets.Image(decode=False))
    ids = [str(value) for value in table[id_column]]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"docci:{source}: split {chosen!r} has duplicate example ids")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    if limit is not None:
        order = order[:limit]
    table = table.select(order)

    def to_record(row: dict) -> dict:
        image = row["image"]
        blob = image.get("bytes") or image.get("path")
        width, height = image_size(blob) if blob else (0, 0)
        text = row[text_column] if text_column else ""
        return {
            "example_id": str(row[id_column]),
            "image": image,
            "description": text or "",
            "width": width,
            "height": height,
            "split": chosen,
        }

    return table.map(to_record, remove_columns=table.column_names, features=features())
