"""The one door of retrieval: every retrieval row is made by a :class:`Retriever`.

A retriever matches queries of one kind (``query_kind``: ``caption``, ``image``) against a gallery of another
(``gallery_kind``: ``description``); its two directions are :func:`pancap_retrieval.directions.between` of them. It
turns items into float32 L2-normalised rows (:meth:`Retriever.encode_queries`, :meth:`Retriever.encode_gallery`),
names its weights (``fingerprint``) and says what it is (``manifest()``). Search, ranks, metrics and bootstrap are
separate steps (:mod:`pancap_retrieval.retrieval.metrics`) shared by every retriever.

The way back (gallery items as queries against the query items) reuses the forward vectors, unless the retriever
embeds a text differently as a query and as a gallery item: then it has ``encode_as_queries`` (gallery items as
back queries) and ``encode_as_gallery`` (query items as the back gallery), as :class:`TextRetriever` does for an
embedder with query and passage prefixes.

A dual encoder of the image-text registry (:data:`~pancap_retrieval.retrieval.image_text.RETRIEVERS`, with
``encode_images`` and ``encode_texts``) goes through the door as :class:`ImageDescriptionRetriever`
(:func:`as_retriever`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pancap_retrieval.errors import RetrievalError


@runtime_checkable
class Retriever(Protocol):
    """Queries of ``query_kind`` ranked against a gallery of ``gallery_kind`` by the cosine of their rows."""

    query_kind: str
    gallery_kind: str

    @property
    def fingerprint(self) -> str: ...

    def encode_queries(self, items: Sequence[Any]) -> np.ndarray: ...

    def encode_gallery(self, items: Sequence[Any]) -> np.ndarray: ...

    def manifest(self) -> dict[str, Any]: ...


@dataclass
class Encoded:
    """The rows of one retrieval: forward queries and gallery, and the way back (gallery rows ``back_rows`` as
    queries against the query items)."""

    queries: np.ndarray
    gallery: np.ndarray
    back_queries: np.ndarray
    back_gallery: np.ndarray
    report: dict[str, Any]


def encode(
    retriever: Retriever, query_items: Sequence[Any], gallery_items: Sequence[Any], back_rows: np.ndarray
) -> Encoded:
    """Encode both sides through ``retriever``: queries, gallery, then (when it embeds them differently) query items
    as the back gallery and gallery rows ``back_rows`` as back queries, in that order."""
    queries = _rows(retriever.encode_queries(query_items), len(query_items), "query")
    gallery = _rows(retriever.encode_gallery(gallery_items), len(gallery_items), "gallery")
    as_gallery = getattr(retriever, "encode_as_gallery", None)
    as_queries = getattr(retriever, "encode_as_queries", None)
    back_gallery = queries if as_gallery is None else as_gallery(query_items)
    back_queries = gallery[back_rows] if as_queries is None else as_queries([gallery_items[r] for r in back_rows])
    report = retriever.encoding_report() if hasattr(retriever, "encoding_report") else {}
    return Encoded(queries, gallery, back_queries, back_gallery, report)


def _rows(vectors: Any, n: int, side: str) -> np.ndarray:
    """A retriever's rows as float32, checked: one row per item, all finite; a row that is not of unit length is
    scaled to it (ranking is by cosine whatever the retriever returns), a unit row is kept bit for bit."""
    out = np.asarray(vectors, dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != n:
        raise RetrievalError(f"the retriever gave {side} rows of shape {out.shape} for {n} items")
    bad = int((~np.isfinite(out)).any(axis=1).sum())
    if bad:
        raise RetrievalError(f"the retriever gave {bad} of {n} {side} rows with NaN or infinite values")
    norms = np.linalg.norm(out, axis=1)
    off = (norms > 0) & (np.abs(norms - 1.0) > 1e-3)
    if off.any():
        out = out.copy()
        out[off] /= norms[off, None]
    return out


class TextRetriever:
    """Captions (queries) against descriptions (gallery) through a text :class:`~pancap_retrieval.retrieval.embedder.
    Embedder`: queries with its query prefix, the gallery with its passage prefix."""

    query_kind = "caption"
    gallery_kind = "description"

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self._stats: dict[str, Any] = {}
        if embedder.query_prefix == embedder.passage_prefix:  # one vector per text serves both ways
            self.encode_as_gallery = None
            self.encode_as_queries = None

    @classmethod
    def build(cls, name_or_path: str, **options: Any) -> TextRetriever:
        """The retriever of the embedder ``name_or_path`` (a registered name through its registry), options checked."""
        from pancap_retrieval.retrieval.embedder import build_embedder

        return cls(build_embedder(name_or_path, **options))

    @property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    def encode_queries(self, items: Sequence[str]) -> np.ndarray:
        out = self.embedder.embed_queries(list(items), label="captions")
        self._stats["captions"] = self.embedder.last_stats.as_dict()  # cached captions included
        return out

    def encode_gallery(self, items: Sequence[str]) -> np.ndarray:
        out = self.embedder.embed_passages(list(items), label="descriptions")
        self._stats["descriptions"] = self.embedder.last_stats.as_dict()
        return out

    def encode_as_gallery(self, items: Sequence[str]) -> np.ndarray:  # type: ignore[no-redef]
        return self.embedder.embed_passages(list(items), label="captions")

    def encode_as_queries(self, items: Sequence[str]) -> np.ndarray:  # type: ignore[no-redef]
        return self.embedder.embed_queries(list(items), label="descriptions")

    def encoding_report(self) -> dict[str, Any]:
        """Long-text figures of the last captions and descriptions encoded."""
        return {"captions": self._stats.get("captions"), "descriptions": self._stats.get("descriptions")}

    def manifest(self) -> dict[str, Any]:
        return self.embedder.manifest()


class ImageDescriptionRetriever:
    """Images (queries) against descriptions (gallery) through an image-text dual encoder."""

    query_kind = "image"
    gallery_kind = "description"

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def fingerprint(self) -> str:
        return self.model.fingerprint

    def encode_queries(self, items: Sequence[Any]) -> np.ndarray:
        return self.model.encode_images(items)

    def encode_gallery(self, items: Sequence[str]) -> np.ndarray:
        return self.model.encode_texts(list(items))

    def encoding_report(self) -> dict[str, Any]:
        stats = getattr(self.model, "text_stats", None)
        return {"descriptions": stats() if callable(stats) else stats}

    def manifest(self) -> dict[str, Any]:
        return self.model.manifest()


def as_retriever(model: Any) -> Retriever:
    """``model`` itself when it is a :class:`Retriever`, an image-text dual encoder through
    :class:`ImageDescriptionRetriever`; anything else is a one-line error."""
    if isinstance(model, Retriever):
        return model
    if hasattr(model, "encode_images") and hasattr(model, "encode_texts"):
        return ImageDescriptionRetriever(model)
    missing = [name for name in RETRIEVER_MEMBERS if not hasattr(model, name)]
    raise RetrievalError(
        f"{type(model).__name__} is not a retriever: it has no {', '.join(missing)} (the Retriever protocol of "
        "pancap_retrieval.retrieval.retriever)"
    )


# What the Retriever protocol asks of a retriever.
RETRIEVER_MEMBERS = ("query_kind", "gallery_kind", "fingerprint", "encode_queries", "encode_gallery", "manifest")


__all__ = ["Encoded", "ImageDescriptionRetriever", "Retriever", "TextRetriever", "as_retriever", "encode"]
