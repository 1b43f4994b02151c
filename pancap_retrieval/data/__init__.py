"""Datasets by spec: ``load_dataset("sample")``, ``load_dataset("docci:/data/docci", split="test", limit=100)``.

A spec is ``KIND[:ARG]`` (see :data:`DATASET_SPEC_HELP`), parsed once into a typed
:class:`~pancap_retrieval.data.spec.DatasetSpec` (kind, argument, split, limit, Hub revision). Every loader returns a
``datasets.Dataset`` with the columns ``example_id, image, description, width, height, split`` (see
:mod:`pancap_retrieval.data.records`), sorted by ``example_id``; ``limit=N`` keeps the first N of that order.
Images stay encoded until :func:`open_image`. Nothing heavy is imported here, so listing datasets stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pancap_retrieval.data.records import (
    COLUMNS,
    DEFAULT_MAX_IMAGE_PIXELS,
    DESCRIPTIONS_COLUMN,
    MAX_PIXELS_ENV,
    MAX_TEXT_ENV,
    RowsById,
    cut_texts,
    image_digests,
    is_hub_id,
    max_image_pixels,
    max_text_bytes,
    open_image,
    row_digests,
    undecoded,
    unreadable_ids,
)
from pancap_retrieval.data.spec import DatasetColumns, DatasetSpec
from pancap_retrieval.errors import DatasetError
from pancap_retrieval.registry import Entry, Registry

if TYPE_CHECKING:
    import datasets


__all__ = [
    "COLUMNS",
    "DATASETS",
    "DATASET_SPEC_HELP",
    "MAX_PIXELS_ENV",
    "MAX_TEXT_ENV",
    "DatasetColumns",
    "DatasetSpec",
    "RowsById",
    "as_dataset_spec",
    "cut_texts",
    "dataset_info",
    "describe_datasets",
    "description_dialect",
    "image_digests",
    "load_dataset",
    "max_image_pixels",
    "max_text_bytes",
    "open_image",
    "parse_spec",
    "require_descriptions",
    "row_digests",
    "split_spec",
    "undecoded",
    "unreadable_ids",
]

DATASET_SPEC_HELP = (
    "dataset spec: `sample` (20 photos from installed packages, offline); `docci:DIR` (the official DOCCI "
    "release, e.g. docci:./data/docci after pancap data download docci --to ./data/docci); "
    "`docci:OWNER/MIRROR` (a DOCCI parquet mirror on the Hub, pinned with @REVISION, e.g. "
    "docci:OWNER/MIRROR@a1b2c3d; or a local copy of one, docci:DIR); `imagefolder:PATH` (every image under "
    "PATH; descriptions from PATH/metadata.jsonl, one line per image like "
    '{"file_name": "cat.jpg", "description": "A tabby cat ..."}); `sapancap:SA1B_DIR` (the shipped SA-Pancap '
    "captions with your SA-1B images under SA1B_DIR/sam/sa_0000NN/); `hf:OWNER/NAME@REVISION` or `hf:DIR` (any "
    "Hugging Face dataset: the Hub, pinned, or a save_to_disk / parquet / jsonl folder; options config, image, "
    "text, id, images=DIR via --dataset-option KEY=VALUE); presets `urban1k:`, `iiw:`, `sharegpt4v-1k:` "
    "(pancap list datasets). Images over "
    f"${MAX_PIXELS_ENV} pixels (default {DEFAULT_MAX_IMAGE_PIXELS}; 0 = no limit) are recorded as failed, "
    "not decoded."
)
# Kinds whose argument can name a Hub repository, and so can be pinned to a revision.
REVISIONED_KINDS = frozenset({"docci", "hf", "urban1k", "iiw", "sharegpt4v-1k"})

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
        "hf": Entry(
            "pancap_retrieval.data.hf:load_hf",
            "any Hugging Face dataset: hf:OWNER/NAME@REVISION (the Hub, pinned) or hf:DIR (save_to_disk, "
            "parquet, arrow, jsonl or csv files, an image folder); columns and several descriptions per image",
        ),
        "urban1k": Entry(
            "pancap_retrieval.data.presets:load_urban1k",
            "Urban1k (Long-CLIP): 1,000 city photos with long captions, from Urban1k.zip, CC BY-NC 4.0",
        ),
        "iiw": Entry(
            "pancap_retrieval.data.presets:load_iiw",
            "ImageInWords descriptions (config IIW-400, DCI_Test or DOCCI_Test) over your DOCCI/DCI images, CC BY 4.0",
        ),
        "sharegpt4v-1k": Entry(
            "pancap_retrieval.data.presets:load_sharegpt4v_1k",
            "ShareGPT4V captions over your COCO/SA-1B images; definition=first-1k (first 1,000 of the 1.2M file: "
            "Long-CLIP, TULIP) or definition=sam-10k (share4v_sam_10k.json: LoTLIP, FLAIR), no default",
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
    "hf": {
        "splits": ["(the set's own; default: the only one, else test)"],
        "source": "the Hub at a pinned revision, or a local folder, read by the datasets library",
        "spec": "hf:OWNER/NAME@REVISION | hf:DIR",
    },
    "urban1k": {
        "splits": ["test"],
        "source": "Urban1k.zip unpacked, a folder holding it, or BeichenZhang/Urban1k@REVISION on the Hub",
        "spec": "urban1k:DIR | urban1k:BeichenZhang/Urban1k@REVISION",
    },
    "iiw": {
        "splits": ["test"],
        "source": "the datasets/ folder of github.com/google/imageinwords; images=DIR of DOCCI or DCI images",
        "spec": "iiw:DIR with config=IIW-400|DCI_Test|DOCCI_Test and images=DIR",
    },
    "sharegpt4v-1k": {
        "splits": ["test"],
        "source": "a folder with the ShareGPT4V json, or Lin-Chen/ShareGPT4V@REVISION; images=DIR",
        "spec": "sharegpt4v-1k:DIR with definition=first-1k|sam-10k and images=DIR",
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


def split_spec(spec: str, revision: str | None = None) -> tuple[str, str | None, str | None]:
    """``KIND[:ARG][@REVISION]`` (plus an explicit ``revision``) -> (kind, arg, revision), checked.

    ``@REVISION`` is split off only where the argument names a Hub repository (``docci:OWNER/NAME@REV``), so an
    ``@`` in a local path stays part of the path. A revision given twice must agree; a kind or a local path that
    cannot be pinned refuses one.
    """
    kind, arg = parse_spec(spec)
    revision = revision or None
    if kind in REVISIONED_KINDS and arg is not None:
        repo, at, pinned = arg.partition("@")
        if at and is_hub_id(repo):
            if not pinned:
                raise DatasetError(f"dataset spec {spec!r} has an empty revision after '@'")
            if revision is not None and revision != pinned:
                raise DatasetError(
                    f"dataset spec {spec!r} pins revision {pinned!r} but revision {revision!r} is also given; "
                    "keep one"
                )
            arg, revision = repo, pinned
    if revision is not None and (kind not in REVISIONED_KINDS or arg is None or not is_hub_id(arg)):
        raise DatasetError(
            f"{spec}: a revision ({revision!r}) pins a dataset on the Hub (docci:OWNER/NAME@REVISION); "
            "local data has none: remove it"
        )
    return kind, arg, revision


def as_dataset_spec(
    spec: str | DatasetSpec, split: str | None = None, limit: int | None = None
) -> DatasetSpec:
    """The typed spec of a string (with ``split`` and ``limit``), or ``spec`` with those two replaced if given."""
    from pydantic import ValidationError

    from pancap_retrieval.data.records import check_limit
    check_limit(limit)
    if isinstance(spec, DatasetSpec):
        fields = spec.model_dump(exclude_none=True)
    elif isinstance(spec, str):
        split_spec(spec)  # a bad spec raises its own error (unknown kind lists the known ones)
        fields = {"name": spec}
    else:
        raise DatasetError(f"a dataset spec is a string like 'sample' or 'docci:DIR', got {type(spec).__name__}")
    fields.update({key: value for key, value in (("split", split), ("limit", limit)) if value is not None})
    try:
        return DatasetSpec.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise DatasetError(f"dataset {fields['name']!r}: {problems}") from None


def load_dataset(
    spec: str | DatasetSpec, split: str | None = None, limit: int | None = None
) -> datasets.Dataset:
    """Load a dataset by spec (typed, or a ``KIND[:ARG][@REVISION]`` string), one split, its first ``limit`` rows.

    ``split``/``limit`` given here replace the spec's. ``split=None`` is the dataset's default split (``test``
    for sample and docci, ``train`` for imagefolder). ``limit=N`` is the first N examples in sorted
    ``example_id`` order: the same N gives the same images.
    """
    spec = as_dataset_spec(spec, split, limit)
    max_image_pixels()  # a bad $PANCAP_MAX_IMAGE_PIXELS is reported now, not once per image later
    max_text_bytes()
    options = spec.loader_options()
    if spec.revision is not None:
        options["revision"] = spec.revision
    # through the registry: an option the loader does not take is one line naming the ones it does
    return DATASETS.build(spec.kind, arg=spec.arg, split=spec.split, limit=spec.limit, **options)


def dataset_info(spec: str | DatasetSpec, dataset: datasets.Dataset) -> dict[str, Any]:
    """What a manifest records of a loaded dataset: spec, kind, source (resolved path or Hub id), split, revision,
    limit, n, unreadable images and a SHA-256 of its rows (ids, descriptions, sizes and the bytes of each image),
    which names the data evaluated whatever its source."""
    import hashlib
    import json

    spec = as_dataset_spec(spec)
    digest = hashlib.sha256()
    images = row_digests(dataset)
    several = DESCRIPTIONS_COLUMN in dataset.column_names  # every description of an image, not only the first
    columns = ["example_id", "description", "width", "height", *([DESCRIPTIONS_COLUMN] if several else [])]
    for row in dataset.select_columns(columns).iter(batch_size=1000):
        for values in zip(*(row[c] for c in columns)):
            values = (*values, images[str(values[0])][0])
            digest.update((json.dumps(values, ensure_ascii=False) + "\n").encode())
    splits = sorted(set(dataset.unique("split"))) if len(dataset) else []
    info = {
        "name": spec.name,
        "kind": spec.kind,
        "source": _source(spec),
        "split": splits[0] if len(splits) == 1 else spec.split,
        "revision": spec.revision,
        "limit": spec.limit,
        "n": len(dataset),
        "unreadable_images": len(unreadable_ids(dataset)),
        "rows_sha256": digest.hexdigest(),
    }
    if dataset.info.description:
        info["note"] = dataset.info.description
    return info


def _source(spec: DatasetSpec) -> str | None:
    """The resolved local folder of a spec, or its Hub id; the environment's folder when the spec names none."""
    import os
    from pathlib import Path

    from pancap_retrieval.data import docci, sapancap

    arg = spec.arg
    if arg is None:
        variable = {"docci": docci.ENV_DIR, "sapancap": sapancap.ENV_DIR}.get(spec.kind)
        arg = os.environ.get(variable, "") if variable else ""
        if not arg:
            return "installed packages" if spec.kind == "sample" else None
    path = Path(arg).expanduser()
    if path.exists() or not is_hub_id(arg):
        return str(path.resolve())
    return arg


def require_descriptions(dataset: datasets.Dataset, spec: str | DatasetSpec) -> None:
    """Raise a DatasetError saying the fix when no example of ``dataset`` has a description (retrieval needs them)."""
    if any(text.strip() for text in dataset["description"]):
        return
    spec = as_dataset_spec(spec)
    if spec.kind == "imagefolder":
        from pancap_retrieval.data.imagefolder import missing_metadata_help

        raise DatasetError(f"{spec.name}: no image has a description; {missing_metadata_help(spec.arg or '')}")
    raise DatasetError(
        f"{spec.name}: no image has a description, so captions cannot be retrieved against them; "
        "use a dataset with descriptions (docci, sample, an imagefolder with metadata.jsonl)"
    )


# The box dialect of a kind's descriptions (pancap_retrieval.captions.boxes); a kind not named: ``auto``.
DESCRIPTION_DIALECTS = {"sapancap": "norm"}  # SA-Pancap: [[x1, y1, x2, y2]] fractions of the unpadded image


def description_dialect(spec: str | DatasetSpec) -> str:
    """The box dialect a dataset's descriptions are written in.

    >>> description_dialect("sapancap:/data/sa1b"), description_dialect("sample")
    ('norm', 'auto')
    """
    return DESCRIPTION_DIALECTS.get(as_dataset_spec(spec).kind, "auto")


def describe_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset: name, description, splits, source and spec, for listing."""
    rows = []
    for name in DATASETS.names():
        info = _DESCRIPTIONS.get(name, {"splits": [], "source": "", "spec": name})
        rows.append({"name": name, "description": DATASETS.description(name), **info})
    return rows
