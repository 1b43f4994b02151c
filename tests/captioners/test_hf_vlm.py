"""The transformers baselines and the shared generation engine, on a tiny random-weight LLaVA saved to disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pancap_retrieval.captioners import get_captioner
from pancap_retrieval.captioners.base import Example
from pancap_retrieval.captioners.generation import collate_left, resolve_model
from pancap_retrieval.captioners.hf_vlm import PROMPTS, resolve_prompt
from pancap_retrieval.errors import ModelLoadError


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


def test_named_prompts_and_llava_baseline_batched_like_one_by_one(tiny_llava, examples):
    captioner = get_captioner("llava-1.5", model=str(tiny_llava), batch_size=3, max_new_tokens=10)
    assert captioner.prompt_text().endswith("USER: <image>\nDescribe this image in detail. ASSISTANT:")
    records = captioner.caption_batch(examples)
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    manifest = captioner.manifest()
    assert (manifest["prompt_name"], manifest["prompt"]) == ("detailed", PROMPTS["detailed"])
    single = get_captioner("hf", model=str(tiny_llava), prompt="detailed", batch_size=1, max_new_tokens=10)
    assert [single.caption_batch([e])[0].caption for e in examples] == [r.caption for r in records]
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
