"""Random-weight models for tests and benchmarks, built from configs and loaded through the real loaders.

No weights can be downloaded where this project is tested, so its loading, generation and sampling code runs on
models of the real architectures with random weights: saved with ``save_pretrained`` and loaded back through
``from_pretrained`` like a user's checkpoint. The presets name architectures: ``tiny`` ones run in seconds on a CPU,
the full-size ones (LLaVA-1.5-13B, GLIGEN on SD-1.4) are for timing on a GPU. Text comes from tokenizers trained
here on a few sentences: byte-level, so any text round-trips. The library never imports this module; torch,
transformers and diffusers are imported only inside its functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pancap_retrieval.captioners.conversation import IMAGE_TOKEN, VICUNA_V1
from pancap_retrieval.captioners.convert import llava_image_processor

# ------------------------------------------------------------------------------------------- tokenizers


def synthetic_tokenizer(corpus: list[str], vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, Llama-style specials and ``<image>``: for random-weight models.

    Benchmarks and tests run model code without a real vocabulary; text round-trips exactly through it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


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


# ------------------------------------------------------------------------------------------- LLaVA

# The vision tower of the LLaVA-1.5 family (and of ASMv2 / PancapChain).
CLIP_VIT_L14_336: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
# The architectures of the LLaVA-1.5 family (Vicuna + CLIP ViT-L/14-336), for random-weight benchmarks.
LLAVA_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "llava-1.5-13b": {
        "text": {
            "hidden_size": 5120,
            "intermediate_size": 13824,
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 40,
            "vocab_size": 32000,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
        },
        "vision": CLIP_VIT_L14_336,
    },
    "llava-1.5-7b": {
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 32000,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
        },
        "vision": CLIP_VIT_L14_336,
    },
    "tiny": {
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 0,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "initializer_range": 0.2,
        },
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 30,
            "patch_size": 15,
            "projection_dim": 32,
        },
    },
}


def random_llava(
    preset: str = "tiny",
    corpus: list[str] | None = None,
    seed: int = 0,
    dtype: Any = None,
    device: Any = None,
    pad: bool = True,
) -> tuple[Any, Any]:
    """A random-weight ``LlavaForConditionalGeneration`` of a :data:`LLAVA_PRESETS` architecture and its processor.

    The processor is the one :func:`convert_llava` writes (vicuna_v1 template, pad mode). For benchmarks and tests.
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    if preset not in LLAVA_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(LLAVA_PRESETS)}")
    spec = LLAVA_PRESETS[preset]
    words = corpus or [
        VICUNA_V1.system,
        "USER: ASSISTANT: dog <box>[[12, 340, 560, 789]]</box>, a cat on a mat.",
    ]
    tokenizer = synthetic_tokenizer(words)
    text = dict(spec["text"])
    text["vocab_size"] = max(text["vocab_size"], len(tokenizer))
    text_config = LlamaConfig(
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0, **text
    )
    vision_config = CLIPVisionConfig(**spec["vision"])
    config = LlavaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    target = torch.device(device) if device is not None else torch.device("cpu")
    with target:
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype or torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    processor = LlavaProcessor(
        image_processor=llava_image_processor(None, vision_config, pad=pad),
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VICUNA_V1.chat_template(),
    )
    return model.eval(), processor


QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def random_blip2(seed: int = 0) -> tuple[Any, Any]:
    """A tiny BLIP-2 (ViT, Q-Former with 4 queries, OPT) and its processor, laid out as ``Salesforce/blip2-opt-*``."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        GenerationConfig,
        OPTConfig,
    )

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
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration._from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    processor = Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": 30, "width": 30}),
        tokenizer=tokenizer,
        num_query_tokens=4,
    )
    return model.eval(), processor


def random_qwen25vl(seed: int = 0) -> tuple[Any, Any]:
    """A tiny Qwen2.5-VL (window-attention ViT, 2x2 patch merger, M-RoPE Qwen2) and its tokenizer."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

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
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=ids["<|im_end|>"], pad_token_id=0)
    return model.eval(), tokenizer


# ------------------------------------------------------------------------------------------- causal LMs

# Text the tiny causal LMs' tokenizer is trained on: judge JSON, yes/no answers and caption prose.
LM_CORPUS = [
    '{"entities": [{"id": 1, "tag": "dog", "box": [0.1, 0.2, 0.3, 0.4]}]}',
    "yes no",
    "Rewrite the following image description as plain, fluent prose. A napkin lies on a table under a blue sky.",
]
# A minimal chat template: role tags around each message, then the assistant's turn.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def random_causal_lm(
    corpus: list[str] | None = None, chat_template: str | None = None, seed: int = 0
) -> tuple[Any, Any]:
    """A 2-layer Llama with random weights and a tokenizer trained on ``corpus`` (with ``chat_template`` if given),
    as the caption rewriter and the PancapScore judge load one."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = synthetic_tokenizer(corpus or LM_CORPUS, vocab_size=300)
    if chat_template is not None:
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|end|>", "<|user|>", "<|assistant|>"]})
        tokenizer.chat_template = chat_template
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16384,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer


def save_pretrained(path: str | Path, *parts: Any) -> Path:
    """Each of ``parts`` (a model, a processor, a tokenizer) saved into ``path``; returns ``path``."""
    path = Path(path)
    for part in parts:
        part.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------- GLIGEN, SD, PixArt

# GLIGEN architectures: ``tiny`` (a few hundred thousand parameters, seconds on a CPU) and ``sd-1.4`` (the configs
# of ``masterful/gligen-1-4-generation-text-box``: the SD-1.4 UNet with the GLIGEN position net
# ``attention_type="gated"`` (text + box), the SD VAE and the CLIP ViT-L/14 text encoder), for timing. Their
# tokenizer is :func:`byte_level_tokenizer`: every character is one token, so token limits bite early.
GLIGEN_PRESETS = ("tiny", "sd-1.4")


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
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(GLIGEN_PRESETS)}")


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
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(GLIGEN_PRESETS)}")


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
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(GLIGEN_PRESETS)}")


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


def random_sd_pipeline(seed: int = 1) -> Any:
    """A tiny Stable Diffusion text-to-image pipeline: the GLIGEN ``tiny`` parts with a plain UNet."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    parts = random_gligen_pipeline("tiny", seed=seed).components
    config = {k: v for k, v in unet_config("tiny").items() if k != "attention_type"}
    torch.manual_seed(seed)
    parts["unet"] = UNet2DConditionModel(**config)
    return StableDiffusionPipeline(
        **{k: v for k, v in parts.items() if k != "image_encoder"},
        image_encoder=None,
        requires_safety_checker=False,
    )


def random_pixart_sigma_pipeline(seed: int = 0) -> Any:
    """A tiny PixArt-Sigma pipeline (T5 encoder, DiT with adaLN-single), the paper's redrawer.

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

    tokenizer = byte_level_tokenizer(model_max_length=300)
    torch.manual_seed(seed)
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
    return PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=AutoencoderKL(**vae_config("tiny")),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


# ------------------------------------------------------------------------------------------- image-text models

# Text the tiny image-text models' tokenizers know as whole words (any other word is spelt in pieces).
IMAGE_TEXT_CORPUS = [
    "a photo of a cat on a mat",
    "a woman in a space suit stands in front of a flag",
    "a cup of coffee on a wooden table",
    "a red rocket on a launch pad under a blue sky",
    "a picture of two dogs playing in the grass",
]
# Full-size architectures for timing on a GPU, random weights: CLIP ViT-L/14-336 (``openai/clip-vit-large-patch14-336``)
# and BLIP ViT-L/16-384 with its BERT-base text tower (``Salesforce/blip-itm-large-coco``).
IMAGE_TEXT_PRESETS = ("tiny", "full")
_TINY_TOWER = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
_TINY_IMAGE = 30  # pixels a side; patches of 15


def wordpiece_tokenizer(corpus: list[str] | None = None, model_max_length: int = 512) -> Any:
    """A real ``BertTokenizer`` whose vocabulary is the corpus's words, every character and every ``##`` character:
    any lower-case ASCII text tokenizes, words outside the corpus in pieces."""
    import string

    from transformers import BertTokenizer

    words = sorted({w for line in corpus or IMAGE_TEXT_CORPUS for w in line.lower().split()})
    chars = [c for c in string.ascii_lowercase + string.digits + string.punctuation]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    vocab += [w for w in words if w not in vocab]
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=model_max_length)


def sentencepiece_file(path: str | Path, corpus: list[str] | None = None, vocab_size: int = 400) -> Path:
    """A unigram SentencePiece model trained on ``corpus`` with byte fallback, written to ``path`` (SigLIP's format)."""
    import sentencepiece as spm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus or IMAGE_TEXT_CORPUS),
        model_prefix=str(path.with_suffix("")),
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        byte_fallback=True,
        unk_id=2,
        bos_id=-1,
        eos_id=1,
        pad_id=0,
        minloglevel=2,
    )
    return path.with_suffix(".model")


def _clip_configs(preset: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(text tower, vision tower, projection size) of CLIP at ``preset``."""
    if preset == "tiny":
        return dict(_TINY_TOWER), {**_TINY_TOWER, "image_size": _TINY_IMAGE, "patch_size": 15}, 16
    if preset == "full":
        text = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
        vision = {k: v for k, v in CLIP_VIT_L14_336.items() if k != "projection_dim"}
        return text, vision, 768
    raise ValueError(f"unknown preset {preset!r}; known: {', '.join(IMAGE_TEXT_PRESETS)}")


def random_clip(preset: str = "tiny", text_positions: int = 77, seed: int = 0) -> tuple[Any, Any]:
    """A random-weight ``CLIPModel`` and its ``CLIPProcessor``; ``text_positions=248`` is LongCLIP's layout.

    The tokenizer is :func:`byte_level_tokenizer` (one token per character); the text tower pools at its EOS id.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = byte_level_tokenizer(model_max_length=text_positions)
    text, vision, projection = _clip_configs(preset)
    config = CLIPConfig(
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": text_positions,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config=vision,
        projection_dim=projection,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    side = vision["image_size"]
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer,
    )
    return model, processor


def random_align(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-weight ``AlignModel`` (EfficientNet vision, BERT text) and its ``AlignProcessor``."""
    import torch
    from transformers import AlignConfig, AlignModel, AlignProcessor, EfficientNetImageProcessorPil

    tokenizer = wordpiece_tokenizer()
    vision = {
        "image_size": 32,
        "width_coefficient": 1.0,
        "depth_coefficient": 1.0,
        "kernel_sizes": [3, 3],
        "in_channels": [32, 16],
        "out_channels": [16, 32],
        "strides": [1, 2],
        "num_block_repeats": [1, 1],
        "expand_ratios": [1, 6],
        "hidden_dim": 64,
    }
    config = AlignConfig(
        text_config={
            **_TINY_TOWER, "vocab_size": len(tokenizer), "max_position_embeddings": 512, "initializer_range": 0.2
        },
        vision_config=vision,
        projection_dim=32,  # the image embedding is the vision tower's pooled output: its last block's width
    )
    torch.manual_seed(seed)
    model = AlignModel(config).eval()
    image_processor = EfficientNetImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False)
    return model, AlignProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _blip_configs(preset: str, vocab_size: int) -> dict[str, Any]:
    """``BlipConfig`` keywords at ``preset``: ViT + BERT with cross-attention to the image."""
    if preset == "tiny":
        vision = {**_TINY_TOWER, "image_size": _TINY_IMAGE, "patch_size": 15}
        text = {**_TINY_TOWER, "encoder_hidden_size": 32, "initializer_range": 0.2}
        joint = 16
    elif preset == "full":  # blip-itm-large-coco: ViT-L/16 at 384, BERT-base
        vision = {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 16,
        }
        text = {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "encoder_hidden_size": 1024,
        }
        joint = 256
    else:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(IMAGE_TEXT_PRESETS)}")
    vision["initializer_range"] = 0.02  # BLIP's vision default (1e-10) makes every image's features the same
    text.update(vocab_size=vocab_size, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, sep_token_id=3)
    return {"text_config": text, "vision_config": vision, "image_text_hidden_size": joint}


def _blip_processor(side: int, tokenizer: Any) -> Any:
    from transformers import BlipImageProcessorPil, BlipProcessor

    return BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": side, "width": side}), tokenizer=tokenizer)


def random_blip_retrieval(preset: str = "tiny", seed: int = 0) -> tuple[Any, Any]:
    """A random-weight ``BlipForImageTextRetrieval`` (ITC projections and ITM head) and its ``BlipProcessor``."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval

    tokenizer = wordpiece_tokenizer()
    config = BlipConfig(**_blip_configs(preset, len(tokenizer)))
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(config).eval()
    return model, _blip_processor(config.vision_config.image_size, tokenizer)


def random_siglip(directory: str | Path, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-weight ``SiglipModel`` and its ``SiglipProcessor`` (a SentencePiece tokenizer trained here,
    its model file written under ``directory``)."""
    import torch
    from transformers import (
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
        SiglipProcessor,
        SiglipTokenizer,
    )

    tokenizer = SiglipTokenizer(str(sentencepiece_file(Path(directory) / "spiece.model")), model_max_length=64)
    config = SiglipConfig(
        text_config={
            **_TINY_TOWER,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 64,
            "bos_token_id": None,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={**_TINY_TOWER, "image_size": _TINY_IMAGE, "patch_size": 15},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    image_processor = SiglipImageProcessorPil(size={"height": _TINY_IMAGE, "width": _TINY_IMAGE})
    return model, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def random_git(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-weight ``GitForCausalLM`` (CLIP-style vision, BERT-style decoder) and its ``GitProcessor``."""
    import torch
    from transformers import CLIPImageProcessorPil, GenerationConfig, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = wordpiece_tokenizer()
    config = GitConfig(
        vision_config={**_TINY_TOWER, "image_size": _TINY_IMAGE, "patch_size": 15},
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = GitForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": _TINY_IMAGE}, crop_size={"height": _TINY_IMAGE, "width": _TINY_IMAGE}
    )
    return model, GitProcessor(image_processor=image_processor, tokenizer=tokenizer)


def random_blip_captioner(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-weight ``BlipForConditionalGeneration`` (ViT, BERT decoder) and its ``BlipProcessor``."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, GenerationConfig

    tokenizer = wordpiece_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    config = BlipConfig(**_blip_configs("tiny", len(tokenizer)))
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.sep_token_id = tokenizer.sep_token_id
    config.text_config.initializer_range = 0.2
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=0
    )
    return model, _blip_processor(_TINY_IMAGE, tokenizer)


def random_siglip2(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-weight ``Siglip2Model`` (NaFlex vision: patches at the image's aspect ratio, up to 16) and its
    ``Siglip2Processor``; the tokenizer's vocabulary is the corpus's words and every byte (any text tokenizes)."""
    import torch
    from transformers import (
        Siglip2Config,
        Siglip2ImageProcessorPil,
        Siglip2Model,
        Siglip2Processor,
        Siglip2Tokenizer,
    )

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    for word in sorted({w for line in IMAGE_TEXT_CORPUS for w in line.split()}):
        vocab.setdefault(f"\u2581{word}", len(vocab))
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=64)
    config = Siglip2Config(
        text_config={
            **_TINY_TOWER,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 64,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "bos_token_id": 2,
        },
        vision_config={**_TINY_TOWER, "patch_size": 8, "num_patches": 16},
    )
    torch.manual_seed(seed)
    model = Siglip2Model(config).eval()
    image_processor = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    return model, Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer)
