"""``convert_llava``: a tiny original-format LLaVA checkpoint + peft LoRA -> LlavaForConditionalGeneration.

The original format written here is the LLaVA repository's ``LlavaLlamaForCausalLM`` state dict: Llama keys
(``model.embed_tokens``, ``model.layers.N.*``, ``model.norm``, ``lm_head``), ``model.mm_projector.0/2`` and,
when bundled, ``model.vision_tower.vision_tower.vision_model.*``; its config.json is a Llama config with the
``mm_*`` keys. The converted model's logits must equal a forward pass written from the original weights.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from pancap_retrieval.captioners.base import Example
from pancap_retrieval.captioners.conversation import LLAVA_V1, VICUNA_V1
from pancap_retrieval.captioners.convert import convert_llava
from pancap_retrieval.errors import ModelLoadError, OptionError
from pancap_retrieval.testing import synthetic_tokenizer

HIDDEN, VISION, IMAGE, PATCH = 32, 24, 30, 15


def _llama_config(vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(root, weights) of a tiny original-format checkpoint, its CLIP dir and a LoRA dir with non-LoRA trainables."""
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM

    root = tmp_path_factory.mktemp("llava_original")
    torch.manual_seed(0)
    base_tok = synthetic_tokenizer(
        ["USER: ASSISTANT: describe the photo of a cat and a dog."], vocab_size=300
    )
    vocab = (
        len(base_tok) - 1
    )  # the synthetic tokenizer carries <image> as its last token; an original one does not
    llama = LlamaForCausalLM(_llama_config(vocab))
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=VISION,
            intermediate_size=48,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=IMAGE,
            patch_size=PATCH,
            projection_dim=VISION,
        )
    )
    projector = {
        "model.mm_projector.0.weight": torch.randn(HIDDEN, VISION) * 0.2,
        "model.mm_projector.0.bias": torch.randn(HIDDEN) * 0.2,
        "model.mm_projector.2.weight": torch.randn(HIDDEN, HIDDEN) * 0.2,
        "model.mm_projector.2.bias": torch.randn(HIDDEN) * 0.2,
    }
    text_state = {k: v.clone() for k, v in llama.state_dict().items() if "rotary" not in k}
    vision_state = {
        f"model.vision_tower.vision_tower.vision_model.{k}": v.clone() for k, v in vision.state_dict().items()
    }
    config = {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        **{
            k: getattr(llama.config, k)
            for k in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "rms_norm_eps",
                "max_position_embeddings",
                "vocab_size",
            )
        },
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "mm_vision_tower": str(root / "clip"),
        "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": VISION,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "image_aspect_ratio": "pad",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "tokenizer_model_max_length": 4096,
    }
    for name, state in (
        ("bundled", {**text_state, **projector, **vision_state}),
        ("plain", {**text_state, **projector}),
    ):
        directory = root / name
        directory.mkdir()
        # An original tokenizer has no <image>: rebuild one without it.
        base_tok.save_pretrained(directory)
        tok_config = json.loads((directory / "tokenizer_config.json").read_text())
        tok_json = json.loads((directory / "tokenizer.json").read_text())
        tok_json["added_tokens"] = [t for t in tok_json["added_tokens"] if t["content"] != "<image>"]
        (directory / "tokenizer.json").write_text(json.dumps(tok_json))
        for key in ("additional_special_tokens", "extra_special_tokens"):
            tok_config.pop(key, None)
        tok_config["added_tokens_decoder"] = {
            k: v for k, v in tok_config.get("added_tokens_decoder", {}).items() if v["content"] != "<image>"
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(tok_config))
        save_file(state, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps(config))
    vision.save_pretrained(root / "clip")
    (root / "clip" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "size": {"shortest_edge": IMAGE},
                "crop_size": {"height": IMAGE, "width": IMAGE},
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "resample": 3,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
            }
        )
    )

    peft_model = get_peft_model(
        LlamaForCausalLM(_llama_config(vocab)),
        LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
        ),
    )
    peft_model.save_pretrained(root / "lora")
    # the full config LLaVA's training saves next to a LoRA: the one the released loader builds the model from
    (root / "lora" / "config.json").write_text(json.dumps({**config, "tokenizer_model_max_length": 2048}))
    trained_projector = {k: v + 0.1 for k, v in projector.items()}
    torch.save(
        {f"base_model.model.{k}": v for k, v in trained_projector.items()},
        root / "lora" / "non_lora_trainables.bin",
    )
    return {
        "root": root,
        "text": text_state,
        "vision": vision.state_dict(),
        "projector": trained_projector,
        "vocab": vocab,
    }


def _reference_logits(original, input_ids, pixel_values, image_token_id):
    """LLaVA's forward from the original weights: merged LoRA, penultimate CLIP layer without CLS, projector,
    image features spliced in place of the image tokens, then Llama."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM

    adapter = load_file(str(original["root"] / "lora" / "adapter_model.safetensors"))
    lora_config = json.loads((original["root"] / "lora" / "adapter_config.json").read_text())
    scale = lora_config["lora_alpha"] / lora_config["r"]
    merged = dict(original["text"])
    for key, a in adapter.items():
        if ".lora_A." not in key:
            continue
        b = adapter[key.replace(".lora_A.", ".lora_B.")]
        target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        merged[target] = merged[target] + scale * (b @ a)
    llama = LlamaForCausalLM(_llama_config(original["vocab"]))
    llama.load_state_dict(merged, strict=False)
    vision = CLIPVisionModel(CLIPVisionConfig.from_pretrained(original["root"] / "clip"))
    vision.load_state_dict(original["vision"])
    p = original["projector"]
    with torch.no_grad():
        features = vision(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
        hidden = torch.nn.functional.gelu(
            features @ p["model.mm_projector.0.weight"].T + p["model.mm_projector.0.bias"]
        )
        image_embeds = hidden @ p["model.mm_projector.2.weight"].T + p["model.mm_projector.2.bias"]
        is_image = input_ids[0] == image_token_id
        embeds = llama.model.embed_tokens(input_ids.masked_fill(input_ids == image_token_id, 0))
        embeds[0, is_image] = image_embeds[0]
        return llama(inputs_embeds=embeds).logits


def _expand2square(image: Image.Image, mean: list[float]) -> Image.Image:
    side = max(image.size)
    square = Image.new("RGB", (side, side), tuple(int(m * 255) for m in mean))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


@pytest.mark.parametrize("layout", ["bundled", "plain"])
def test_converted_logits_match_the_original_forward(original, tmp_path, layout):
    from transformers import AutoProcessor, CLIPImageProcessorPil, LlavaForConditionalGeneration

    root = original["root"]
    out = convert_llava(
        root / layout,
        tmp_path / "hf",
        lora=root / "lora",
        vision_tower=None if layout == "bundled" else root / "clip",
    )
    model, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    processor = AutoProcessor.from_pretrained(out)
    config = model.config
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>") == original["vocab"]
    assert config.text_config.vocab_size == original["vocab"] + 1
    assert model.generation_config.suppress_tokens == [original["vocab"]]
    # the prompt cap of the LoRA's config kept, the template trained with written and recorded
    assert config.tokenizer_model_max_length == 2048
    record = json.loads((out / "pancap_conversion.json").read_text())
    assert (record["conversation"], record["tokenizer_model_max_length"]) == ("vicuna_v1", 2048)
    assert record["vision_tower_weights"] == "clip"
    assert processor.chat_template == VICUNA_V1.chat_template()

    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((45, 30))  # wider than tall: pad mode adds bands
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the photo"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text.endswith("USER: <image>\ndescribe the photo ASSISTANT:")
    inputs = processor(images=[photo], text=[text], return_tensors="pt")
    assert int((inputs["input_ids"] == config.image_token_id).sum()) == (IMAGE // PATCH) ** 2

    mean = processor.image_processor.image_mean
    square = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}
    )(images=[_expand2square(photo, mean)], return_tensors="pt")["pixel_values"]
    assert torch.allclose(inputs["pixel_values"], square, atol=1e-6)

    with torch.no_grad():
        logits = model(**inputs).logits
    reference = _reference_logits(
        original, inputs["input_ids"], inputs["pixel_values"], config.image_token_id
    )
    assert logits.shape[-1] == original["vocab"] + 1
    torch.testing.assert_close(logits[..., : original["vocab"]], reference, atol=1e-4, rtol=1e-4)


def test_refuses_unsupported_and_missing_checkpoints(original, tmp_path):
    src = tmp_path / "linear"
    src.mkdir()
    config = json.loads((original["root"] / "bundled" / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "mm_projector_type": "linear"}))
    with pytest.raises(ModelLoadError, match="mm_projector_type 'linear'"):
        convert_llava(src, tmp_path / "out")
    with pytest.raises(ModelLoadError, match="no such directory"):
        convert_llava(tmp_path / "nowhere", tmp_path / "out")


def _sentencepiece_model(corpus: list[str]):
    """A Llama-style sentencepiece model (BPE, byte fallback, dummy prefix, whitespace kept) trained on ``corpus``."""
    import io

    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=proto,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=proto.getvalue()), proto.getvalue()


@pytest.mark.parametrize("legacy", [False, True])
def test_sentencepiece_tokenizer_gives_the_original_llava_prompt_ids(original, tmp_path, legacy):
    """A checkpoint with only ``tokenizer.model`` (as LLaVA-1.5, ASMv2 and ShareGPT4V ship): after conversion, the
    processor's whole-prompt ids and the pancapchain captioner's ids both equal the original LLaVA code's, which
    tokenizes the text around ``<image>`` separately with sentencepiece."""
    from transformers import AutoProcessor

    from pancap_retrieval.captioners.pancapchain import STAGE_PROMPTS, PancapChainCaptioner

    sp, proto = _sentencepiece_model(
        [VICUNA_V1.system, *STAGE_PROMPTS.values(), "USER: ASSISTANT: dog <box>[[12, 340, 560, 789]]</box>.\n"] * 3
    )
    src = tmp_path / "spm"
    src.mkdir()
    state = load_file(str(original["root"] / "bundled" / "model.safetensors"))
    grow = sp.vocab_size() - original["vocab"]
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        state[key] = torch.cat([state[key], torch.randn(grow, HIDDEN) * 0.2])
    save_file(state, str(src / "model.safetensors"))
    config = json.loads((original["root"] / "bundled" / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "vocab_size": sp.vocab_size()}))
    (src / "tokenizer.model").write_bytes(proto)
    (src / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "legacy": legacy,
                "add_bos_token": True,
                "add_eos_token": False,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": None,
                "clean_up_tokenization_spaces": False,
            }
        )
    )
    out = convert_llava(src, tmp_path / "hf")
    record = json.loads((out / "pancap_conversion.json").read_text())
    assert record["prompt_tokenization_matches_llava"] and record["tokenizer_model_max_length"] == 4096

    processor = AutoProcessor.from_pretrained(out)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == sp.vocab_size()
    question = STAGE_PROMPTS["stage2"].format(previous="<box>[[12, 340, 560, 789]]</box>, <box>[[1, 2, 3, 4]]</box>")
    before, after = VICUNA_V1.prompt(question).split("<image>")
    expected = [1, *sp.encode(before), image_id, *sp.encode(after)]
    assert sp.id_to_piece(expected[expected.index(image_id) + 1 : expected.index(image_id) + 3]) == ["▁", "<0x0A>"]

    def collapsed(ids):
        return [t for i, t in enumerate(ids) if t != image_id or ids[i - 1] != image_id]

    photo = Image.new("RGB", (40, 30), (120, 80, 40))
    whole = processor(images=[photo], text=[VICUNA_V1.prompt(question)], return_tensors="pt")["input_ids"][0]
    assert collapsed(whole.tolist()) == expected
    captioner = PancapChainCaptioner(model=str(out), max_new_tokens=2)
    chained = captioner.encode(question, captioner._pixels(Example("p", photo, 40, 30)))["input_ids"][0]
    assert collapsed(chained.tolist()) == expected

    answer = "dog <box>[[12, 340, 560, 789]]</box>, a cat.\nThe cat sits."
    assert processor.tokenizer.decode(sp.encode(answer), skip_special_tokens=True) == answer


def test_vision_tower_weights_come_from_where_the_released_loader_takes_them(original, tmp_path):
    """The released builder delays the tower (``delay_load_vision_tower`` defaults to true): tower weights in the
    checkpoint are skipped and the CLIP model named in ``mm_vision_tower`` is loaded, in its own float32 (cast to
    fp16 at inference). With the key set to false the checkpoint's own tower weights load over it."""
    from transformers import AutoProcessor

    src = tmp_path / "retuned"
    shutil.copytree(original["root"] / "bundled", src)
    key = "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight"
    state = {k: v.to(torch.bfloat16) for k, v in load_file(str(src / "model.safetensors")).items()}
    state[key] = state[key] + 0.5  # a bf16 checkpoint whose tower differs from the CLIP model's
    save_file(state, str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    clip = next(v for k, v in original["vision"].items() if k.endswith("embeddings.patch_embedding.weight"))
    for delay, expected, weights in ((None, clip, "clip"), (False, state[key], "bundled")):
        if delay is not None:
            (src / "config.json").write_text(json.dumps({**config, "delay_load_vision_tower": delay}))
        out = convert_llava(src, tmp_path / f"hf_{weights}", template="llava_v1")
        saved = load_file(str(out / "model.safetensors"))
        torch.testing.assert_close(saved["model.vision_tower.embeddings.patch_embedding.weight"], expected, rtol=0, atol=0)
        assert saved["lm_head.weight"].dtype == torch.bfloat16
        record = json.loads((out / "pancap_conversion.json").read_text())
        assert (record["vision_tower_weights"], record["conversation"]) == (weights, "llava_v1")
        assert AutoProcessor.from_pretrained(out).chat_template == LLAVA_V1.chat_template()
    with pytest.raises(OptionError, match="unknown conversation template 'v2'; use one of: vicuna_v1, llava_v1"):
        convert_llava(src, tmp_path / "never", template="v2")
