"""The retriever stage: one results row per retriever of the suite, made through the one retrieval door.

A retriever's queries are the dataset's images and its gallery the dataset's descriptions (an image may have
several: the any-hit rule of the caption rows). Its row is keyed like a captioner's (the retriever, its fingerprint,
the images' content, the descriptions, the retrieval settings and the seed) in the run's ``retrieval/`` folder, with
its ranks and top-10 files beside it, so a rerun reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pancap_retrieval.artifacts import key, read_json, write_json
from pancap_retrieval.directions import between
from pancap_retrieval.runs import ranks_file, row_file, top_file

# Bumped when the shape of a retriever row changes, so reruns recompute rather than reuse old rows.
RETRIEVER_ROW_VERSION = 2


# Options that change how fast the features come, not what they are: not part of a row's key.
SPEED_OPTIONS = frozenset({"batch_size", "device", "show_progress", "loaded"})


def build_retriever(spec: Any) -> Any:
    """The retriever of a suite's ``retrievers:`` entry, built through its registry, options checked."""
    from pancap_retrieval.retrieval.image_text import RETRIEVERS
    from pancap_retrieval.retrieval.retriever import as_retriever

    retriever = as_retriever(RETRIEVERS.build(spec.entry, **spec.retriever_options()))
    check_kinds(spec.entry, retriever)
    return retriever


def check_kinds(name: str, retriever: Any) -> None:
    """A suite's retrievers rank the dataset's images against its descriptions: a retriever (or a retriever class
    that says so in its class attributes) of other kinds is a one-line error."""
    from pancap_retrieval.errors import RetrievalError

    kinds = (getattr(retriever, "query_kind", "image"), getattr(retriever, "gallery_kind", "description"))
    if kinds != ("image", "description"):
        raise RetrievalError(
            f"retriever {name!r} ranks {kinds[0]} against {kinds[1]}: a suite's retrievers rank the dataset's "
            "images against its descriptions (query_kind 'image', gallery_kind 'description')"
        )


def retriever_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against retriever ``name`` (names and types) and completed with its defaults, without
    building it. An unknown option or a bad value is a one-line error."""
    import inspect

    from pancap_retrieval.registry import check_options
    from pancap_retrieval.retrieval.image_text import RETRIEVERS

    factory, fixed = RETRIEVERS.get(name), RETRIEVERS.entry(name).fixed
    check_kinds(name, factory)  # a class that declares its kinds is checked before any work
    checked = check_options(factory, options, f"retriever {name!r}", fixed=fixed)
    defaults = {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.default is not inspect.Parameter.empty
        and p.kind is not inspect.Parameter.VAR_KEYWORD
        and p.name not in (fixed or {})
    }
    if defaults.get("model", "") is None and getattr(factory, "default_model", None):
        defaults["model"] = factory.default_model
    return {**defaults, **checked}


def model_fingerprint(model: Any, revision: str | None = None) -> str | None:
    """The content of a model's files without loading it: a local folder's, else the hub id's snapshot in the
    local cache when it is there, else the id and revision (None when there is no model)."""
    from pancap_retrieval.artifacts import fingerprint_dir, path_fingerprint
    from pancap_retrieval.errors import PancapError
    from pancap_retrieval.loading import model_dir

    if not isinstance(model, str) or not model:
        return None
    local = path_fingerprint(model)
    if local is not None:
        return local
    try:
        return fingerprint_dir(model_dir(model, revision=revision, local_only=True))
    except PancapError:
        return key("hub", model, revision)


def retriever_inputs(spec: Any) -> dict[str, Any]:
    """What makes the row of retriever ``spec``, known without building it: its options with their defaults (those
    that change the features) and its model's content fingerprint."""
    options = retriever_options(spec.entry, spec.retriever_options())
    kept = {k: v for k, v in options.items() if k not in SPEED_OPTIONS}
    return {"name": spec.entry, "options": kept, "model_fingerprint": model_fingerprint(kept.get("model"), kept.get("revision"))}


class _Images(Sequence[Any]):
    """The dataset's images in order, each decoded only when read; ``digests`` are their content digests."""

    def __init__(self, dataset: Any, rows: list[int], digests: list[str]) -> None:
        self.dataset, self.rows, self.digests = dataset, rows, digests

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: Any) -> Any:
        from pancap_retrieval.data.records import open_image

        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return open_image(self.dataset[self.rows[i]])

    def subset(self, positions: list[int]) -> _Images:
        return _Images(self.dataset, [self.rows[i] for i in positions], [self.digests[i] for i in positions])


class CachedImageFeatures:
    """``retriever`` with its image features cached on disk (``CACHE/image_features/``), keyed by the model's
    fingerprint, its image preprocessing and each image's content digest: images seen before are not encoded again.
    Everything else is the retriever's own."""

    def __init__(self, retriever: Any, cache_dir: Path) -> None:
        from pancap_retrieval.artifacts import DiskCache

        self.retriever = retriever
        self.setting = key(retriever.fingerprint, preprocessing(retriever))
        self.cache = DiskCache(Path(cache_dir) / "image_features" / f"{self.setting}.sqlite")
        self.encoded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.retriever, name)

    def encode_queries(self, items: Any) -> np.ndarray:
        digests = getattr(items, "digests", None)
        if digests is None:
            return np.asarray(self.retriever.encode_queries(items), dtype=np.float32)
        keys = [key(self.setting, digest) for digest in digests]
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            fresh = np.asarray(self.retriever.encode_queries(items.subset(missing)), dtype=np.float32)
            self.encoded += len(missing)
            rows = [(keys[i], fresh.shape[1], fresh[j].tobytes()) for j, i in enumerate(missing)]
            self.cache.put_many(rows)
            found.update({k: (dim, blob) for k, dim, blob in rows})
        return np.stack([np.frombuffer(found[k][1], dtype=np.float32) for k in keys]) if keys else np.zeros((0, 0))


def preprocessing(retriever: Any) -> Any:
    """What turns an image into the model's input, besides the weights: the image processor's settings and the
    precision (None for a retriever that does not say)."""
    model = getattr(retriever, "model", retriever)
    processor = getattr(model, "image_processor", None)
    settings = processor.to_dict() if hasattr(processor, "to_dict") else None
    return {"processor": settings, "dtype": str(getattr(model, "dtype", None))}


@dataclass
class RetrieverRow:
    """One retriever's row, whether it was reused from the run folder, and what the retriever says of itself."""

    row: dict[str, Any]
    reused: bool
    manifest: dict[str, Any]


def retriever_row(
    spec: Any,
    dataset: Any,
    descriptions: dict[str, Any],
    suite: Any,
    stage_dir: Path,
    siblings: Sequence[Path] = (),
) -> RetrieverRow:
    """The row of retriever ``spec`` over ``dataset`` (images) and ``descriptions`` (by image id).

    The row is keyed without building the retriever (:func:`retriever_inputs`), so a rerun that reuses it loads
    no model; the retriever is built only when the row is to be computed. A row needs no text embedder: in a run
    with several, the row made for the first (one of the ``siblings`` stage folders) is copied, files and all, into
    the others' ``stage_dir``."""
    from pancap_retrieval.artifacts import default_cache_dir
    from pancap_retrieval.data.records import image_digests

    ids = list(dataset["example_id"])
    digests = image_digests(dataset["image"])
    rest = (list(zip(ids, digests)), sorted(descriptions.items()), suite.retrieval.model_dump(), suite.seed)
    row_key = key(RETRIEVER_ROW_VERSION, retriever_inputs(spec), *rest)
    stage_file = row_file(stage_dir, spec.name)
    for folder in (stage_dir, *siblings):
        cached = read_json(row_file(folder, spec.name))
        if isinstance(cached, dict) and cached.get("key") == row_key and _whole(folder, spec.name):
            if folder != stage_dir:
                _copy_row(folder, stage_dir, spec.name)
            return RetrieverRow(cached["row"], True, cached.get("manifest") or {})
    retriever = CachedImageFeatures(build_retriever(spec), default_cache_dir())
    row = _compute(retriever, spec.name, dataset, ids, digests, descriptions, suite, stage_dir)
    manifest = retriever.manifest()
    row_key = key(RETRIEVER_ROW_VERSION, retriever_inputs(spec), *rest)  # a hub model is in the cache now
    write_json(stage_file, {"key": row_key, "row": row, "manifest": manifest})
    return RetrieverRow(row, False, manifest)


def _compute(
    retriever: Any,
    name: str,
    dataset: Any,
    ids: list[str],
    digests: list[str],
    descriptions: dict[str, Any],
    suite: Any,
    stage_dir: Path,
) -> dict[str, Any]:
    from pancap_retrieval.retrieval.metrics import ScoreOptions, Sides, description_gallery, evaluate_sides

    skipped = {"empty_description": 0}
    gallery_ids, gallery_texts = description_gallery(descriptions, skipped)
    known = set(gallery_ids)
    rows = [i for i, image_id in enumerate(ids) if image_id in known]
    skipped["no_description"] = len(ids) - len(rows)
    sides = Sides(gallery_ids, gallery_texts, [ids[i] for i in rows], _Images(dataset, rows, [digests[i] for i in rows]), skipped)
    options = ScoreOptions(
        n_bootstrap=suite.retrieval.bootstrap_samples, seed=suite.seed, backend=suite.retrieval.backend
    )
    result = evaluate_sides(retriever, sides, options)
    write_json(top_file(stage_dir, name), result["top"])
    write_json(ranks_file(stage_dir, name), result["ranks"])
    n = len(sides.query_ids)
    return {
        "system": name,
        "kind": "retriever",
        "n": n,
        "coverage": n / max(1, len(descriptions)),
        "skipped": skipped,
        **{d.name: result[d.label] for d in between(retriever.query_kind, retriever.gallery_kind)},
        "embedding": result["embedding"],
        **text_policy(retriever),
        **{k: result[k] for k in ("descriptions_per_image",) if k in result},
    }


def text_policy(retriever: Any) -> dict[str, Any]:
    """The text window, the long-text policy and the share of descriptions over the window, as the retriever
    reports them (nothing for a retriever that does not)."""
    stats = getattr(getattr(retriever, "model", retriever), "text_stats", None)
    if not isinstance(stats, dict):
        return {}
    return {k: stats[k] for k in ("text_window", "long_text", "over_window_rate") if k in stats}


def _copy_row(source: Path, stage_dir: Path, name: str) -> None:
    """The row, ranks and top-10 files of ``name`` written again under ``stage_dir`` (ranks and top first, the row
    that keys them last)."""
    from pancap_retrieval.artifacts import atomic_write

    for file in (ranks_file, top_file, row_file):
        atomic_write(file(stage_dir, name), file(source, name).read_bytes())


def _whole(stage_dir: Path, name: str) -> bool:
    """Whether the ranks and top-10 files of a reused row read back."""
    for path in (ranks_file(stage_dir, name), top_file(stage_dir, name)):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
    return True
