"""Redrawers by name, loaded lazily: ``get_redrawer("gligen", model="path-or-id")``; ``pancap list redrawers``."""

from __future__ import annotations

import hashlib
from typing import Any

from pancap_retrieval.registry import Entry, Registry

REDRAWERS = Registry(
    "redrawer",
    {
        "sketch": Entry(
            "reconstruct.redrawers.sketch:SketchRedrawer",
            "the layout drawn as labelled boxes on a blank canvas; needs no weights (offline default)",
        ),
        "gligen": Entry(
            "reconstruct.redrawers.diffusion:GLIGENRedrawer",
            "diffusers StableDiffusionGLIGENPipeline, default masterful/gligen-1-4-generation-text-box",
        ),
        "text2image": Entry(
            "reconstruct.redrawers.diffusion:Text2ImageRedrawer",
            "any diffusers text-to-image pipeline by hub id or local dir (the paper: PixArt-Sigma)",
        ),
    },
)


def example_seed(run_seed: int, example_id: str) -> int:
    """The seed of one image: a stable hash of (run seed, example id), the same on every machine and run.

    >>> example_seed(0, "sa_507752")
    7587523392755661245
    """
    digest = hashlib.sha256(f"{int(run_seed)}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def get_redrawer(name: str, **options: Any):
    """Build the redrawer registered as ``name`` with its options (``model=``, ``device=``, ...), checked."""
    return REDRAWERS.build(name, **options)


__all__ = ["REDRAWERS", "example_seed", "get_redrawer"]
