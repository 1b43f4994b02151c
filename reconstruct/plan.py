"""The plan of one captioner's reconstruction: its captions turned into layouts, and which redraws on disk are
still valid for them (a redraw is reused only when its key — redrawer and options, seed, and the layout made from
the caption — matches and its PNG has the size it was written with).

    images/{captioner}/layouts.jsonl   one line per redraw: the layout, its seed, the redrawer, its key, bytes
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.artifacts import JsonlStore, file_name, key
from reconstruct.layout import Layout, LayoutError, layout_from_record
from reconstruct.originals import Originals
from reconstruct.redrawers import example_seed

if TYPE_CHECKING:
    from pancap_retrieval.captions.store import CaptionRecord

log = logging.getLogger(__name__)


def read_layouts(path: Path) -> dict[str, dict[str, Any]]:
    """The last line per example_id of a layouts file; a torn last line is dropped."""
    return JsonlStore(path).latest()


@dataclass
class Plan:
    """What one captioner's reconstruction will do: layouts kept, redraws to make, skips with reasons."""

    captioner: str
    folder: Path
    kept: list[tuple[str, Layout, str]] = field(default_factory=list)  # (id, layout, redraw key)
    todo: list[tuple[Layout, int, str]] = field(default_factory=list)  # (layout, seed, redraw key)
    skipped: dict[str, int] = field(
        default_factory=lambda: {"failed_caption": 0, "no_image": 0, "unreadable_image": 0, "empty_caption": 0}
    )
    skipped_ids: dict[str, str] = field(default_factory=dict)
    records: int = 0
    repaired: int = 0  # redraws on record whose file was missing or cut, drawn again

    def skip(self, example_id: str, reason: str, detail: str | None = None) -> None:
        self.skipped[reason] += 1
        self.skipped_ids[example_id] = detail or reason


def plan(
    captioner: str,
    records: Sequence[CaptionRecord],
    *,
    run_dir: Path,
    originals: Originals,
    layout_options: Mapping[str, Any],
    signature: str,
    seed: int,
    canvas_mode: str,
    progress: bool = False,
    dialect: str = "auto",
    recorded: Mapping[str, str] | None = None,
) -> Plan:
    """Layouts of one captioner's captions (boxes read in ``dialect`` on each original's size), and which redraws
    on disk are still valid for them. With ``progress`` a bar counts the records when this takes over 2 s (the
    first captioner reads every original). ``recorded``: id -> redraw key of the redraws the last results showed;
    one of them whose file or layouts line is missing or cut is drawn again and counted in ``repaired``."""
    from tqdm.auto import tqdm

    result = Plan(captioner, run_dir / "images" / file_name(captioner))
    done = read_layouts(result.folder / "layouts.jsonl")
    seen: set[str] = set()
    bar = tqdm(records, desc=f"layouts {captioner}", unit="img", delay=2, disable=not progress)
    for record in bar:
        example_id = record.example_id
        if example_id in seen:
            continue
        seen.add(example_id)
        if record.status != "ok" or not isinstance(record.caption, str):
            result.skip(example_id, "failed_caption")
            continue
        if example_id not in originals.sources:
            result.skip(example_id, "no_image")
            continue
        size = originals.size(example_id)
        if size is None:
            result.skip(example_id, "unreadable_image")
            continue
        try:
            layout = layout_from_record(
                record, image_size=size, dialect=dialect, mode=canvas_mode, **layout_options
            )
        except LayoutError as exc:
            result.skip(example_id, "empty_caption", str(exc))
            continue
        image_seed = example_seed(seed, example_id)
        redraw_key = key(signature, image_seed, layout.to_dict())
        previous = done.get(example_id)
        if previous is not None and previous.get("key") == redraw_key and redraw_intact(result.folder, previous):
            result.kept.append((example_id, layout, redraw_key))
            continue
        if (recorded or {}).get(example_id) == redraw_key:
            log.warning("%s: the redraw of %s is missing or cut; drawn again", result.folder, example_id)
            result.repaired += 1
        result.todo.append((layout, image_seed, redraw_key))
        result.kept.append((example_id, layout, redraw_key))
    result.records = len(seen)
    return result


def redraw_intact(folder: Path, entry: Mapping[str, Any]) -> bool:
    """Whether the redraw a layouts line names is there, whole: the size it was written with (a line of an older
    run without one: the file decodes)."""
    from pancap_retrieval.artifacts import image_is_whole

    png = folder / str(entry.get("image"))
    try:
        size = png.stat().st_size
    except OSError:
        return False
    if "bytes" in entry:
        return size == entry["bytes"]
    return size > 0 and image_is_whole(png)
