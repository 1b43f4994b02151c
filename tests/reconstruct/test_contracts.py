"""The redrawer contract (tests/contracts.py) over every registered redrawer: the sketch, and tiny random-weight
diffusers pipelines of the real classes saved with two seeds and loaded back through ``from_pretrained``."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from reconstruct.redrawers import REDRAWERS
from tests.contracts import RedrawerContract, covered

# Registered redrawers that cannot be built offline, and why: none.
NOT_OFFLINE: dict[str, str] = {}
TINY = {"device": "cpu", "steps": 2, "canvas_size": 32}


class TestSketch(RedrawerContract):
    name = "sketch"
    test_fingerprint_changes_with_the_weights = None  # no weights: nothing to fingerprint
    options: ClassVar[dict[str, Any]] = {"canvas_size": 64}
    manifest_keys = ("name", "model", "canvas_size")


class TestGligen(RedrawerContract):
    name = "gligen"
    options = TINY
    pixel_tolerance = 2  # batch rows may differ from single calls by float rounding only

    @pytest.fixture(scope="class")
    def weights(self, tiny_gligen_dir, tmp_path_factory):
        from pancap_retrieval.testing import save_random_gligen

        return tiny_gligen_dir, save_random_gligen(
            tmp_path_factory.mktemp("gligen_seed1") / "tiny-gligen", seed=1
        )


class TestText2Image(RedrawerContract):
    name = "text2image"
    options = TINY
    pixel_tolerance = 2
    manifest_keys = ("name", "model", "revision", "pipeline", "max_prompt_tokens")

    @pytest.fixture(scope="class")
    def weights(self, tiny_sd_dir, tmp_path_factory):
        from pancap_retrieval.testing import random_sd_pipeline, save_pretrained

        return tiny_sd_dir, save_pretrained(
            tmp_path_factory.mktemp("sd_seed2") / "tiny-sd", random_sd_pipeline(seed=2)
        )


def test_every_redrawer_that_can_be_built_offline_has_a_contract():
    assert covered(globals(), RedrawerContract) == set(REDRAWERS.names()) - set(NOT_OFFLINE)
