"""Fixtures of the retrieval tests: the image-text retrievers' tiny models, saved once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Tiny random-weight models of each image-text retriever's real class, saved with ``save_pretrained``."""
    from pancap_retrieval import testing

    root = tmp_path_factory.mktemp("image_text")
    parts = {
        "clip": testing.random_clip(),
        "longclip": testing.random_clip(text_positions=248, seed=1),
        "align": testing.random_align(),
        "blip": testing.random_blip_retrieval(),
        "siglip": testing.random_siglip(root / "spm"),
        "siglip2": testing.random_siglip2(),
    }
    dirs = {name: testing.save_pretrained(root / name, *pair) for name, pair in parts.items()}
    dirs["hf"] = dirs["clip"]
    return dirs
