"""The gallery stage: a run folder's reconstructions, with every row's per-image numbers, as static pages
(:mod:`reconstruct.gallery`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pancap_retrieval.errors import PancapError


@dataclass(frozen=True)
class GalleryInputs:
    """The run folder to show and how: images per page (None: the gallery's default), at most how many images, how
    many on ``grid.png``."""

    run_dir: Path
    page_size: int | None = None
    max_images: int | None = None
    grid_images: int = 6
    progress: bool = True


@dataclass(frozen=True)
class GalleryReport:
    """Where the gallery's index is, and how many of its pictures were made again because their file was cut."""

    index: Path
    repaired: int


def write_run_gallery(inputs: GalleryInputs) -> GalleryReport:
    """Write ``run_dir/gallery/``; a run folder without a reconstruction is a one-line error."""
    from reconstruct.gallery import PAGE_SIZE, write_gallery

    if not (inputs.run_dir / "reconstruction.json").is_file():
        raise PancapError(
            f"{inputs.run_dir} has no reconstruction.json: run `pancap reconstruct` or a suite with reconstruction "
            "first"
        )
    report: dict[str, int] = {}
    index = write_gallery(
        inputs.run_dir, page_size=inputs.page_size or PAGE_SIZE, max_images=inputs.max_images, grid_images=inputs.grid_images,
        progress=inputs.progress, report=report,
    )  # fmt: skip
    return GalleryReport(index, int(report.get("repaired", 0)))
