"""A tiny random-weight LLaVA saved to disk, loaded by the captioner tests through the real loader."""

from __future__ import annotations

import pytest

from pancap_retrieval.captioners.convert import random_llava


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_llava")
    model, processor = random_llava("tiny", seed=0)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
