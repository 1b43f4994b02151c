"""The retriever contract (tests/contracts.py) over every registered image-text retriever, on tiny random-weight
models of the real classes saved with two seeds, and over the text embedders whose weights are packaged."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from pancap_retrieval.retrieval.embedder import EMBEDDERS
from pancap_retrieval.retrieval.image_text import RETRIEVERS
from tests.contracts import RetrieverContract, covered

# Registered text embedders that cannot be built offline, and why: their weights are only on the Hugging Face hub
# (the embedder entries fix their model, so no tiny model can stand in). Every retriever entry is covered.
NOT_OFFLINE = {
    name: "weights on the Hugging Face hub only (the entry fixes its model)" for name in EMBEDDERS.names()
} | {"minilm": None}
NOT_OFFLINE = {name: why for name, why in NOT_OFFLINE.items() if why}


@pytest.fixture(scope="session")
def seed_one_dirs(tmp_path_factory):
    """The same tiny models as ``model_dirs`` (tests/retrieval/conftest.py) with another seed."""
    from pancap_retrieval import testing

    root = tmp_path_factory.mktemp("image_text_seed1")
    parts = {
        "clip": testing.random_clip(seed=1),
        "longclip": testing.random_clip(text_positions=248, seed=2),
        "align": testing.random_align(seed=1),
        "blip": testing.random_blip_retrieval(seed=1),
        "siglip": testing.random_siglip(root / "spm", seed=1),
        "siglip2": testing.random_siglip2(seed=1),
    }
    dirs = {name: testing.save_pretrained(root / name, *pair) for name, pair in parts.items()}
    dirs["hf"] = dirs["clip"]
    return dirs


class _ImageText(RetrieverContract):
    model: str  # the key of model_dirs

    @pytest.fixture(scope="class")
    def weights(self, model_dirs, seed_one_dirs):
        return model_dirs[self.model], seed_one_dirs[self.model]


class TestClip(_ImageText):
    name = model = "clip"


class TestLongClip(_ImageText):
    name = model = "longclip"


class TestAlign(_ImageText):
    name = model = "align"
    options: ClassVar[dict[str, Any]] = {"max_length": 16}  # the long text is over the window


class TestBlip(_ImageText):
    name = model = "blip"
    options: ClassVar[dict[str, Any]] = {"max_length": 16}


class TestSiglip(_ImageText):
    name = model = "siglip"


class TestSiglip2(_ImageText):
    name, model = "siglip", "siglip2"  # SigLIP2 goes through the siglip entry


class TestHf(_ImageText):
    name, model = "hf", "hf"


class TestMiniLM(RetrieverContract):
    """The packaged all-MiniLM-L6-v2; other weights go in as a directory, through the same class."""

    name = "minilm"
    options: ClassVar[dict[str, Any]] = {"max_seq_length": 32}  # the long text is over the window
    manifest_keys = (
        "embedder",
        "path",
        "fingerprint",
        "long_text",
        "overlap",
        "query_prefix",
        "passage_prefix",
    )

    def registry(self) -> Any:
        return EMBEDDERS

    def build(self, model: Path | None, **options: Any) -> Any:
        from pancap_retrieval.retrieval.embedder import build_embedder, resolve_local

        options = {"show_progress": False, **self.options, **options}
        if model is None or model == resolve_local("minilm")[0]:
            return EMBEDDERS.build(self.name, **options)
        return build_embedder(str(model), **options)

    def encode(self, retriever: Any) -> list[np.ndarray]:
        return [retriever.embed_queries(list(self.texts)), retriever.embed_passages(list(self.texts))]

    @pytest.fixture(scope="class")
    def weights(self, tmp_path_factory):
        """The packaged weights, and a copy with one weight matrix changed."""
        from safetensors.torch import load_file, save_file

        from pancap_retrieval.retrieval.embedder import resolve_local

        packaged = resolve_local("minilm")[0]
        changed = Path(shutil.copytree(packaged, tmp_path_factory.mktemp("minilm") / "changed"))
        tensors = load_file(changed / "model.safetensors")
        name = next(n for n in sorted(tensors) if n.endswith("query.weight"))
        tensors[name] = tensors[name] + 0.01
        save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
        return packaged, changed


def test_every_retriever_and_offline_embedder_has_a_contract():
    assert covered(globals(), RetrieverContract) == set(RETRIEVERS.names()) | (
        set(EMBEDDERS.names()) - set(NOT_OFFLINE)
    )
