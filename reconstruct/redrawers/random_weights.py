"""GLIGEN pipelines of the real architecture with random weights, built from configs, for tests and benchmarks.

No weights can be downloaded on the machines this project is tested on, so the loading and sampling code is run on
a pipeline saved by :func:`save_random_gligen` and loaded back through diffusers' own ``from_pretrained``.
Presets: ``tiny`` (a few hundred thousand parameters, seconds on a CPU) and ``sd-1.4`` (the configs of
``masterful/gligen-1-4-generation-text-box``: the SD-1.4 UNet with the GLIGEN position net
``attention_type="gated"`` (text + box; ``"gated-text-image"`` is the image-grounded variant), the SD VAE and the
CLIP ViT-L/14 text encoder), for timing. The tokenizer is a real ``CLIPTokenizer`` over a byte-level vocabulary
without merges: every character is one token, so token limits bite early and are tested for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PRESETS = ("tiny", "sd-1.4")


def byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol alone and word-final (``</w>``), then the two specials."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def byte_level_tokenizer(model_max_length: int = 77):
    """A real ``CLIPTokenizer`` over :func:`byte_level_vocab` with no merges (one token per character)."""
    from transformers import CLIPTokenizer

    vocab = byte_level_vocab()
    try:  # transformers >= 5: the tokenizers-backed class takes the vocabulary itself
        return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)
    except TypeError:  # transformers 4: the slow class reads files
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "vocab.json").write_text(json.dumps(vocab))
            (Path(scratch) / "merges.txt").write_text("#version: 0.2\n")
            return CLIPTokenizer(
                str(Path(scratch) / "vocab.json"),
                str(Path(scratch) / "merges.txt"),
                model_max_length=model_max_length,
            )


def unet_config(preset: str) -> dict[str, Any]:
    """UNet2DConditionModel kwargs with the GLIGEN position net (``attention_type="gated"``)."""
    if preset == "tiny":
        return {
            "block_out_channels": (32, 64),
            "layers_per_block": 2,
            "sample_size": 32,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 2,
            "norm_num_groups": 32,
            "attention_type": "gated",
        }
    if preset == "sd-1.4":
        return {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": (
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "attention_type": "gated",
        }
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")


def vae_config(preset: str) -> dict[str, Any]:
    if preset == "tiny":
        return {
            "block_out_channels": [32, 64],
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "latent_channels": 4,
            "sample_size": 64,
        }
    if preset == "sd-1.4":
        return {
            "block_out_channels": [128, 256, 512, 512],
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "latent_channels": 4,
            "layers_per_block": 2,
            "sample_size": 512,
        }
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")


def text_encoder_config(preset: str, vocab_size: int, bos: int, eos: int) -> dict[str, Any]:
    common = {
        "vocab_size": max(vocab_size, 1000),
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": eos,
    }
    if preset == "tiny":
        return {
            **common,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "layer_norm_eps": 1e-5,
        }
    if preset == "sd-1.4":  # CLIP ViT-L/14 text tower
        return {
            **common,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "projection_dim": 768,
        }
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")


def random_gligen_pipeline(preset: str = "tiny", seed: int = 0):
    """A ``StableDiffusionGLIGENPipeline`` of ``preset`` with random weights (``seed``), no safety checker."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionGLIGENPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = byte_level_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(preset))
    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config(preset))
    torch.manual_seed(seed)
    text_config = text_encoder_config(preset, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionGLIGENPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_random_gligen(path: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Save a random-weight GLIGEN pipeline to ``path`` (loadable with ``from_pretrained(path)``)."""
    path = Path(path)
    random_gligen_pipeline(preset, seed).save_pretrained(path)
    return path
