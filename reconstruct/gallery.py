"""The gallery of a run's reconstructions: a folder of static pages that works on its own, for thousands of images.

``gallery/`` holds everything its pages show and nothing outside it is referenced, so it can be copied, zipped or
served as is:

- ``index.html``: the reconstruction scores per captioner (the leaderboard's words), what the panels and numbers
  mean, the page list, and one row per image with its numbers, sortable so that the worst images come first;
- ``page-1.html`` ...: ``page_size`` images each, with previous/next links, page numbers and the left/right arrow
  keys. Per image: the original with the ranks of every row that redraws nothing (a retriever's image->description
  and description->image ranks); per captioner its numbers (c2d/d2c retrieval rank of its caption, redraw cosine,
  boxes re-found in redraw), its layout (the caption's boxes drawn over the original, in the colours its caption
  text marks the same phrases with; left out when the caption has no box), the redraw, and the caption text;
- ``thumbs/`` (JPEG, long side ``THUMB_SIDE``; a source no larger is its own thumbnail) and ``full/`` (the
  full-size file, hard-linked where the file system allows, else copied), named by a key of their source's size and
  modification time, so a rerun makes only what is new and a changed source gets a new name; ``media.json`` maps
  each full-size file to its thumbnail and the thumbnail's size;
- ``grid.png``: the first ``grid_images`` images as one picture (original, then layout and redraw per captioner),
  for a slide or a quick look without a browser.

Images load lazily (``loading="lazy"`` with their sizes set, so the page does not jump). Pages come from jinja2
templates (``reconstruct/templates/``, autoescaped). Per-image numbers are read from the run folder when the
stages wrote them (``reconstruction.json``: ``captioners[NAME]["per_image"]``; ``retrieval/NAME.ranks.json`` of every
row of ``results.json``) and shown as "–" otherwise. Files are written atomically; a page whose text has not changed is not rewritten.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import file_name, key, read_json, write_if_changed, write_json
from pancap_retrieval.directions import CAPTION_TO_DESCRIPTION, DESCRIPTION_TO_CAPTION, DIRECTIONS, of
from pancap_retrieval.errors import PancapError
from pancap_retrieval.leaderboard import (
    BOXES_REFOUND_IN_REDRAW,
    RECONSTRUCTION_METRICS,
    REDRAW_COSINE,
    UNITS_NOTE,
    Cell,
    confidence_level,
    table,
)
from pancap_retrieval.results import read_results
from pancap_retrieval.runs import RESULTS_FILE as RUN_RESULTS_FILE
from pancap_retrieval.runs import ranks_file, retrieval_dirs
from reconstruct.drawing import hex_colour, ink, palette
from reconstruct.run import RESULTS_FILE, read_layouts

log = logging.getLogger(__name__)

THUMB_SIDE = 256
THUMB_VERSION = 1  # bumped when thumbnails are made differently, so that a rerun makes them again
PAGE_SIZE = 50
NO_VALUE = "–"


class GalleryError(PancapError):
    """A run folder has nothing a gallery can show."""


@dataclass
class Picture:
    """An image of the gallery: its thumbnail and full-size file (paths relative to ``gallery/``)."""

    thumb: str
    full: str
    width: int
    height: int


@dataclass
class Column:
    """One captioner's view of one image: its numbers, its boxes on the original (box ``i`` in ``palette(n)[i]``),
    its redraw and its caption text cut into segments, the phrases of its boxes marked."""

    captioner: str
    numbers: list[tuple[str, str]]
    source_boxes: list[list[float]] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    boxes: list[dict[str, Any]] = field(default_factory=list)
    caption: list[dict[str, Any]] = field(default_factory=list)
    unplaced: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    redraw_file: str | None = None
    redraw: Picture | None = None


@dataclass
class RankedSystem:
    """A results row with no redraws (a retriever): its per-image ranks, shown beside each original."""

    name: str
    kind: str
    ranks: dict[str, dict[str, int]]  # number label ("i2d rank") -> {image id: rank}


@dataclass
class Card:
    """One image and what each captioner made of it, with the ranks of the rows that redraw nothing."""

    example_id: str
    anchor: str
    page: int
    columns: list[Column]
    original_file: str | None = None
    original: Picture | None = None
    ranks: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (system, [(label, value)])


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 box``, ``2 boxes``.

    >>> plural(1, "box", "boxes"), plural(0, "image")
    ('1 box', '0 images')
    """
    return f"{n} {word if n == 1 else (words or word + 's')}"


# ---------------------------------------------------------------- what the run folder holds


def _captioners(run_dir: Path, reconstruction: dict[str, Any]) -> list[tuple[str, Path]]:
    """(name, folder) of each captioner with redraws, in the order of reconstruction.json, then the others."""
    folders = {p.name: p for p in sorted((run_dir / "images").glob("*")) if (p / "layouts.jsonl").is_file()}
    ordered = [
        (name, folders.pop(file_name(name)))
        for name in reconstruction.get("captioners", {})
        if file_name(name) in folders
    ]
    return ordered + sorted(folders.items())


# The directions whose per-image ranks a caption's numbers show.
RANKED = (CAPTION_TO_DESCRIPTION, DESCRIPTION_TO_CAPTION)


def _ranks(run_dir: Path, captioner: str) -> dict[str, dict[str, int]]:
    """``{direction name: {id: rank}}`` of the run's retrieval (the first embedder's with several)."""
    for folder in retrieval_dirs(run_dir):
        ranks = read_json(ranks_file(folder, captioner))
        if isinstance(ranks, dict):
            return {d.name: of(ranks, d) or {} for d in RANKED}
    return {d.name: {} for d in RANKED}


def ranked_systems(run_dir: Path, redrawn: set[str]) -> list[RankedSystem]:
    """Every row of the run's results that redraws nothing and has a ranks file (a retriever, or a captioner left
    out of the reconstruction), in results order, from the first retrieval folder that has results."""
    folder = next((f for f in retrieval_dirs(run_dir) if (f.parent / RUN_RESULTS_FILE).is_file()), None)
    if folder is None:
        return []
    systems = []
    for row in read_results(folder.parent).get("rows", []):
        name = str(row.get("system"))
        ranks = read_json(ranks_file(folder, name)) if name not in redrawn else None
        if isinstance(ranks, dict):
            systems.append(RankedSystem(name, str(row.get("kind")), _rank_columns(ranks)))
    return systems


def _rank_columns(ranks: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{"i2d rank": {id: rank}}`` of a ranks file, in direction order; per-description lists left out."""
    columns = {}
    for d in DIRECTIONS:
        found = of(ranks, d)
        if isinstance(found, dict):
            columns[f"{d.label} rank"] = found
    return columns


def _rank_numbers(system: RankedSystem, example_id: str) -> list[tuple[str, str]]:
    return [(label, _shown(_rank_cell(ranks.get(example_id)))) for label, ranks in system.ranks.items()]


def _rank_cell(rank: Any) -> Cell | None:
    return Cell(int(rank)) if isinstance(rank, (int, float)) else None


def _numbers(per_image: dict[str, Any], ranks: dict[str, dict[str, int]], example_id: str) -> list[Any]:
    """The per-image numbers of one caption, as :class:`Cell` or None: ranks, redraw cosine, boxes re-found."""
    values = per_image.get(example_id) or {}
    out: list[Any] = []
    for direction in RANKED:
        out.append(_rank_cell(ranks[direction.name].get(example_id)))
    cosine, refound = values.get("cosine"), values.get("boxes_refound")
    out.append(Cell(float(cosine)) if isinstance(cosine, (int, float)) else None)
    out.append(Cell(float(refound), percent=True) if isinstance(refound, (int, float)) else None)
    return out


NUMBER_LABELS = (*(f"{d.label} rank" for d in RANKED), REDRAW_COSINE.label, BOXES_REFOUND_IN_REDRAW.label)
# The first click on a number's column sorts its worst images first.
WORST_FIRST = ("desc", "desc", "asc", "asc")


def _shown(value: Cell | None) -> str:
    if value is None:
        return NO_VALUE
    return value.value_text() + ("%" if value.percent else "")


# ---------------------------------------------------------------- caption text and boxes


def highlight(text: str, phrases: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """``text`` cut into segments, the phrase of box ``i`` marked where it occurs (searched in order, then
    anywhere); boxes whose phrase is a phrase already marked join its mark. Returns the segments
    (``{"text", "boxes"}``) and the boxes whose phrase is not in the text.

    >>> segments, missing = highlight("A dog and a cat.", ["a cat", "A dog", "a bird"])
    >>> [(s["text"], s["boxes"]) for s in segments], missing
    ([('A dog', [1]), (' and ', []), ('a cat', [0]), ('.', [])], [2])
    """
    lower = text.lower()
    marks: list[tuple[int, int, list[int]]] = []
    missing: list[int] = []
    cursor = 0
    for i, phrase in enumerate(phrases):
        wanted = phrase.lower().strip()
        same = next((m for m in marks if lower[m[0] : m[1]] == wanted), None)
        if not wanted:
            missing.append(i)
            continue
        start = _free(lower, wanted, cursor, marks)
        if start < 0:
            start = _free(lower, wanted, 0, marks)
        if start >= 0:
            marks.append((start, start + len(wanted), [i]))
            cursor = start + len(wanted)
        elif same is not None:
            same[2].append(i)
        else:
            missing.append(i)
    segments: list[dict[str, Any]] = []
    position = 0
    for start, end, boxes in sorted(marks):
        if start > position:
            segments.append({"text": text[position:start], "boxes": []})
        segments.append({"text": text[start:end], "boxes": boxes})
        position = end
    if position < len(text):
        segments.append({"text": text[position:], "boxes": []})
    return segments, missing


def _free(lower: str, wanted: str, start: int, marks: list[tuple[int, int, list[int]]]) -> int:
    """The first occurrence of ``wanted`` from ``start`` that overlaps no mark, or -1."""
    position = lower.find(wanted, start)
    while position >= 0:
        if all(position >= end or position + len(wanted) <= begin for begin, end, _ in marks):
            return position
        position = lower.find(wanted, position + 1)
    return -1


def _column(captioner: str, entry: dict[str, Any] | None, numbers: list[Any]) -> Column:
    """The column of one captioner for one image: numbers, boxes over the original, caption segments."""
    shown = [(label, _shown(value)) for label, value in zip(NUMBER_LABELS, numbers)]
    if entry is None:
        return Column(captioner, shown, note="not redrawn (see the skipped counts in reconstruction.json)")
    layout = entry.get("layout") or {}
    phrases = list(layout.get("phrases") or [])
    boxes = list(layout.get("source_boxes") or [])
    colours = palette(len(boxes))
    drawn = []
    for i in sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])):
        x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in boxes[i])
        drawn.append(
            {
                "style": f"left:{100 * x1:.2f}%;top:{100 * y1:.2f}%;width:{100 * (x2 - x1):.2f}%;"
                f"height:{100 * (y2 - y1):.2f}%;--c:{hex_colour(colours[i])};--ink:{hex_colour(ink(colours[i]))}",
                "label": phrases[i] if i < len(phrases) else "",
            }
        )
    segments, missing = highlight(" ".join(str(layout.get("text") or "").split()), phrases)
    for segment in segments:
        segment["colours"] = [hex_colour(colours[i]) for i in segment["boxes"]]
    unplaced = [{"label": phrases[i], "colour": hex_colour(colours[i])} for i in missing if i < len(phrases)]
    note = plural(len(boxes), "box", "boxes") if boxes else "no box in the caption: no layout panel"
    return Column(captioner, shown, boxes, phrases, drawn, segments, unplaced, note)


# ---------------------------------------------------------------- thumbnails and full-size files


class Media:
    """Thumbnails and full-size files inside ``gallery/``, named by a key of their source's size and mtime.

    A source no larger than a thumbnail is its own thumbnail. ``media.json`` maps each full-size file to its
    thumbnail and the thumbnail's size, so a rerun opens no image it has already made.
    """

    def __init__(self, gallery: Path) -> None:
        self.gallery = gallery
        known = read_json(gallery / "media.json")
        self.known: dict[str, list[Any]] = known if isinstance(known, dict) else {}
        self.used: dict[str, list[Any]] = {}
        self.jobs: dict[str, Path] = {}
        self.sizes: dict[str, int] = {}
        self.unreadable: list[str] = []
        self.repaired = 0

    def add(self, source: Path, group: str) -> str | None:
        """Plan the pictures of ``source``: the path of its full-size file in the gallery, or None without one."""
        try:
            stat = os.stat(source)
        except OSError:
            return None
        stem = f"{source.stem}.{key(stat.st_size, stat.st_mtime_ns, THUMB_SIDE, THUMB_VERSION, length=12)}"
        full = f"full/{group}/{stem}{source.suffix.lower()}"
        self.jobs[full] = source
        self.sizes[full] = stat.st_size
        return full

    def make(self, progress: bool) -> None:
        """Make what is missing, on a few threads (Pillow releases the GIL while it decodes and encodes)."""
        from tqdm.auto import tqdm

        todo = []
        for full in self.jobs:
            entry = self.known.get(full)
            if entry is not None and self._intact(full, entry):
                self.used[full] = entry
                continue
            if entry is not None:
                log.warning("gallery: %s or its thumbnail is missing or cut; made again", self.gallery / full)
                self.repaired += 1
            todo.append(full)
        folders = {str(Path(name).parent) for name in todo}
        for folder in folders | {folder.replace("full/", "thumbs/", 1) for folder in folders}:
            (self.gallery / folder).mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(todo), desc="gallery thumbnails", unit="img", disable=not progress or not todo)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for full, entry in zip(todo, pool.map(self._make, todo)):
                if entry is None:
                    self.unreadable.append(str(self.jobs[full]))
                else:
                    self.used[full] = entry
                bar.update()
        bar.close()

    def _intact(self, full: str, entry: list[Any]) -> bool:
        """Whether the full-size file has its source's size and the thumbnail the size it was written with (an
        entry of an older gallery without it: any size but 0)."""
        thumb_size = entry[3] if len(entry) > 3 else None
        return _size(self.gallery / full) == self.sizes[full] and (
            _size(self.gallery / entry[0]) == thumb_size if thumb_size is not None else _size(self.gallery / entry[0])
        )

    def _make(self, full: str) -> list[Any] | None:
        """[thumbnail path, width, height, thumbnail bytes] of one source, its files written; None when it does
        not decode."""
        from PIL import Image

        source = self.jobs[full]
        try:
            with Image.open(source) as image:
                image.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
                small = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("gallery: %s is unreadable (%s); it is shown as missing", source, exc)
            return None
        _replace(self.gallery / full, lambda temporary: _link_or_copy(source, temporary))
        if max(small.size) <= THUMB_SIDE:
            return [full, small.width, small.height, _size(self.gallery / full)]
        small.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=85)
        thumb = str(Path(full.replace("full/", "thumbs/", 1)).with_suffix(".jpg"))
        _replace(self.gallery / thumb, lambda temporary: temporary.write_bytes(buffer.getvalue()))
        return [thumb, small.width, small.height, len(buffer.getvalue())]

    def picture(self, full: str | None) -> Picture | None:
        entry = self.used.get(full) if full is not None else None
        return Picture(entry[0], full, entry[1], entry[2]) if entry and full else None

    def finish(self) -> None:
        """Record what was made; delete the files no page shows any more (old keys, removed images)."""
        if self.used == self.known:
            return  # nothing new was made, so nothing became stale since the last gallery
        write_json(self.gallery / "media.json", self.used)
        keep = {*self.used, *(entry[0] for entry in self.used.values())}
        for folder in ("thumbs", "full"):
            for path in (self.gallery / folder).rglob("*"):
                if path.is_file() and path.relative_to(self.gallery).as_posix() not in keep:
                    path.unlink()


def _size(path: Path) -> int:
    """The size of ``path`` in bytes; 0 when it is missing."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _replace(target: Path, write: Callable[[Path], Any]) -> None:
    """Make ``target`` whole or not at all: ``write`` fills a temporary file beside it, which is renamed over it.

    Unlike :func:`~pancap_retrieval.artifacts.atomic_write` there is no fsync: these files are made again from
    their sources whenever one is missing or empty, and an fsync per thumbnail costs more than making it.
    """
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no bytes copied), or a copy where the file system has no links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ---------------------------------------------------------------- pages


def _pager(page: int, pages: int) -> list[int | None]:
    """Page numbers to link: the first, the last and two either side of ``page``; None is a gap.

    >>> _pager(6, 12)
    [1, None, 4, 5, 6, 7, 8, None, 12]
    """
    wanted = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    out: list[int | None] = []
    for number in wanted:
        if out and number - (out[-1] or 0) > 1:
            out.append(None)
        out.append(number)
    return out


def _render(name: str, **context: Any) -> str:
    from pancap_retrieval.pages import render

    return render(name, ("reconstruct", "pancap_retrieval"), **context)


def _summary(run_dir: Path, reconstruction: dict[str, Any]) -> dict[str, Any]:
    """The scores per captioner (retrieval R@1 when the run has them), with the leaderboard's words and format."""
    results = read_results(run_dir) if (run_dir / RUN_RESULTS_FILE).is_file() else {}
    rows = results.get("rows", [])
    columns, cells = table([{"rows": rows, "reconstruction": reconstruction}])
    wanted = {"system", "kind", "n", *(f"{d.label} R@1" for d in DIRECTIONS), *(m.label for m in RECONSTRUCTION_METRICS)}
    keep = [i for i, c in enumerate(columns) if c in wanted]
    body = [[row[i].text() if isinstance(row[i], Cell) else (row[i] or "") for i in keep] for row in cells]
    note = UNITS_NOTE.format(level=confidence_level([{"rows": rows}]))
    return {"columns": [columns[i] for i in keep], "rows": body, "note": note}


def write_gallery(
    run_dir: str | Path,
    *,
    page_size: int = PAGE_SIZE,
    max_images: int | None = None,
    grid_images: int = 6,
    progress: bool = True,
    report: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/gallery/`` (see the module docstring) and return the path of its ``index.html``.

    A picture whose file was cut or removed since it was made is made again, named in a warning and counted in
    ``report["repaired"]``; leftover temp files of a killed gallery are removed by the run lock's holder."""
    run_dir = Path(run_dir)
    if page_size < 1:
        raise GalleryError(f"page_size must be >= 1, got {page_size}")
    reconstruction = read_json(run_dir / RESULTS_FILE)
    reconstruction = reconstruction if isinstance(reconstruction, dict) else {}
    captioners = _captioners(run_dir, reconstruction)
    if not captioners:
        raise GalleryError(
            f"no redraws under {run_dir / 'images'}: run `pancap reconstruct` or a suite with reconstruction first"
        )
    gallery = run_dir / "gallery"
    media = Media(gallery)
    ranked = ranked_systems(run_dir, {name for name, _ in captioners})
    cards = _cards(run_dir, captioners, reconstruction, media, page_size, max_images)
    for card in cards:
        card.ranks = [(system.name, _rank_numbers(system, card.example_id)) for system in ranked]
    media.make(progress)
    for card in cards:
        card.original = media.picture(card.original_file)
        for column in card.columns:
            column.redraw = media.picture(column.redraw_file)
    pages = max(1, -(-len(cards) // page_size))
    common = {
        "run": run_dir.name,
        "redrawer": str((reconstruction.get("redrawer") or {}).get("name") or "?"),
        "pages": pages,
        "page_size": page_size,
        "captioners": [name for name, _ in captioners],
    }
    _write_pages(gallery, cards, common)
    index = _render(
        "gallery_index.html.j2", cards=cards, summary=_summary(run_dir, reconstruction), labels=NUMBER_LABELS,
        groups=_groups(common["captioners"], ranked), rank_legend=_rank_legend(ranked),
        unreadable=media.unreadable, grid=grid_images > 0, **common,
    )  # fmt: skip
    write_if_changed(gallery / "index.html", index)
    if grid_images > 0:
        write_if_changed(gallery / "grid.png", _grid(cards[:grid_images], gallery, captioners))
    media.finish()
    if report is not None:
        report["repaired"] = media.repaired
    return gallery / "index.html"


def _groups(captioners: list[str], ranked: list[RankedSystem]) -> list[dict[str, Any]]:
    """The column groups of the index's image table, each column with its sort index (the image and page columns
    come first) and the order of its first click (worst first)."""
    groups = [(name, list(zip(NUMBER_LABELS, WORST_FIRST))) for name in captioners]
    groups += [(system.name, [(label, "desc") for label in system.ranks]) for system in ranked]
    out, index = [], 2
    for name, columns in groups:
        out.append({"name": name, "columns": [{"label": label, "index": index + i, "first": first}
                                              for i, (label, first) in enumerate(columns)]})  # fmt: skip
        index += len(columns)
    return out


def _rank_legend(ranked: list[RankedSystem]) -> list[tuple[str, str]]:
    """(label, direction title) of each rank column the rows without redraws show."""
    shown = {label for system in ranked for label in system.ranks}
    return [(f"{d.label} rank", d.title) for d in DIRECTIONS if f"{d.label} rank" in shown]


def _write_pages(gallery: Path, cards: list[Card], common: dict[str, Any]) -> None:
    """``page-1.html`` ... for the cards; pages of an earlier, longer gallery are removed."""
    pages, size = common["pages"], common["page_size"]
    for page in range(1, pages + 1):
        chunk = cards[(page - 1) * size : page * size]
        html = _render("gallery_page.html.j2", page=page, pager=_pager(page, pages), cards=chunk, **common)
        write_if_changed(gallery / f"page-{page}.html", html)
    for stale in gallery.glob("page-*.html"):
        number = stale.stem.removeprefix("page-")
        if not number.isdigit() or not 1 <= int(number) <= pages:
            stale.unlink()
    if (gallery / "overlays").is_dir():  # layout pictures of the earlier one-page gallery
        shutil.rmtree(gallery / "overlays")


def _cards(
    run_dir: Path,
    captioners: list[tuple[str, Path]],
    reconstruction: dict[str, Any],
    media: Media,
    page_size: int,
    max_images: int | None,
) -> list[Card]:
    """One card per image (every id any captioner redrew), its pictures planned in ``media``."""
    layouts = {name: read_layouts(folder / "layouts.jsonl") for name, folder in captioners}
    ids = sorted({example_id for entries in layouts.values() for example_id in entries})[:max_images]
    scores = reconstruction.get("captioners") or {}
    per_image = {name: (scores.get(name) or {}).get("per_image") or {} for name, _ in captioners}
    ranks = {name: _ranks(run_dir, name) for name, _ in captioners}
    cards = []
    for n, example_id in enumerate(ids):
        stem = file_name(example_id)
        columns = []
        for name, folder in captioners:
            entry = layouts[name].get(example_id)
            column = _column(name, entry, _numbers(per_image[name], ranks[name], example_id))
            if entry is not None:
                column.redraw_file = media.add(folder / str(entry.get("image")), f"redraws/{folder.name}")
            columns.append(column)
        original = media.add(run_dir / "originals" / f"{stem}.png", "originals")
        cards.append(Card(example_id, stem, n // page_size + 1, columns, original))
    return cards


def _grid(cards: list[Card], gallery: Path, captioners: list[tuple[str, Path]]) -> bytes:
    """A PNG of the first images: the original, then per captioner its layout (boxes drawn; no column for a
    captioner without boxes in these images) and its redraw."""
    import io

    from PIL import Image, ImageDraw

    from reconstruct.drawing import draw_boxes, font

    with_boxes = [any(card.columns[c].source_boxes for card in cards) for c in range(len(captioners))]
    titles = ["original"]
    for (name, _), boxes in zip(captioners, with_boxes):
        titles += [f"{name}: layout"] * boxes + [f"{name}: redraw"]
    tile, header = 200, 28
    sheet = Image.new("RGB", (tile * len(titles), header + tile * max(1, len(cards))), "white")
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(titles):
        draw.text((c * tile + 6, 7), title[:30], fill=(30, 30, 30), font=font(13))
    for r, card in enumerate(cards):
        original = _thumbnail(gallery, card.original)
        tiles = [original]
        for column, boxes in zip(card.columns, with_boxes):
            if boxes:
                drawn = original is not None and column.source_boxes
                tiles.append(draw_boxes(original, column.source_boxes, column.phrases) if drawn else None)
            tiles.append(_thumbnail(gallery, column.redraw))
        for c, picture in enumerate(tiles):
            if picture is not None:
                picture.thumbnail((tile - 8, tile - 8))
                sheet.paste(picture, (c * tile + 4, header + r * tile + 4))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _thumbnail(gallery: Path, picture: Picture | None) -> Any:
    """The thumbnail of ``picture`` as an RGB PIL image, or None."""
    if picture is None:
        return None
    from PIL import Image

    try:
        with Image.open(gallery / picture.thumb) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:  # a file broken since it was checked: left blank, never a crash
        log.warning("gallery: %s is unreadable (%s); left out of grid.png", gallery / picture.thumb, exc)
        return None
