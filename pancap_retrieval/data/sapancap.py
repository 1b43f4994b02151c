"""SA-Pancap, the panoptic captioning benchmark of PancapChain (Lin et al., NeurIPS 2025), as a pancap dataset.

The ground-truth panoptic captions ship with the package (``data/sapancap/``, MIT, see its README): ``val``
(500 captions, generated and quality-filtered) and ``test`` (130 human-curated). The images are SA-1B
photos, which cannot ship: download the SA-1B parts (``sa_0000NN.tar``, from
https://ai.meta.com/datasets/segment-anything/), unpack each into ``ROOT/sam/sa_0000NN/`` and pass ``ROOT`` as
``sapancap:ROOT`` (or set ``$PANCAP_SA1B_DIR``); a folder holding ``sa_0000NN/`` directly works too.
``example_id`` is the image file's stem (``sa_507752``), the ``description`` is the ground-truth caption. Images
missing from the folder are skipped and counted: a warning names them and ``dataset.info.description`` records
the count.
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pancap_retrieval.captions.readers import example_id_from_path
from pancap_retrieval.data.meta import DatasetMeta
from pancap_retrieval.data.records import Row, build_dataset, check_limit, choose_split
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

META = DatasetMeta(
    name="sapancap",
    loader="pancap_retrieval.data.sapancap:load_sapancap",
    help="SA-Pancap (PancapChain paper): 630 human-checked panoptic captions of SA-1B images, "
    "shipped in the package (MIT); images from your SA-1B copy",
    usage="`sapancap:SA1B_DIR` (the shipped SA-Pancap captions with your SA-1B images under SA1B_DIR/sam/sa_0000NN/)",
    spec="sapancap:SA1B_DIR",
    source="captions in pancap_retrieval/data/sapancap/; images: SA-1B folder as ARG or $PANCAP_SA1B_DIR",
    splits=("val", "test"),
    default_split="test",
    env="PANCAP_SA1B_DIR",
    dialect="norm",  # [[x1, y1, x2, y2]] fractions of the unpadded image
)
SPLIT_FILES = {split: f"sapancap_{split}_gtcaption.json" for split in META.splits}
DEFAULT_SPLIT = META.default_split or ""
ENV_DIR = META.env
SA1B_PAGE = "https://ai.meta.com/datasets/segment-anything/"


def how_to_get(split: str, root: str | Path = "SA1B_DIR") -> str:
    """Where SA-1B images come from, which of its parts ``split`` needs, and the layout pancap expects."""
    items = read_ground_truth(split)
    parts = sorted({PurePosixPath(image_path).parts[1] for _, image_path, _ in items})
    example = PurePosixPath(items[0][1]) if items else PurePosixPath("sam/sa_000000/sa_1.jpg")
    needs = f" (the {split} split needs {len(parts)}: {parts[0]}.tar ... {parts[-1]}.tar)" if parts else ""
    return (
        f"SA-Pancap's images are SA-1B photos, which cannot ship: download the SA-1B parts from {SA1B_PAGE}"
        f"{needs}, unpack each into {Path(root) / 'sam' / 'sa_0000NN'}/ so that e.g. {Path(root) / example} "
        f"exists, and pass sapancap:{root} (or set ${ENV_DIR})"
    )


def caption_file(split: str) -> Path:
    """The packaged ground-truth caption file of ``split`` (``val`` or ``test``)."""
    chosen = choose_split("sapancap", split, SPLIT_FILES, DEFAULT_SPLIT)
    return Path(str(resources.files("pancap_retrieval.data").joinpath("sapancap", SPLIT_FILES[chosen])))


def read_ground_truth(split: str) -> list[tuple[str, str, str]]:
    """(example_id, image_path, caption) of every item of ``split``, sorted by example_id."""
    path = caption_file(split)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"sapancap: cannot read the packaged captions {path}: {exc}") from None
    rows = []
    for number, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("image_path"), str):
            raise DatasetError(f"sapancap: {path}[{number}] has no image_path")
        caption = item.get("gt_response")
        if not isinstance(caption, str) or not caption.strip():
            raise DatasetError(f"sapancap: {path}[{number}] has no gt_response caption")
        rows.append((example_id_from_path(item["image_path"]), item["image_path"], caption))
    rows.sort(key=lambda row: row[0])
    ids = [row[0] for row in rows]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"sapancap: {path} has duplicate image ids")
    return rows


def _image_path(root: Path, image_path: str) -> Path | None:
    relative = PurePosixPath(image_path)
    candidates = [root / relative]
    if relative.parts and relative.parts[0] == "sam":  # ROOT may be the sam/ folder itself
        candidates.append(root.joinpath(*relative.parts[1:]))
    return next((path for path in candidates if path.is_file()), None)


def load_sapancap(arg: str | None, split: str | None = None, limit: int | None = None) -> datasets.Dataset:
    """SA-Pancap ``val`` or ``test`` (default) with images from the SA-1B folder ``arg`` (or ``$PANCAP_SA1B_DIR``).

    ``limit=N`` keeps the first N ids in sorted order before images are looked up, so the same N names the
    same examples; those whose image is missing are skipped and counted.
    """
    check_limit(limit)
    chosen = choose_split("sapancap", split, SPLIT_FILES, DEFAULT_SPLIT)
    if not arg:
        arg = os.environ.get(META.env or "")
        if not arg:
            raise DatasetError(f"sapancap needs the SA-1B image folder: {how_to_get(chosen)}")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"sapancap: SA-1B image folder not found: {root}; {how_to_get(chosen, root)}")
    items = read_ground_truth(chosen)
    if limit is not None:
        items = items[:limit]
    rows, missing = [], []
    for example_id, image_path, caption in items:
        path = _image_path(root, image_path)
        if path is None:
            missing.append(example_id)
        else:
            rows.append(Row(example_id, str(path), caption, chosen))
    if not rows:
        raise DatasetError(
            f"sapancap: none of the {len(items)} {chosen} images is under {root}; {how_to_get(chosen, root)}"
        )
    dataset = build_dataset(rows, what=f"sapancap:{root}")
    note = f"SA-Pancap {chosen}: {len(rows)} of {len(items)} images found under {root}"
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        log.warning(
            "sapancap %s: %d image(s) not found under %s, skipped: %s", chosen, len(missing), root, shown
        )
        note += f"; {len(missing)} skipped (image not found): {shown}"
    dataset.info.description = note
    return dataset


def missing_images(arg: str | Path, split: str | None = None) -> list[str]:
    """Ids of ``split`` whose image is not under the SA-1B folder ``arg``."""
    root = Path(arg).expanduser()
    chosen = choose_split("sapancap", split, SPLIT_FILES, DEFAULT_SPLIT)
    return [
        example_id
        for example_id, image_path, _ in read_ground_truth(chosen)
        if _image_path(root, image_path) is None
    ]


__all__ = [
    "DEFAULT_SPLIT",
    "ENV_DIR",
    "META",
    "SPLIT_FILES",
    "caption_file",
    "load_sapancap",
    "missing_images",
    "read_ground_truth",
]
