"""The gallery stage: a run folder's reconstructions, with every row's per-image numbers, as static pages
(:mod:`reconstruct.gallery`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pancap_retrieval.errors import PancapError


@dataclass(frozen=True)
class GalleryInputs:
    """The run folder to show (its reconstruction, and every row's ranks beside it)."""

    run_dir: Path


@dataclass(frozen=True)
class GalleryReport:
    """Where the gallery's index is, and how many of its pictures were made again because their file was cut."""

    index: Path
    repaired: int


def write_run_gallery(inputs: GalleryInputs) -> GalleryReport:
    """Write ``run_dir/gallery/``; a run folder without a reconstruction is a one-line error."""
    from reconstruct.gallery import write_gallery
    from reconstruct.run import RESULTS_FILE

    if not (inputs.run_dir / RESULTS_FILE).is_file():
        raise PancapError(
            f"{inputs.run_dir} has no {RESULTS_FILE}: run `pancap reconstruct` or a suite with reconstruction "
            "first"
        )
    report: dict[str, int] = {}
    index = write_gallery(inputs.run_dir, report=report)
    return GalleryReport(index, report["repaired"])
