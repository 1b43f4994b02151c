"""Any Hugging Face dataset as a pancap dataset: ``hf:OWNER/NAME@REVISION`` (the Hub, pinned) or ``hf:DIR`` (local).

A local ``DIR`` is a ``save_to_disk`` folder (read with ``datasets.load_from_disk``, memory-mapped), a folder whose
``README.md`` declares ``configs`` (read by ``datasets.load_dataset``, as a dataset written by ``pancap export``),
or a folder of parquet, arrow, JSON-lines or CSV files (split names from the file names, as ``datasets`` infers
them: ``test.jsonl``, ``data/test-00000-of-00001.parquet``...), or an image folder with ``metadata.jsonl``.

Options (a suite's ``dataset:`` keys, or ``--dataset-option KEY=VALUE``): ``config``, ``split`` (default: the only
split, else ``test``), ``columns: {image, text, id}`` and ``images`` (a folder of images for sets that ship
descriptions only). Without ``columns`` the usual names are tried (:data:`IMAGE_COLUMNS`, :data:`TEXT_COLUMNS`,
:data:`ID_COLUMNS`). Images may be ``Image`` features, bytes, paths relative to the set (or to ``images``), or
absent when ``images`` holds ``ID.jpg`` (any image extension) for each id. Descriptions may be a string or a list
of strings; rows that share an id are one image with all their descriptions. A set with more than one description
for some image gets a ``descriptions`` column (all of them, in order) beside ``description`` (the first).

Rows come out as every loader's (:mod:`pancap_retrieval.data.records`), sorted by ``example_id``; ``limit=N``
keeps the first N ids of that order. The data is read in two streamed passes: the ids and texts first (a parquet
set reads those columns only), then the images of the chosen rows only, stopping after the last of them; the
result is written to the ``datasets`` cache as Arrow and memory-mapped, so neither a large set nor a large limit
is held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.data.meta import DatasetMeta
from pancap_retrieval.data.records import (
    DESCRIPTIONS_COLUMN,
    check_limit,
    features,
    image_size,
    is_hub_id,
)
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "img", "image_path", "image_file", "file_name", "path")
TEXT_COLUMNS = ("description", "descriptions", "caption", "captions", "text", "texts", "sentences")
ID_COLUMNS = ("example_id", "id", "image_id", "key", "__key__")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif")
DATA_EXTENSIONS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv"}
META = DatasetMeta(
    name="hf",
    loader="pancap_retrieval.data.hf:load_hf",
    help="any Hugging Face dataset: hf:OWNER/NAME@REVISION (the Hub, pinned) or hf:DIR (save_to_disk, "
    "parquet, arrow, jsonl or csv files, an image folder); columns and several descriptions per image",
    usage="`hf:OWNER/NAME@REVISION` or `hf:DIR` (any Hugging Face dataset: the Hub, pinned, or a save_to_disk / "
    "parquet / jsonl folder; options config, image, text, id, images=DIR via --dataset-option KEY=VALUE)",
    spec="hf:OWNER/NAME@REVISION | hf:DIR",
    source="the Hub at a pinned revision, or a local folder, read by the datasets library",
    splits_note="(the set's own; default: the only one, else test)",
    revisioned=True,
    hub_options=True,
)
# The options of the kinds whose record has ``hub_options``; the others refuse them.
LOADER_OPTIONS = ("config", "columns", "images", "definition")
OPTION_KEYS = ("config", "split", "revision", "image", "text", "id", "images", "definition")


def check_loader_options(kind: str, fields: Mapping[str, Any]) -> None:
    """Options of ``hf:`` datasets given to another kind are an error that names them."""
    from pancap_retrieval.data import DATASETS

    given = [name for name in LOADER_OPTIONS if fields.get(name) is not None]
    if given and not DATASETS.meta(kind).hub_options:
        takers = [meta.name for meta in DATASETS.metas() if meta.hub_options and meta.name != META.name]
        raise DatasetError(
            f"dataset {kind!r} takes no {', '.join(given)}: those options are for {META.name}:, {', '.join(takers)}"
        )


def spec_fields(name: str, items: Iterable[str]) -> dict[str, Any]:
    """A suite's ``dataset:`` mapping from a spec and ``KEY=VALUE`` options (``--dataset-option``), checked."""
    fields: dict[str, Any] = {"name": name}
    columns: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise DatasetError(f"dataset option {item!r} is not KEY=VALUE (e.g. --dataset-option config=DOCCI_Test)")
        if key not in OPTION_KEYS:
            raise DatasetError(f"unknown dataset option {key!r}; known: {', '.join(OPTION_KEYS)}")
        target = columns if key in ("image", "text", "id") else fields
        if key in target:
            raise DatasetError(f"dataset option {key!r} is given twice; keep one")
        target[key] = value.strip()
    if columns:
        fields["columns"] = columns
    return fields


# ---------------------------------------------------------------- opening a source


@dataclass
class Opened:
    """One split of a source, ready to read: the table, and what names the data for the cache."""

    label: str
    table: Any  # datasets.Dataset (memory-mapped) or datasets.IterableDataset (streamed)
    split: str
    root: Path | None = None  # folder that relative image paths are read from
    identity: list[Any] = field(default_factory=list)
    # a parquet source: the split again with only these columns read (None: select them from the table)
    projected: Callable[[list[str]], Any] | None = None
    license: str | None = None


def load_hf(
    arg: str | None,
    split: str | None = None,
    limit: int | None = None,
    revision: str | None = None,
    *,
    config: str | None = None,
    columns: Mapping[str, str] | None = None,
    images: str | None = None,
    definition: str | None = None,
) -> datasets.Dataset:
    """A Hub dataset (pinned ``revision``) or a local folder as a pancap dataset; see the module help."""
    check_limit(limit)
    if definition is not None:
        raise DatasetError("hf: takes no definition (that option chooses between a preset's definitions)")
    if not arg:
        raise DatasetError("hf needs a dataset: hf:OWNER/NAME@REVISION (the Hub) or hf:DIR (a local folder)")
    opened = open_source(arg, split, revision, config)
    return to_pancap(opened, limit, columns or {}, images)


def open_source(arg: str, split: str | None, revision: str | None, config: str | None) -> Opened:
    """The asked split of ``arg`` (a local folder, or a Hub id with its revision), or a one-line error."""
    path = Path(arg).expanduser()
    label = f"hf:{arg}"
    if path.exists():
        if revision is not None:
            raise DatasetError(f"{label}: {path} is a local folder; a revision (@{revision}) pins a Hub dataset only")
        if not path.is_dir():
            raise DatasetError(f"{label}: not a folder: {path}; hf:DIR takes a dataset folder")
        return _open_local(path.resolve(), label, split, config)
    if not is_hub_id(arg):
        raise DatasetError(f"{label}: no such folder: {path}")
    if revision is None:
        raise DatasetError(
            f"{label}: a Hub dataset must be pinned: hf:{arg}@REVISION (a commit, tag or branch), so the run "
            "names the data it read"
        )
    kwargs = {"name": config, "revision": revision}
    opened = _streamed(arg, kwargs, f"{label}@{revision}", split)
    opened.identity = [arg, revision, config, opened.split]
    return opened


def _open_local(root: Path, label: str, split: str | None, config: str | None) -> Opened:
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        if config is not None:
            raise DatasetError(f"{label}: a save_to_disk folder has no configs (asked for {config!r}); remove it")
        return _open_disk(root, label, split)
    builder, kwargs = _local_builder(root, label)
    if config is not None:
        if builder != str(root):
            raise DatasetError(
                f"{label}: config {config!r} asked, but the folder declares no configs (a README.md with "
                "`configs:`); remove it"
            )
        kwargs["name"] = config
    opened = _streamed(builder, kwargs, label, split)
    opened.root = root
    data_files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p, root))
    opened.identity = [str(root), config, opened.split, [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in data_files]]
    return opened


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _local_builder(root: Path, label: str) -> tuple[str, dict[str, Any]]:
    """What ``datasets.load_dataset`` is given for a local folder: the folder itself (configs in its README, or
    an image folder) or the packaged builder of its data files."""
    readme = root / "README.md"
    if readme.is_file() and "\nconfigs:" in readme.read_text(encoding="utf-8", errors="replace"):
        return str(root), {}
    found: dict[str, int] = {}
    for path in root.rglob("*"):
        suffix = path.suffix.lower()
        if suffix in DATA_EXTENSIONS and path.name not in ("metadata.jsonl", "metadata.csv") and not _hidden(path, root):
            found[DATA_EXTENSIONS[suffix]] = found.get(DATA_EXTENSIONS[suffix], 0) + 1
    for builder in ("parquet", "arrow", "json", "csv"):
        if found.get(builder):
            return builder, {"data_dir": str(root)}
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.rglob("*")):
        return str(root), {}  # an image folder, with metadata.jsonl for its descriptions
    raise DatasetError(
        f"{label}: no data in {root}: expected a save_to_disk folder, parquet/arrow/jsonl/csv files or images"
    )


def _streamed(source: str, kwargs: dict[str, Any], label: str, split: str | None) -> Opened:
    """The asked split of a ``load_dataset`` source, streamed; parquet reads only the columns asked for."""
    import datasets

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    splits = guarded(label, kwargs, lambda: datasets.load_dataset(source, streaming=True, **kwargs))
    chosen = choose(label, split, list(splits))
    table = splits[chosen]

    def projected(names: list[str]) -> Any:
        """The split with only ``names`` read (parquet's ``columns``); None where the builder has no such option."""
        try:
            return datasets.load_dataset(source, split=chosen, streaming=True, columns=names, **kwargs)
        except (TypeError, ValueError):
            return None

    return Opened(label, table, chosen, projected=projected, license=_license(table))


def _license(table: Any) -> str | None:
    value = getattr(table.info, "license", None)
    return str(value) if value else None


def _open_disk(root: Path, label: str, split: str | None) -> Opened:
    import datasets

    loaded = guarded(label, {}, lambda: datasets.load_from_disk(str(root)))
    if isinstance(loaded, datasets.DatasetDict):
        chosen = choose(label, split, list(loaded))
        table = loaded[chosen]
    else:  # one Dataset: its recorded split, or the asked one
        recorded = str(loaded.split) if loaded.split is not None else None
        if recorded is not None and split is not None and split != recorded:
            raise DatasetError(f"{label} has no split {split!r}; known splits: {recorded}")
        chosen, table = recorded or split or "test", loaded
    identity = [str(root), chosen, table._fingerprint]
    return Opened(label, table, chosen, root=root, identity=identity, license=_license(table))


def choose(label: str, split: str | None, known: list[str]) -> str:
    """The asked split; by default the only one, else ``test``; anything else lists the known splits."""
    if split is None:
        if len(known) == 1:
            return known[0]
        if "test" in known:
            return "test"
        raise DatasetError(f"{label} has splits {', '.join(known)}: name one with split (--split)")
    if split not in known:
        raise DatasetError(f"{label} has no split {split!r}; known splits: {', '.join(known) or '(none)'}")
    return split


def guarded(label: str, kwargs: dict[str, Any], call: Callable[[], Any]) -> Any:
    """``call()``, with whatever ``datasets`` raises turned into one line that says the likely fix."""
    try:
        return call()
    except DatasetError:
        raise
    except Exception as exc:
        reason = " ".join((str(exc) or type(exc).__name__).split())[:400]
        hint = ""
        if kwargs.get("revision"):
            hint = (
                f"; revision {kwargs['revision']!r} must exist on the Hub, or in the local cache when offline "
                "(HF_HUB_OFFLINE=1); a local copy works as hf:DIR"
            )
        elif kwargs.get("name"):
            hint = f"; check config {kwargs['name']!r}"
        raise DatasetError(f"{label}: cannot open ({type(exc).__name__}: {reason}){hint}") from None


# ---------------------------------------------------------------- to pancap rows


def column_names(table: Any) -> list[str]:
    """The columns of a table, from its features or, when a stream does not know them, from its first row."""
    if table.features is not None:
        return list(table.features)
    first = next(iter(table), None)
    return list(first) if first is not None else []


@dataclass(frozen=True)
class Columns:
    """The resolved columns of a source: id (None: from image paths or row numbers), text (None: no
    descriptions), image (None: found by id in the images folder)."""

    id: str | None
    text: str | None
    image: str | None


def resolve_columns(label: str, names: list[str], asked: Mapping[str, str], images: Path | None) -> Columns:
    """The columns to read; a column named but absent is an error listing the set's columns."""
    for role, name in asked.items():
        if name not in names:
            raise DatasetError(
                f"{label}: no column {name!r} (columns.{role}); the set has columns: {', '.join(names) or '(none)'}"
            )

    def pick(role: str, usual: tuple[str, ...]) -> str | None:
        return asked.get(role) or next((name for name in usual if name in names), None)

    resolved = Columns(pick("id", ID_COLUMNS), pick("text", TEXT_COLUMNS), pick("image", IMAGE_COLUMNS))
    if resolved.image is None and images is None:
        raise DatasetError(
            f"{label}: no image column (looked for {', '.join(IMAGE_COLUMNS)}); the set has columns: "
            f"{', '.join(names)}; name it with columns.image (--dataset-option image=NAME) or give images=DIR"
        )
    if resolved.text is None:
        log.warning(
            "%s: no description column (looked for %s; columns: %s): every description is empty; name it with "
            "columns.text (--dataset-option text=NAME)",
            label,
            ", ".join(TEXT_COLUMNS),
            ", ".join(names),
        )
    return resolved


def texts_of(value: Any, label: str) -> list[str]:
    """The descriptions in one cell: a string, a list of strings, or nothing."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise DatasetError(f"{label}: a description cell must be a string or a list of strings, got {type(value).__name__}")


def _light_rows(opened: Opened, cols: Columns, path_ids: bool) -> Iterator[dict[str, Any]]:
    """Each row's id, texts and (for ids taken from image paths) image path, reading no image bytes where the
    format allows (a parquet set reads these columns only)."""
    import datasets

    names = [name for name in (cols.id, cols.text, cols.image if path_ids else None) if name]
    if not names:  # only the number of rows is needed: count them on the undecoded image column
        table = opened.table.select_columns([cols.image])
        if isinstance((table.features or {}).get(cols.image), datasets.Image):
            table = table.cast_column(cols.image, datasets.Image(decode=False))
        return _rows(table)
    projected = opened.projected(names) if opened.projected is not None else None
    return _rows(projected if projected is not None else opened.table.select_columns(names))


def _rows(table: Any) -> Iterator[dict[str, Any]]:
    """The rows of a table as dicts, a batch at a time for a memory-mapped one."""
    import datasets

    if isinstance(table, datasets.Dataset):
        for batch in table.iter(batch_size=1000):
            for values in zip(*batch.values()):
                yield dict(zip(batch, values))
    else:
        yield from table


def _is_string_column(table: Any, name: str) -> bool:
    import datasets

    feature = (table.features or {}).get(name)
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


@dataclass
class Plan:
    """What the second pass reads: the first source row of each chosen image, its id and descriptions."""

    rows: list[int]  # source rows to read, ascending
    ids: dict[int, str]
    texts: dict[str, list[str]]
    order: list[int]  # positions of the read rows in example_id order


def plan(opened: Opened, cols: Columns, limit: int | None) -> Plan:
    """Pass one: every row's id and texts; rows sharing an id are one image; the first ``limit`` ids in order."""
    path_ids = cols.id is None and cols.image is not None and _is_string_column(opened.table, cols.image)
    first: dict[str, int] = {}
    texts: dict[str, list[str]] = {}
    n = 0
    for n, row in enumerate(_light_rows(opened, cols, path_ids), start=1):
        if cols.id is not None:
            example_id = str(row[cols.id])
        elif path_ids:
            example_id = Path(str(row[cols.image])).with_suffix("").as_posix()
        else:
            example_id = str(n - 1)  # renumbered below, zero-padded
        first.setdefault(example_id, n - 1)
        texts.setdefault(example_id, []).extend(texts_of(row.get(cols.text), opened.label) if cols.text else [])
    if cols.id is None and not path_ids:
        width = len(str(max(n - 1, 0)))
        first = {f"{int(i):0{width}d}": row for i, row in first.items()}
        texts = {f"{int(i):0{width}d}": value for i, value in texts.items()}
    chosen = sorted(first)[:limit] if limit is not None else sorted(first)
    rows = sorted(first[example_id] for example_id in chosen)
    position = {row: i for i, row in enumerate(rows)}
    return Plan(
        rows=rows,
        ids={first[example_id]: example_id for example_id in chosen},
        texts={example_id: texts[example_id] for example_id in chosen},
        order=[position[first[example_id]] for example_id in chosen],
    )


def _image_cells(opened: Opened, cols: Columns, wanted: list[int]) -> Iterator[tuple[int, Any]]:
    """Pass two: (source row, image cell) of the wanted rows only, in source order, undecoded; stops after the last."""
    import datasets

    if not wanted:
        return
    table = opened.table.select_columns([cols.image])
    if isinstance(table.features.get(cols.image) if table.features else None, datasets.Image):
        table = table.cast_column(cols.image, datasets.Image(decode=False))
    if isinstance(table, datasets.Dataset):
        for row, example in zip(wanted, _rows(table.select(wanted))):
            yield row, example[cols.image]
        return
    targets = set(wanted)
    last = wanted[-1]
    for row, example in enumerate(table):
        if row in targets:
            yield row, example[cols.image]
        if row >= last:
            return


def image_cell(value: Any, example_id: str, opened: Opened, images: Path | None) -> dict[str, Any] | str:
    """An image cell of the source as pancap stores it: ``{"bytes", "path"}`` or a file path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return {"bytes": value["bytes"], "path": None}
        value = value.get("path")
    if isinstance(value, bytes | bytearray):
        return {"bytes": bytes(value), "path": None}
    if value is None:
        if images is None:
            raise DatasetError(f"{opened.label}: {example_id}: the row has no image; give images=DIR")
        return str(find_image(images, example_id))
    if not isinstance(value, str):
        raise DatasetError(f"{opened.label}: {example_id}: unexpected image value of type {type(value).__name__}")
    path = Path(value)
    if path.is_absolute():
        return str(path)
    base = images if images is not None else opened.root
    if base is None:
        raise DatasetError(
            f"{opened.label}: images are paths ({value!r}) relative to a folder this Hub set does not ship; "
            "give images=DIR"
        )
    found = base / path
    return str(found if found.suffix or found.exists() else find_image(base, path.as_posix()))


def find_image(folder: Path, name: str) -> Path:
    """``folder/name.EXT`` for the first image extension that exists (``folder/name`` when none does)."""
    for extension in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{name}{extension}", folder / f"{name}{extension.upper()}"):
            if candidate.is_file():
                return candidate
    return folder / name


def to_pancap(
    opened: Opened, limit: int | None, columns: Mapping[str, str], images: str | Path | None
) -> datasets.Dataset:
    """The pancap dataset of an opened split: the first ``limit`` images in id order, written to the cache."""
    import datasets

    from pancap_retrieval.artifacts import key

    folder = _images_folder(opened.label, images)
    cols = resolve_columns(opened.label, column_names(opened.table), columns, folder)
    chosen = plan(opened, cols, limit)
    if not chosen.rows:
        raise DatasetError(f"{opened.label}: split {opened.split!r} has no rows")
    multi = any(len(texts) > 1 for texts in chosen.texts.values())
    out_features = features()
    if multi:
        out_features[DESCRIPTIONS_COLUMN] = datasets.Sequence(datasets.Value("string"))

    def generate() -> Iterator[dict[str, Any]]:
        cells = _image_cells(opened, cols, chosen.rows) if cols.image else ((row, None) for row in chosen.rows)
        for row, cell in cells:
            example_id = chosen.ids[row]
            image = image_cell(cell, example_id, opened, folder)
            width, height = image_size(image["bytes"] if isinstance(image, dict) else image)
            texts = chosen.texts[example_id]
            record = {"example_id": example_id, "image": image, "description": texts[0] if texts else ""}
            record.update(width=width, height=height, split=opened.split)
            if multi:
                record[DESCRIPTIONS_COLUMN] = texts
            yield record

    fingerprint = key("pancap-hf", 1, opened.identity, limit, dict(columns), str(folder), multi, length=32)
    built = datasets.Dataset.from_generator(generate, features=out_features, fingerprint=fingerprint)
    if chosen.order != list(range(len(chosen.order))):
        built = built.select(chosen.order)
    _warn_unreadable(built, opened.label)
    if opened.license:
        built.info.license = opened.license
    return built


def _images_folder(label: str, images: str | Path | None) -> Path | None:
    if images is None:
        return None
    folder = Path(images).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{label}: images folder not found: {folder}")
    return folder.resolve()


def _warn_unreadable(dataset: datasets.Dataset, label: str) -> None:
    from pancap_retrieval.data.records import unreadable_ids

    unreadable = unreadable_ids(dataset)
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        log.warning("%s: %d image(s) cannot be read and are kept with size 0x0: %s", label, len(unreadable), shown)
