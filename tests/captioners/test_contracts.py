"""The captioner contract (tests/contracts.py) over every registered captioner that can be built offline: tiny
random-weight models of the real classes, saved with two seeds and loaded back through the real loaders."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pancap_retrieval.captioners import CAPTIONERS
from tests.contracts import CaptionerContract, covered

# Registered captioners that cannot be built offline, and why.
NOT_OFFLINE = {
    "qwen2.5-vl": "Qwen2.5-VL's processor (Qwen2_5_VLProcessor) needs torchvision, which is not installed; its "
    "batched generation is checked on the tiny model directly in test_hf_vlm.py",
}
GENERATE = {"max_new_tokens": 6}


@pytest.fixture(scope="session")
def seed_one(tmp_path_factory):
    """``make(kind)``: the tiny model of ``kind`` with seed 1, saved once (seed 0 comes from tests/conftest.py)."""
    from pancap_retrieval import testing

    builders = {
        "llava": lambda: testing.random_llava("tiny", seed=1),
        "blip2": lambda: testing.random_blip2(seed=1),
        "git": lambda: testing.random_git(seed=1),
        "blip": lambda: testing.random_blip_captioner(seed=1),
    }
    saved: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in saved:
            saved[kind] = testing.save_pretrained(tmp_path_factory.mktemp(f"{kind}_seed1"), *builders[kind]())
        return saved[kind]

    return make


class TestReference(CaptionerContract):
    name = "reference"
    test_fingerprint_changes_with_the_weights = None  # no weights: nothing to fingerprint
    batching: ClassVar[dict[str, Any]] = {}
    manifest_keys = ("name", "box_dialect")


class TestDetector(CaptionerContract):
    name = "detector"
    manifest_keys = ("name", "box_dialect", "model", "model_sha256")

    @pytest.fixture(scope="class")
    def weights(self, tmp_path_factory):
        """The packaged ONNX weights, and a copy with one byte in the middle of its weight data changed."""
        from pancap_retrieval.detection.detector import MODEL_PATH

        packaged = Path(MODEL_PATH)
        changed = tmp_path_factory.mktemp("detector") / packaged.name
        data = bytearray(packaged.read_bytes())
        data[len(data) // 2] ^= 0x01  # the low bit of a byte of a float initializer: the file still loads
        changed.write_bytes(bytes(data))
        return packaged, changed

    def test_changed_weights_still_load_and_the_manifest_says_which(self, weights):
        assert (
            self.build(weights[1]).manifest()["model_sha256"]
            != self.build(weights[0]).manifest()["model_sha256"]
        )


class _Llava(CaptionerContract):
    options = GENERATE

    @pytest.fixture(scope="class")
    def weights(self, tiny_llava, seed_one):
        return tiny_llava, seed_one("llava")


class TestPancapChain(_Llava):
    name = "pancapchain"
    manifest_keys = ("name", "box_dialect", "model", "revision", "prompts", "generation")


class TestLlava15(_Llava):
    name = "llava-1.5"


class TestShareGPT4V(_Llava):
    name = (
        "sharegpt4v"  # a LLaVA checkpoint converted by `pancap convert llava`: tiny_llava is in that format
    )


class TestHf(_Llava):
    name = "hf"


class TestBlip2(CaptionerContract):
    name = "blip2"
    options = GENERATE

    @pytest.fixture(scope="class")
    def weights(self, tiny_blip2, seed_one):
        return tiny_blip2, seed_one("blip2")


class TestGit(CaptionerContract):
    name = "git"
    options = GENERATE

    @pytest.fixture(scope="class")
    def weights(self, paper_dirs, seed_one):
        return paper_dirs["git"], seed_one("git")


class TestBlip(CaptionerContract):
    name = "blip"
    options = GENERATE

    @pytest.fixture(scope="class")
    def weights(self, paper_dirs, seed_one):
        return paper_dirs["blip"], seed_one("blip")


def test_every_captioner_that_can_be_built_offline_has_a_contract():
    names = set(CAPTIONERS.names())
    assert set(NOT_OFFLINE) <= names
    assert covered(globals(), CaptionerContract) == names - set(NOT_OFFLINE)


def test_a_copied_model_keeps_its_reuse_key(tiny_blip2, tmp_path):
    """The reuse key follows the weights' content, not the folder's path."""
    moved = Path(shutil.copytree(tiny_blip2, tmp_path / "moved"))
    assert TestBlip2().reuse_key(moved) == TestBlip2().reuse_key(tiny_blip2)
