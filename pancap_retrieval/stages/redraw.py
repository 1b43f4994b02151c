"""The reconstruct stage's call: the captions of every captioner redrawn and scored by ``reconstruct``, each read in
the box dialect its store declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pancap_retrieval.captions.store import CaptionRecord, store_dialect, store_path
from pancap_retrieval.runs import RunSummary
from pancap_retrieval.stages.caption import split_of


def store_dialects(out: Path, names: list[str], dataset_name: str, split: str) -> dict[str, str]:
    """Captioner name -> the box dialect its store in ``out`` declares."""
    return {name: store_dialect(store_path(out, name, dataset_name, split)) for name in names}


def reconstruct_captions(
    out: Path,
    captions: dict[str, list[CaptionRecord]],
    dataset: Any,
    dataset_name: str,
    reconstruction: Any,
    seed: int,
    summary: RunSummary,
) -> dict[str, Any]:
    """Redraw and score ``captions`` (by captioner) with the ``reconstruction`` spec (see
    :func:`reconstruct.run.reconstruct_spec`); the reconstruction report."""
    from reconstruct.run import reconstruct_spec

    dialects = store_dialects(out, list(captions), dataset_name, split_of(dataset, None))
    return reconstruct_spec(out, captions, dataset, reconstruction, seed=seed, summary=summary, dialects=dialects)
