"""The transformers baselines and the shared generation engine, on a tiny random-weight LLaVA saved to disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pancap_retrieval.captioners import get_captioner
from pancap_retrieval.captioners.base import Example
from pancap_retrieval.captioners.generation import collate_left
from pancap_retrieval.captioners.hf_vlm import PROMPTS, resolve_prompt
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import resolve_model


@pytest.fixture(scope="module")
def examples():
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB").resize((40, 30))
        out.append(Example(name, image, 40, 30))
    return out


def test_offline_unknown_hub_id_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        get_captioner("hf", model="nobody-xyz/no-such-vlm-123")
    message = str(info.value)
    assert "\n" not in message
    assert "'nobody-xyz/no-such-vlm-123'" in message and "pass a local model directory" in message
    with pytest.raises(ModelLoadError, match="no such directory"):
        resolve_model("./no/such/dir")


def test_named_prompts_and_llava_baseline_equals_the_generic_entry(tiny_llava, examples):
    captioner = get_captioner("llava-1.5", model=str(tiny_llava), batch_size=3, max_new_tokens=10)
    assert captioner.prompt_text().endswith("USER: <image>\nDescribe this image in detail. ASSISTANT:")
    records = captioner.caption_batch(examples)
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    manifest = captioner.manifest()
    assert (manifest["prompt_name"], manifest["prompt"]) == ("detailed", PROMPTS["detailed"])
    # llava-1.5 is the generic entry with the detailed prompt (batched equals one by one: tests/contracts.py)
    generic = get_captioner("hf", model=str(tiny_llava), prompt="detailed", batch_size=3, max_new_tokens=10)
    assert [r.caption for r in generic.caption_batch(examples)] == [r.caption for r in records]
    assert resolve_prompt("panoptic")[1].startswith("Describe this image as a panoptic caption")
    assert resolve_prompt("Where is the cat?") == ("custom", "Where is the cat?")


def test_rejected_image_is_recorded_and_the_rest_captioned(tiny_llava, examples):
    captioner = get_captioner("hf", model=str(tiny_llava), prompt="brief", max_new_tokens=4)
    bad = Example("bad", np.zeros((4,), dtype=np.uint8), 4, 1)
    records = captioner.caption_batch([examples[0], bad, examples[1]])
    assert [r.status for r in records] == ["ok", "failed", "ok"]
    assert "image rejected by the processor" in records[1].error


def test_out_of_memory_halves_the_batch_and_records_it(tiny_llava, examples, monkeypatch):
    captioner = get_captioner("hf", model=str(tiny_llava), batch_size=4, max_new_tokens=6)
    expected = [r.caption for r in captioner.caption_batch(examples)]
    real = captioner.model.generate

    def small_memory(**inputs):
        if inputs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**inputs)

    monkeypatch.setattr(captioner.model, "generate", small_memory)
    records = captioner.caption_batch(examples)
    assert [r.caption for r in records] == expected
    stats = captioner.generator.stats.to_dict()
    assert (stats["batch_size"], stats["smallest_batch_size"], stats["oom_backoffs"]) == (4, 1, 2)
    assert records[0].meta["batch_size"] == 1


def test_collate_left_pads_sequences_and_concatenates_images():
    a = {"input_ids": torch.tensor([[5, 6, 7]]), "pixel_values": torch.zeros(1, 3, 2, 2)}
    b = {"input_ids": torch.tensor([[8]]), "pixel_values": torch.ones(1, 3, 2, 2)}
    batch = collate_left([a, b], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["pixel_values"].shape == (2, 3, 2, 2)
    assert collate_left([b], pad_token_id=0, pad_to_multiple_of=4)["input_ids"].tolist() == [[0, 0, 0, 8]]


def test_sharegpt4v_needs_a_converted_checkpoint():
    with pytest.raises(ModelLoadError, match="pancap convert llava Lin-Chen/ShareGPT4V-7B"):
        get_captioner("sharegpt4v")


def test_blip2_captions_without_a_prompt(tiny_blip2, examples):
    captioner = get_captioner("blip2", model=str(tiny_blip2), batch_size=3, max_new_tokens=8)
    assert captioner.prompt_text() == ""
    features = captioner.encode(examples[0])
    # the processor puts one image token per Q-Former query before the text
    assert features["input_ids"][0].tolist()[:4] == [captioner.model.config.image_token_id] * 4
    records = captioner.caption_batch(examples)
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    manifest = captioner.manifest()
    assert (manifest["model_class"], manifest["prompt_name"]) == ("Blip2ForConditionalGeneration", "caption")


def _qwen_inputs(tokenizer, image_processor, image, prompt):
    """Qwen2.5-VL's chat-format inputs: one ``<|image_pad|>`` per merged 2x2 patch group of the resized image."""
    vision = image_processor(images=[image], return_tensors="pt")
    n = int(vision["image_grid_thw"].prod()) // image_processor.merge_size**2
    text = (
        "<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"
        f"{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    return {**ids, "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}


def test_qwen25vl_batched_left_padded_generation_equals_one_by_one(tiny_qwen25vl, examples):
    """M-RoPE positions under left padding: images of three sizes give prompts of three lengths."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    from pancap_retrieval.captioners.generation import caption_generator, load_model

    model = load_model(str(tiny_qwen25vl), "Qwen2_5_VLForConditionalGeneration", device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen25vl)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    sizes = [(56, 56), (112, 56), (112, 84)]
    items = [
        _qwen_inputs(tokenizer, image_processor, e.image.resize(size), PROMPTS["brief"])
        for e, size in zip(examples, sizes)
    ]
    assert len({int(item["input_ids"].shape[-1]) for item in items}) == 3
    never = [model.config.image_token_id]
    batched = caption_generator(model, tokenizer, never, max_new_tokens=8, batch_size=3).generate(items)
    one = caption_generator(model, tokenizer, never, max_new_tokens=8, batch_size=1)
    singles = [one.generate([item])[0] for item in items]
    assert [g.token_ids for g in batched] == [g.token_ids for g in singles]
    assert all(g.token_ids for g in batched)


def test_qwen25vl_names_torchvision_exactly_when_it_is_missing(tiny_qwen25vl, tmp_path):
    """The Qwen2.5-VL processor needs torchvision: without it, loading fails in one line that says so; with it,
    no error blames torchvision."""
    import json
    import shutil

    from transformers import Qwen2VLImageProcessorPil

    try:
        import torchvision  # noqa: F401

        has_torchvision = True
    except (ImportError, RuntimeError):
        has_torchvision = False
    directory = tmp_path / "qwen"
    shutil.copytree(tiny_qwen25vl, directory)
    Qwen2VLImageProcessorPil().save_pretrained(directory)
    (directory / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2_5_VLProcessor"}))
    try:
        get_captioner("qwen2.5-vl", model=str(directory))
        error = ""
    except ModelLoadError as exc:
        error = str(exc)
    if has_torchvision:
        assert "needs torchvision" not in error
    else:
        assert "\n" not in error and "this processor needs torchvision" in error
