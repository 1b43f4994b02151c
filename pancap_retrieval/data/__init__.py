"""Datasets by name: ``load_dataset("sample")``, ``load_dataset("docci:/data/docci", split="test", limit=100)``.

Every loader returns a ``datasets.Dataset`` with the columns ``example_id, image, description, width, height,
split`` (see :mod:`pancap_retrieval.data.records`), sorted by ``example_id``; ``limit=N`` keeps the first N
of that order. Nothing heavy is imported here, so listing datasets stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pancap_retrieval.data.records import COLUMNS, open_image, undecoded, unreadable_ids
from pancap_retrieval.errors import DatasetError
from pancap_retrieval.registry import Entry, Registry

if TYPE_CHECKING:
    import datasets

__all__ = [
    "COLUMNS",
    "DATASETS",
    "describe_datasets",
    "load_dataset",
    "open_image",
    "parse_spec",
    "undecoded",
    "unreadable_ids",
]

DATASETS = Registry(
    "dataset",
    {
        "sample": Entry(
            "pancap_retrieval.data.sample:load_sample",
            "20 real photos shipped inside scikit-image, scikit-learn and matplotlib, "
            "each with a hand-written DOCCI-style description; the offline default",
        ),
        "docci": Entry(
            "pancap_retrieval.data.docci:load_docci",
            "DOCCI: 15k photos with long human descriptions (Onoe et al., 2024), CC BY 4.0",
        ),
        "imagefolder": Entry(
            "pancap_retrieval.data.imagefolder:load_imagefolder",
            "any folder of images; descriptions from an optional metadata.jsonl "
            "(file_name + description/text/caption)",
        ),
        "sapancap": Entry(
            "pancap_retrieval.data.sapancap:load_sapancap",
            "SA-Pancap (PancapChain paper): 630 human-checked panoptic captions of SA-1B images, "
            "shipped in the package (MIT); images from your SA-1B copy",
        ),
    },
)

# What `pancap list datasets` shows besides the description; kept here so that listing imports no loader.
_DESCRIPTIONS: dict[str, dict[str, Any]] = {
    "sample": {
        "splits": ["test"],
        "source": "installed packages (no download); descriptions in pancap_retrieval/data/sample/sample.json",
        "spec": "sample",
    },
    "docci": {
        "splits": ["train", "test", "qual_dev", "qual_test"],
        "source": "official release in a local dir (`pancap data download docci --to DIR`), "
        "or a parquet mirror on the Hub or on disk",
        "spec": "docci:DIR | docci:OWNER/PARQUET-MIRROR",
    },
    "imagefolder": {
        "splits": ["train"],
        "source": "a local folder",
        "spec": "imagefolder:PATH",
    },
    "sapancap": {
        "splits": ["val", "test"],
        "source": "captions in pancap_retrieval/data/sapancap/; images: SA-1B folder as ARG or $PANCAP_SA1B_DIR",
        "spec": "sapancap:SA1B_DIR",
    },
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"name"`` -> (name, None); ``"name:ARG"`` -> (name, ARG). The name is checked against the registry."""
    name, sep, arg = spec.partition(":")
    name = name.strip()
    DATASETS.target(name)
    if sep and not arg:
        raise DatasetError(f"dataset spec {spec!r} has an empty argument after ':'")
    return name, (arg if sep else None)


def load_dataset(spec: str, split: str | None = None, limit: int | None = None) -> datasets.Dataset:
    """Load a dataset by spec (``name`` or ``name:ARG``), one split, optionally its first ``limit`` examples.

    ``split=None`` is the dataset's default split (``test`` for sample and docci, ``train`` for imagefolder).
    ``limit=N`` is the first N examples in sorted ``example_id`` order: the same N gives the same images.
    """
    name, arg = parse_spec(spec)
    loader = DATASETS.get(name)
    return loader(arg, split, limit)


def describe_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset: name, description, splits, source and spec, for listing."""
    rows = []
    for name in DATASETS.names():
        info = _DESCRIPTIONS.get(name, {"splits": [], "source": "", "spec": name})
        rows.append({"name": name, "description": DATASETS.description(name), **info})
    return rows
