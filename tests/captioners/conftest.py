"""Tiny random-weight captioning models saved to disk, loaded by the captioner tests through the real loaders."""

from __future__ import annotations

import pytest

from pancap_retrieval.captioners.convert import LLAVA_PRESETS, random_llava, synthetic_tokenizer

QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_llava")
    model, processor = random_llava("tiny", seed=0)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory):
    """BLIP-2 (ViT, Q-Former with 4 queries, OPT) with its processor, as ``Salesforce/blip2-opt-*`` are laid out."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        GenerationConfig,
        OPTConfig,
    )

    directory = tmp_path_factory.mktemp("tiny_blip2")
    tokenizer = synthetic_tokenizer(["a photo of a cat on a mat, a woman in a space suit, a cup of coffee"])
    text = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        word_embed_proj_dim=32,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        init_std=0.2,
    )
    config = Blip2Config(
        vision_config={k: v for k, v in LLAVA_PRESETS["tiny"]["vision"].items() if k != "projection_dim"},
        qformer_config={
            "vocab_size": 64,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "encoder_hidden_size": 32,
        },
        text_config=text.to_dict(),
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration._from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    processor = Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": 30, "width": 30}),
        tokenizer=tokenizer,
        num_query_tokens=4,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_qwen25vl(tmp_path_factory):
    """Qwen2.5-VL (window-attention ViT, 2x2 patch merger, M-RoPE Qwen2) and its tokenizer, saved to disk."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    directory = tmp_path_factory.mktemp("tiny_qwen25vl")
    tokenizer = synthetic_tokenizer(["user assistant system: Describe this image. a dog [12, 34, 56, 78]"])
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
            "bos_token_id": 1,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": 0,
            "initializer_range": 0.2,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "out_hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=ids["<|im_end|>"], pad_token_id=0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
