"""Datasets by spec: ``load_dataset("sample")``, ``load_dataset("docci:/data/docci", split="test", limit=100)``.

A spec is ``KIND[:ARG]`` (see :data:`DATASET_SPEC_HELP`), parsed once into a typed
:class:`~pancap_retrieval.data.spec.DatasetSpec` (kind, argument, split, limit, Hub revision). Every loader returns a
``datasets.Dataset`` with the columns ``example_id, image, description, width, height, split`` (see
:mod:`pancap_retrieval.data.records`), sorted by ``example_id``; ``limit=N`` keeps the first N of that order.
Images stay encoded until :func:`open_image`. Nothing heavy is imported here, so listing datasets stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pancap_retrieval.data.meta import DatasetMeta, DatasetRegistry, resolve
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

if TYPE_CHECKING:
    import datasets


__all__ = [
    "COLUMNS",
    "DATASETS",
    "DATASET_SPEC_HELP",
    "MAX_PIXELS_ENV",
    "MAX_TEXT_ENV",
    "DatasetColumns",
    "DatasetMeta",
    "DatasetRegistry",
    "DatasetSpec",
    "RowsById",
    "add_dataset",
    "as_dataset_spec",
    "cut_texts",
    "dataset_info",
    "dataset_spec_help",
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
    "split_help",
    "split_spec",
    "undecoded",
    "unreadable_ids",
]

# One line per dataset: its name and where its DatasetMeta lives (the loader module's ``META``).
DATASETS = DatasetRegistry(
    {
        "sample": "pancap_retrieval.data.sample:META",
        "docci": "pancap_retrieval.data.docci:META",
        "imagefolder": "pancap_retrieval.data.imagefolder:META",
        "sapancap": "pancap_retrieval.data.sapancap:META",
        "hf": "pancap_retrieval.data.hf:META",
        "urban1k": "pancap_retrieval.data.presets:URBAN1K",
        "iiw": "pancap_retrieval.data.presets:IIW",
        "sharegpt4v-1k": "pancap_retrieval.data.presets:SHAREGPT4V_1K",
    }
)


def add_dataset(meta: DatasetMeta) -> None:
    """Register a dataset by its record: ``load_dataset``, ``pancap list datasets`` and the ``--dataset`` help see it."""
    DATASETS.add(meta)


def dataset_spec_help() -> str:
    """The ``--dataset`` help, from the records of the datasets registered now."""
    forms = "; ".join(meta.usage for meta in DATASETS.metas())
    return (
        f"dataset spec: {forms} (pancap list datasets). Images over ${MAX_PIXELS_ENV} pixels (default "
        f"{DEFAULT_MAX_IMAGE_PIXELS}; 0 = no limit) are recorded as failed, not decoded."
    )


def split_help() -> str:
    """The ``--split`` help: each dataset's default split, from its record (``test for docci, sample; ...``)."""
    by_default: dict[str, list[str]] = {}
    for meta in DATASETS.metas():
        by_default.setdefault(meta.split_default(), []).append(meta.name)
    defaults = "; ".join(f"{split} for {', '.join(names)}" for split, names in by_default.items())
    return f"split (default: the dataset's own: {defaults})"


def __getattr__(name: str) -> str:
    if name == "DATASET_SPEC_HELP":  # computed when read, so a dataset added later shows
        return dataset_spec_help()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    revisioned = DATASETS.meta(kind).revisioned
    if revisioned and arg is not None:
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
    if revision is not None and (not revisioned or arg is None or not is_hub_id(arg)):
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

    ``split``/``limit`` given here replace the spec's. ``split=None`` is the dataset's default split (its
    record's ``default_split``). ``limit=N`` is the first N examples in sorted
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

    meta = DATASETS.meta(spec.kind)
    arg = spec.arg
    if arg is None:
        arg = os.environ.get(meta.env, "") if meta.env else ""
        if not arg:
            return meta.no_arg_source
    path = Path(arg).expanduser()
    if path.exists() or not is_hub_id(arg):
        return str(path.resolve())
    return arg


def require_descriptions(dataset: datasets.Dataset, spec: str | DatasetSpec) -> None:
    """Raise a DatasetError saying the fix when no example of ``dataset`` has a description (retrieval needs them)."""
    if any(text.strip() for text in dataset["description"]):
        return
    spec = as_dataset_spec(spec)
    meta = DATASETS.meta(spec.kind)
    if meta.missing_descriptions is not None:
        how = resolve(meta.missing_descriptions)(spec.arg or "")  # type: ignore[operator]
        raise DatasetError(f"{spec.name}: no image has a description; {how}")
    raise DatasetError(
        f"{spec.name}: no image has a description, so captions cannot be retrieved against them; "
        "use a dataset with descriptions (pancap list datasets)"
    )


def description_dialect(spec: str | DatasetSpec) -> str:
    """The box dialect a dataset's descriptions are written in (its record's ``dialect``).

    >>> description_dialect("sapancap:/data/sa1b"), description_dialect("sample")
    ('norm', 'auto')
    """
    return DATASETS.meta(as_dataset_spec(spec).kind).dialect


def describe_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset: name, description, splits, source and spec, for listing."""
    return [
        {"name": m.name, "description": m.help, "splits": m.split_names(), "source": m.source, "spec": m.spec}
        for m in DATASETS.metas()
    ]
