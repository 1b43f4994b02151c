"""Fixtures of the captioner tests (the LLaVA, BLIP-2 and Qwen2.5-VL models: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def paper_dirs(tmp_path_factory):
    """The paper's GIT and BLIP captioners, tiny random-weight models of their real classes saved with seed 0."""
    from pancap_retrieval.testing import random_blip_captioner, random_git, save_pretrained

    root = tmp_path_factory.mktemp("paper_captioners")
    return {
        "git": save_pretrained(root / "git", *random_git(seed=0)),
        "blip": save_pretrained(root / "blip", *random_blip_captioner(seed=0)),
    }
