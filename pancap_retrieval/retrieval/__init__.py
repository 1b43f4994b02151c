"""Text-to-text retrieval: embedders, top-k search backends, retrieval metrics and caption text preparation.

Heavy libraries (torch, sentence-transformers, faiss, transformers) are imported only when used.
"""

from __future__ import annotations

from pancap_retrieval.retrieval.embedder import EMBEDDERS, Embedder, ModelSpec, list_embedders
from pancap_retrieval.retrieval.index import SEARCH_BACKENDS, search
from pancap_retrieval.retrieval.metrics import (
    evaluate_retrieval,
    positive_ranks,
    retrieval_metrics,
)
from pancap_retrieval.retrieval.textprep import REWRITE_PROMPT, PreparedTexts, prepare_texts

__all__ = [
    "EMBEDDERS",
    "REWRITE_PROMPT",
    "SEARCH_BACKENDS",
    "Embedder",
    "ModelSpec",
    "PreparedTexts",
    "evaluate_retrieval",
    "list_embedders",
    "positive_ranks",
    "prepare_texts",
    "retrieval_metrics",
    "search",
]
