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
def tiny_pixart_sigma_dir(tmp_path_factory) -> Path:
    """A random-weight PixArt-Sigma pipeline (T5 encoder, DiT with adaLN-single), the paper's redrawer, saved to disk.

    Its sample size of 32 is one PixArt's resolution binning knows (256-pixel bins).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from reconstruct.redrawers.random_weights import byte_level_tokenizer, vae_config

    tokenizer = byte_level_tokenizer(model_max_length=300)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4)
    )
    transformer = PixArtTransformer2DModel(
        sample_size=32,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    pipe = PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=AutoencoderKL(**vae_config("tiny")),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )
    path = tmp_path_factory.mktemp("pixart") / "tiny-pixart-sigma"
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
