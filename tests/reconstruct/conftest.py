"""Fixtures of the reconstruction tests: real photos, tiny random-weight pipelines saved to disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def photos() -> dict[str, object]:
    """Real photos shipped in scikit-image, shrunk to a long side of 160 pixels (RGB PIL images)."""
    from PIL import Image
    from skimage import data

    out = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        image.thumbnail((160, 160))
        out[name] = image
    return out


@pytest.fixture(scope="session")
def tiny_gligen_dir(tmp_path_factory) -> Path:
    """A random-weight GLIGEN pipeline of the real architecture, saved with ``save_pretrained``."""
    from reconstruct.redrawers.random_weights import save_random_gligen

    return save_random_gligen(tmp_path_factory.mktemp("gligen") / "tiny-gligen", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A random-weight Stable Diffusion text-to-image pipeline (plain UNet), saved with ``save_pretrained``."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from reconstruct.redrawers.random_weights import random_gligen_pipeline, unet_config

    parts = random_gligen_pipeline("tiny", seed=1).components
    config = {k: v for k, v in unet_config("tiny").items() if k != "attention_type"}
    torch.manual_seed(1)
    parts["unet"] = UNet2DConditionModel(**config)
    pipe = StableDiffusionPipeline(
        **{k: v for k, v in parts.items() if k != "image_encoder"},
        image_encoder=None,
        requires_safety_checker=False,
    )
    path = tmp_path_factory.mktemp("sd") / "tiny-sd"
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless browser of the gallery test: Debian's ``chromium``. Its absence is a failure, not a skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        pytest.fail(
            "chromium is not installed: `apt-get install -y chromium` (the gallery test needs a real browser)"
        )
    return path
