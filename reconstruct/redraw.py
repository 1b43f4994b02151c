"""Drawing a plan's redraws: each PNG written atomically before its layouts line, each rank its share.

    images/{captioner}/{file_name(id)}.png   the redraw
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.artifacts import JsonlStore, file_name, save_image
from pancap_retrieval.ranks import Ranks
from reconstruct.layout import COUNT_KEYS
from reconstruct.plan import Plan
from reconstruct.redrawers import get_redrawer

if TYPE_CHECKING:
    from reconstruct.redrawers.base import Redrawer


def redraw(planned: Plan, drawer: Redrawer, batch: int, progress: bool = True, ranks: Ranks | None = None) -> float:
    """Draw the planned redraws in batches; each PNG is written atomically, then its layouts line. Seconds.

    Under a launcher each rank draws its share into its own ``layouts.jsonl.rankR``, merged by rank 0 afterwards.
    """
    from tqdm.auto import tqdm

    ranks = ranks or Ranks()
    name = "layouts.jsonl" if ranks.world == 1 else f"layouts.jsonl.rank{ranks.rank}"
    layouts = JsonlStore(planned.folder / name)
    manifest = drawer.manifest()
    started = time.perf_counter()
    todo = ranks.share(planned.todo)
    progress = progress and ranks.main
    bar = tqdm(total=len(todo), desc=f"redraw {planned.captioner}", unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        images = drawer.redraw([layout for layout, _, _ in chunk], [s for _, s, _ in chunk])
        for (layout, image_seed, redraw_key), image in zip(chunk, images):
            name = file_name(layout.example_id)
            png = save_image(image, planned.folder / f"{name}.png")
            layouts.append(
                {
                    "example_id": layout.example_id,
                    "image": f"{name}.png",
                    "bytes": png.stat().st_size,
                    "seed": image_seed,
                    "redrawer": manifest.get("name"),
                    "key": redraw_key,
                    "layout": layout.to_dict(),
                }
            )
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - started
    ranks.barrier()
    if ranks.main:
        merge_rank_layouts(planned.folder)
    ranks.barrier()
    return seconds


def merge_rank_layouts(folder: Path) -> None:
    """Append the lines of every ``layouts.jsonl.rankR`` (a distributed run's, perhaps killed) to ``layouts.jsonl``."""
    store = JsonlStore(folder / "layouts.jsonl")
    for rank_file in sorted(folder.glob("layouts.jsonl.rank*")):
        store.append_many(list(JsonlStore(rank_file).read()))
        rank_file.unlink()


def redraw_entry(planned: Plan, seconds: float) -> dict[str, Any]:
    layouts = [layout for _, layout, _ in planned.kept]
    return {
        "records": planned.records,
        "redrawn": len(planned.todo),
        "reused": len(planned.kept) - len(planned.todo),
        "redraw_keys": {example_id: redraw_key for example_id, _, redraw_key in planned.kept},
        "skipped": planned.skipped,
        "skipped_ids": dict(list(planned.skipped_ids.items())[:50]),
        "text_only": sum(layout.is_text_only for layout in layouts),
        "boxes": sum(len(layout.boxes) for layout in layouts),
        "layout_changes": {k: sum(layout.counts.get(k, 0) for layout in layouts) for k in COUNT_KEYS},
        "redraw_seconds": round(seconds, 3),
        "images_per_second": round(len(planned.todo) / seconds, 3) if planned.todo and seconds > 0 else None,
    }


def build_redrawer(
    redrawer: str | Redrawer, model: str | None, steps: int | None, device: str | None, options: Mapping[str, Any]
) -> Redrawer:
    if not isinstance(redrawer, str):
        return redrawer
    kwargs = dict(options)
    if model is not None:
        kwargs["model"] = model
    if steps is not None:
        kwargs["steps"] = steps
    if device is not None and redrawer != "sketch":
        kwargs.setdefault("device", device)
    return get_redrawer(redrawer, **kwargs)
