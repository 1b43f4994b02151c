"""Checkpoint conversion: original LLaVA-format checkpoints (PancapChain, ASMv2, ShareGPT4V) to transformers.

The original LLaVA repository saves ``LlavaLlamaForCausalLM``: a Llama with ``model.embed_tokens``,
``model.layers.N.*``, ``model.norm``, ``lm_head``, the projector as ``model.mm_projector.0/2`` (``mlp2x_gelu``:
linear, GELU, linear) and, when the vision tower was trained or bundled, its CLIP weights under
``model.vision_tower.vision_tower.vision_model.*``; otherwise the tower comes from the CLIP id in
``mm_vision_tower``. Its ``config.json`` is a Llama config plus ``mm_*`` keys, with ``model_type: "llava"``, a name
transformers uses for a different layout, so it is read as plain JSON here. A LoRA on top (peft, as PancapChain
releases it) is merged with peft on a plain Llama, whose module names are those of the original model; a
``non_lora_trainables.bin`` next to it (projector weights trained with the LoRA) replaces the base weights.

The output is a ``LlavaForConditionalGeneration`` directory: the ``<image>`` token added to the tokenizer (one
embedding row more), ``vision_feature_layer`` from ``mm_vision_select_layer`` (-2), strategy ``"default"`` (CLS
dropped), and a ``LlavaProcessor`` whose image processor is CLIP's preprocessing plus LLaVA's pad mode
(``do_pad``: pad to a square with the mean colour, centred) when the checkpoint was trained with
``image_aspect_ratio: "pad"``. The PIL image processor is used, which needs no torchvision.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pancap_retrieval.captioners.conversation import IMAGE_TOKEN, VICUNA_V1, conversation
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import choose_dtype, model_dir

log = logging.getLogger(__name__)

# A vicuna_v1 turn with an image, as every LLaVA prompt has one.
TOKENIZATION_PROBE = VICUNA_V1.prompt("Please localize all entities in this image.")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None


def load_state_dict(directory: Path) -> dict[str, Any]:
    """Every tensor of a checkpoint directory: ``*.safetensors`` or ``pytorch_model*.bin`` (sharded or not)."""
    import torch
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    files = [f for f in files if not f.name.startswith(("adapter_model", "non_lora"))]
    if not files:
        raise ModelLoadError(f"{directory} holds no weights (*.safetensors or pytorch_model*.bin)")
    state: dict[str, Any] = {}
    for file in files:
        try:
            part = (
                load_file(file)
                if file.suffix == ".safetensors"
                else torch.load(file, map_location="cpu", weights_only=True)
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot read weights {file}: {type(exc).__name__}: {exc}") from None
        state.update(part)
    return state


def _merge_lora(text_state: dict[str, Any], text_config: Any, lora: Path) -> dict[str, Any]:
    """``text_state`` (original Llama key names) with the LoRA adapter in ``lora`` merged in, through peft."""
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    if not (lora / "adapter_config.json").is_file():
        raise ModelLoadError(f"{lora} is not a peft LoRA directory (no adapter_config.json)")
    with torch.device("meta"):
        base = LlamaForCausalLM(text_config)
    missing, _ = base.load_state_dict(text_state, strict=False, assign=True)
    missing = [k for k in missing if "rotary" not in k]
    if missing:
        raise ModelLoadError(f"the base checkpoint lacks {len(missing)} Llama weights, e.g. {missing[0]}")
    try:
        merged = PeftModel.from_pretrained(base, str(lora)).merge_and_unload()
    except Exception as exc:
        raise ModelLoadError(f"cannot apply the LoRA in {lora}: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in merged.state_dict().items() if "rotary" not in k}


def _non_lora_trainables(lora: Path) -> dict[str, Any]:
    """Weights trained next to the LoRA (projector), with LLaVA's ``base_model.model.`` prefixes removed."""
    import torch

    path = lora / "non_lora_trainables.bin"
    if not path.is_file():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for key, value in state.items():
        key = key.removeprefix("base_model.")
        if key.startswith("model.model."):
            key = key.removeprefix("model.")
        out[key] = value
    return out


def _text_config(original: dict[str, Any], vocab_size: int) -> Any:
    from transformers import LlamaConfig

    keys = (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_theta",
        "rope_scaling",
        "hidden_act",
        "attention_bias",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "head_dim",
    )
    values = {k: original[k] for k in keys if original.get(k) is not None}
    return LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **values)


def llava_image_processor(clip_dir: Path | None, vision_config: Any, pad: bool) -> Any:
    """CLIP's preprocessing (from ``clip_dir`` when it has one) plus LLaVA's pad-to-square mode when ``pad``."""
    from transformers import LlavaImageProcessorPil

    settings: dict[str, Any] = {}
    config_file = clip_dir / "preprocessor_config.json" if clip_dir is not None else None
    if config_file is not None and config_file.is_file():
        raw = read_json(config_file)
        settings = {
            k: raw[k]
            for k in (
                "size",
                "crop_size",
                "image_mean",
                "image_std",
                "resample",
                "do_center_crop",
                "do_normalize",
                "do_rescale",
                "rescale_factor",
            )
            if k in raw
        }
    side = vision_config.image_size
    settings.setdefault("size", {"shortest_edge": side})
    settings.setdefault("crop_size", {"height": side, "width": side})
    settings.setdefault("image_mean", CLIP_MEAN)
    settings.setdefault("image_std", CLIP_STD)
    return LlavaImageProcessorPil(do_pad=pad, do_convert_rgb=True, **settings)


def _check_supported(original: dict[str, Any]) -> None:
    projector = original.get("mm_projector_type", "linear")
    problems = []
    if projector != "mlp2x_gelu":
        problems.append(
            f"mm_projector_type {projector!r} (only 'mlp2x_gelu' maps to LlavaForConditionalGeneration)"
        )
    if original.get("mm_use_im_start_end"):
        problems.append("mm_use_im_start_end=true (image start/end tokens)")
    if original.get("image_aspect_ratio", "pad") not in ("pad", "square", None):
        problems.append(f"image_aspect_ratio {original['image_aspect_ratio']!r} (LLaVA-NeXT any-resolution)")
    if original.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        problems.append(f"mm_vision_select_feature {original['mm_vision_select_feature']!r}")
    if problems:
        raise ModelLoadError("unsupported LLaVA checkpoint: " + "; ".join(problems))


def llava_input_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The ids the original LLaVA code gives ``prompt``: the text around each ``<image>`` tokenized on its own (the
    beginning-of-sequence token once, at the start), ``<image>``'s id between the pieces."""
    pieces = prompt.split(IMAGE_TOKEN)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = list(tokenizer(pieces[0], add_special_tokens=True)["input_ids"])
    for piece in pieces[1:]:
        ids += [image_token_id, *tokenizer(piece, add_special_tokens=False)["input_ids"]]
    return ids


def _llava_tokenizer(src_dir: Path) -> tuple[Any, bool]:
    """The checkpoint's tokenizer with ``<image>`` added and ``<unk>`` padding, and whether it gives a vicuna_v1
    prompt the original LLaVA code's ids, both as a whole prompt and as :func:`llava_input_ids` splits it.

    The class named in ``tokenizer_config.json`` is used (transformers' auto class would pick a generic one from the
    config's ``llava`` model type, without sentencepiece's leading space). The original ids come from the
    checkpoint's ``tokenizer.model`` through sentencepiece, each piece around ``<image>`` encoded on its own; without
    one, from the tokenizer itself. Only a legacy Llama tokenizer gives the piece after ``<image>`` its leading space
    in a whole prompt, so a ``legacy: false`` one (LLaVA-1.5's) is loaded, and saved, in legacy mode.
    """
    import transformers

    tokenizer_config = src_dir / "tokenizer_config.json"
    class_name = read_json(tokenizer_config).get("tokenizer_class") if tokenizer_config.is_file() else None
    tokenizer_class = getattr(transformers, str(class_name), None) or transformers.AutoTokenizer
    tokenizer = _load_tokenizer(tokenizer_class, src_dir)
    if _gives_original_ids(tokenizer, src_dir):
        return tokenizer, True
    if getattr(tokenizer, "legacy", True) is False:
        tokenizer = _load_tokenizer(tokenizer_class, src_dir, legacy=True)
        tokenizer.init_kwargs["legacy"] = True
        if _gives_original_ids(tokenizer, src_dir):
            return tokenizer, True
    log.warning(
        "the tokenizer of %s does not give a prompt the original LLaVA code's ids; "
        "captions may differ from the released model's",
        src_dir,
    )
    return tokenizer, False


def _load_tokenizer(tokenizer_class: Any, src_dir: Path, **kwargs: Any) -> Any:
    """The checkpoint's tokenizer with ``<image>`` added and ``<unk>`` as padding (as LLaVA pads)."""
    try:
        tokenizer = tokenizer_class.from_pretrained(str(src_dir), **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {src_dir}: {type(exc).__name__}: {exc}") from None
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:  # LLaVA pads with <unk>
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return tokenizer


def _original_ids(tokenizer: Any, src_dir: Path) -> list[int]:
    """The ids the original LLaVA code gives the probe prompt: each piece around ``<image>`` encoded on its own by
    the checkpoint's sentencepiece model (by the tokenizer itself when there is none)."""
    if not (src_dir / "tokenizer.model").is_file():
        return llava_input_ids(tokenizer, TOKENIZATION_PROBE)
    import sentencepiece

    model = sentencepiece.SentencePieceProcessor(model_file=str(src_dir / "tokenizer.model"))
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    first, *rest = TOKENIZATION_PROBE.split(IMAGE_TOKEN)
    ids = [model.bos_id(), *model.encode(first)]
    for piece in rest:
        ids += [image_token_id, *model.encode(piece)]
    return ids


def _gives_original_ids(tokenizer: Any, src_dir: Path) -> bool:
    """Whether ``tokenizer`` gives the probe prompt the original ids, whole and as :func:`llava_input_ids` splits it."""
    expected = _original_ids(tokenizer, src_dir)
    whole = tokenizer(TOKENIZATION_PROBE)["input_ids"]
    return whole == expected == llava_input_ids(tokenizer, TOKENIZATION_PROBE)


def convert_llava(
    src: str | Path,
    out: str | Path,
    lora: str | Path | None = None,
    vision_tower: str | Path | None = None,
    dtype: str | None = None,
    *,
    template: str = VICUNA_V1.name,
) -> Path:
    """Convert an original LLaVA-format checkpoint (and an optional LoRA on it) into a transformers directory.

    ``src``: the base checkpoint (hub id or dir, e.g. ASMv2-13B); ``lora``: a peft adapter dir trained on it
    (PancapChain); ``vision_tower``: the CLIP model (hub id or dir) when not the config's ``mm_vision_tower``;
    ``template``: the conversation the checkpoint was trained with (:mod:`~pancap_retrieval.captioners.conversation`:
    ``vicuna_v1`` for PancapChain, ASMv2, ShareGPT4V and LLaVA-1.5), the processor's chat template.
    Returns ``out``, loadable with ``LlavaForConditionalGeneration.from_pretrained`` and ``AutoProcessor``.
    Stages: read and check the source, the tokenizer (its ``<image>`` token decides the vocabulary), the language
    model (LoRA merged), the vision tower, the renamed state, config and processor, then everything saved.
    """
    import torch

    chat = conversation(template)
    src_dir, original, lora_dir = _source(src, lora, vision_tower)
    state = _source_state(src_dir, lora_dir)
    source_dtype = state["model.embed_tokens.weight"].dtype
    target_dtype = choose_dtype(torch.device("cpu"), dtype) if dtype else source_dtype

    tokenizer, tokenization_matches = _llava_tokenizer(src_dir)
    old_vocab = state["model.embed_tokens.weight"].shape[0]
    vocab = max(old_vocab, len(tokenizer))
    text_state, text_config = _language_model(state, original, old_vocab, lora_dir)
    text_config.vocab_size = vocab
    clip_source = vision_tower or original.get("mm_vision_tower")
    bundled = original.get("delay_load_vision_tower", True) is False
    clip_dir, vision_config, vision_state, tower_weights = _vision_tower(state, str(clip_source), bundled)
    # A CLIP tower keeps its own float32 unless a dtype was asked: loaded in fp16 it is then the released one.
    tower_dtype = torch.float32 if tower_weights == "clip" and not dtype else target_dtype
    out_state = _llava_state(state, text_state, vision_state, vocab, (target_dtype, tower_dtype))

    config = _llava_config(original, text_config, vision_config, tokenizer, state, target_dtype)
    processor = _llava_processor(original, clip_dir, vision_config, tokenizer, config, chat.chat_template())
    record = {
        "source": str(src),
        "lora": str(lora) if lora else None,
        "vision_tower": str(clip_source),
        "vision_tower_weights": tower_weights,
        "conversation": chat.name,
        "tokenizer_model_max_length": config.tokenizer_model_max_length,
        "image_aspect_ratio": original.get("image_aspect_ratio"),
        "image_token_id": config.image_token_index,
        "prompt_tokenization_matches_llava": tokenization_matches,
        "added_rows": vocab - old_vocab,
    }
    out_dir = _save(Path(out), out_state, config, processor, tokenizer, range(old_vocab, vocab), record)
    log.info("converted %s -> %s (%d tensors)", src, out_dir, len(out_state))
    return out_dir


def _source(
    src: str | Path, lora: str | Path | None, vision_tower: str | Path | None
) -> tuple[Path, dict[str, Any], Path | None]:
    """The checkpoint folder, its original config (checked: an original LLaVA we can convert) and the LoRA folder."""
    src_dir = model_dir(src, what="LLaVA checkpoint")
    original = read_json(src_dir / "config.json")
    architectures = original.get("architectures") or []
    if "LlavaForConditionalGeneration" in architectures:
        raise ModelLoadError(f"{src} is already a transformers LLaVA checkpoint; load it directly")
    if "mm_vision_tower" not in original and vision_tower is None:
        raise ModelLoadError(
            f"{src_dir}/config.json has no mm_vision_tower: not an original LLaVA checkpoint"
        )
    lora_dir = model_dir(lora, "adapter_config.json", what="LoRA adapter") if lora else None
    if lora_dir is not None and (lora_dir / "config.json").is_file():
        # The released loader builds a LoRA's model from the config saved with the LoRA, not the base's.
        original = {**original, **read_json(lora_dir / "config.json")}
    _check_supported(original)
    return src_dir, original, lora_dir


def _source_state(src_dir: Path, lora_dir: Path | None) -> dict[str, Any]:
    """Every source tensor (rotary buffers dropped), the LoRA's other trained weights on top; key ones checked."""
    state = load_state_dict(src_dir)
    state = {k: v for k, v in state.items() if "rotary_emb.inv_freq" not in k}
    if lora_dir is not None:
        state.update(_non_lora_trainables(lora_dir))
    for required in (
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.mm_projector.0.weight",
        "model.mm_projector.2.weight",
    ):
        if required not in state:
            raise ModelLoadError(
                f"{src_dir}: weight {required!r} missing; not an original LLaVA (mlp2x_gelu) checkpoint"
            )
    return state


def _language_model(
    state: dict[str, Any], original: dict[str, Any], old_vocab: int, lora_dir: Path | None
) -> tuple[dict[str, Any], Any]:
    """The Llama's weights (original key names, the LoRA merged in) and its config."""
    text_state = {
        k: v for k, v in state.items() if not k.startswith(("model.mm_projector.", "model.vision_tower."))
    }
    text_config = _text_config(original, old_vocab)
    if lora_dir is not None:
        text_state = _merge_lora(text_state, text_config, lora_dir)
    return text_state, text_config


def _vision_tower(state: dict[str, Any], clip_source: str, bundled: bool) -> tuple[Path, Any, dict[str, Any], str]:
    """The CLIP folder, its vision config, the tower's weights and where they came from (``"clip"`` or
    ``"bundled"``). As the released loader does: the CLIP model's weights, unless the config sets
    ``delay_load_vision_tower: false`` (``bundled``) and the checkpoint holds tower weights, which then replace them.
    """
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    clip_dir = model_dir(clip_source, what="vision tower")
    vision_config = CLIPVisionConfig.from_pretrained(str(clip_dir))
    prefix = "model.vision_tower.vision_tower."
    vision_state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if bundled and vision_state:
        return clip_dir, vision_config, vision_state, "bundled"
    try:
        vision_state = CLIPVisionModel.from_pretrained(str(clip_dir), dtype=torch.float32).state_dict()
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the vision tower {clip_source!r}: {type(exc).__name__}: {exc}"
        ) from None
    return clip_dir, vision_config, vision_state, "clip"


def _llava_state(
    state: dict[str, Any],
    text_state: dict[str, Any],
    vision_state: dict[str, Any],
    vocab: int,
    dtypes: tuple[Any, Any],
) -> dict[str, Any]:
    """The weights under ``LlavaForConditionalGeneration``'s names, embedding rows added up to ``vocab``, in
    ``dtypes`` (the vision tower's second)."""
    import torch

    out_state: dict[str, Any] = {}
    for key, value in text_state.items():
        if key.startswith("model."):
            key = "model.language_model." + key.removeprefix("model.")
        out_state[key] = value
    for key, value in vision_state.items():
        key = key.removeprefix("vision_model.")
        if key.endswith("position_ids"):
            continue
        out_state["model.vision_tower." + key] = value
    for index, name in (("0", "linear_1"), ("2", "linear_2")):
        for part in ("weight", "bias"):
            key = f"model.mm_projector.{index}.{part}"
            if key in state:
                out_state[f"model.multi_modal_projector.{name}.{part}"] = state[key]
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        weight = out_state[key]
        if weight.shape[0] < vocab:  # new rows (the <image> token): the mean row; generation suppresses them
            extra = weight.float().mean(0, keepdim=True).expand(vocab - weight.shape[0], -1).to(weight.dtype)
            out_state[key] = torch.cat([weight, extra], dim=0)
    tower = "model.vision_tower."
    return {k: v.to(dtypes[k.startswith(tower)]).contiguous() for k, v in out_state.items()}


def _llava_config(
    original: dict[str, Any],
    text_config: Any,
    vision_config: Any,
    tokenizer: Any,
    state: dict[str, Any],
    target_dtype: Any,
) -> Any:
    """The ``LlavaConfig``: feature layer and strategy from ``mm_vision_select_*``, one token per image feature."""
    from transformers import LlavaConfig

    select = original.get("mm_vision_select_feature", "patch")
    config = LlavaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_layer=int(original.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if select == "patch" else "full",
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2 + (select != "patch"),
        multimodal_projector_bias="model.mm_projector.0.bias" in state,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    config.dtype = str(target_dtype).removeprefix("torch.")
    # The released model cuts every prompt (image features spliced in) to this many positions; kept for the same cut.
    config.tokenizer_model_max_length = original.get("tokenizer_model_max_length")
    return config


def _llava_processor(
    original: dict[str, Any], clip_dir: Path, vision_config: Any, tokenizer: Any, config: Any, chat_template: str
) -> Any:
    """The ``LlavaProcessor``: CLIP preprocessing (padded to a square when trained so) and the chat template."""
    from transformers import LlavaProcessor

    image_processor = llava_image_processor(
        clip_dir, vision_config, pad=original.get("image_aspect_ratio") == "pad"
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )


def _save(
    out_dir: Path,
    out_state: dict[str, Any],
    config: Any,
    processor: Any,
    tokenizer: Any,
    added_ids: range,
    record: dict[str, Any],
) -> Path:
    """Weights, config, processor, a generation config that never emits the added rows, and ``pancap_conversion.json``."""
    from huggingface_hub import save_torch_state_dict
    from transformers import GenerationConfig

    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=list(added_ids) or None,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    save_torch_state_dict(out_state, str(out_dir), max_shard_size="5GB")
    config.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))
    generation.save_pretrained(str(out_dir))
    (out_dir / "pancap_conversion.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir
