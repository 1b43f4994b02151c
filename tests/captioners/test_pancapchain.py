"""PancapChain on a tiny random-weight LLaVA saved to disk and loaded through the real loader, on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pancap_retrieval.captioners import get_captioner
from pancap_retrieval.captioners.base import Example, caption_dataset
from pancap_retrieval.captioners.generation import Generation
from pancap_retrieval.captioners.pancapchain import (
    CONVERSATION,
    STAGE_PROMPTS,
    PancapChainCaptioner,
    merge_entities,
    tag_entities,
)
from pancap_retrieval.captions.store import CaptionStore
from pancap_retrieval.data.records import dataset_from_images
from pancap_retrieval.errors import ModelLoadError

PHOTOS = ("astronaut", "coffee", "chelsea")


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    images = {}
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        images[name] = image.resize((image.width // 8, image.height // 8))
    return images


def _examples(photos):
    return [Example(name, image, image.width, image.height) for name, image in photos.items()]


@pytest.mark.slow
def test_four_stages_are_stored_and_the_static_cache_does_not_change_outputs(tiny_llava, photos, tmp_path):
    dataset = dataset_from_images(photos)
    captioner = get_captioner("pancapchain", model=str(tiny_llava), batch_size=3, max_new_tokens=12)
    store = CaptionStore(tmp_path / "captions.jsonl")
    stats = caption_dataset(captioner, dataset, store, batch_size=3, progress=False)
    assert (stats.ok, stats.failed) == (3, 0)
    records = {r.example_id: r for r in store.records()}
    assert list(records) == list(PHOTOS)
    for record in records.values():
        assert {"stage1", "stage2", "stage3", "stage4", "entities"} <= set(record.stages)
        assert record.caption == record.stages["stage4"]
        assert isinstance(record.stages["entities"]["entities"], list)
        assert record.meta["batch_size"] == 3
    # a rerun finds everything done
    assert caption_dataset(captioner, dataset, store, progress=False).skipped_done == 3

    # (batched equals one by one: tests/contracts.py) the photos give different outputs: the image reaches the model
    stored = [records[name] for name in PHOTOS]
    assert len({r.stages["stage1"] for r in stored}) > 1

    # the GPU path's static KV cache (prompts left-padded to a multiple of 64) gives the same greedy outputs
    static = PancapChainCaptioner(model=str(tiny_llava), batch_size=3, max_new_tokens=12, static_cache=True)
    assert static.generator.pad_to_multiple_of == 64
    assert [r.stages for r in static.caption_batch(_examples(photos))] == [r.stages for r in stored]


def test_prompt_is_vicuna_v1_with_one_image_token_per_feature(tiny_llava, photos):
    captioner = PancapChainCaptioner(model=str(tiny_llava), max_new_tokens=4)
    # the released vicuna_v1 conversation (--conv-mode vicuna_v1), the same in every stage
    assert CONVERSATION.prompt(STAGE_PROMPTS["stage1"]) == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\nPlease localize all entities in "
        "this image. ASSISTANT:"
    )
    pixels = captioner.processor.image_processor(images=[photos["coffee"]], return_tensors="pt")[
        "pixel_values"
    ]
    inputs = captioner.encode(STAGE_PROMPTS["stage1"], pixels)
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == captioner.tokenizer.bos_token_id
    assert ids.count(captioner.image_token_id) == 4  # (30 // 15) ** 2 patches, CLS dropped
    text = captioner.tokenizer.decode(ids, skip_special_tokens=True)
    assert text.endswith("USER: \nPlease localize all entities in this image. ASSISTANT:")
    assert captioner.manifest()["prompts"]["stage2"].startswith("Please specify the semantic tags")


def test_robust_handoff_chains_on_valid_items_and_merges_without_duplicates(tiny_llava, photos, monkeypatch):
    """The robust hand-off's bookkeeping with scripted stage answers: the real model runs, its answers are replaced."""
    captioner = PancapChainCaptioner(model=str(tiny_llava), max_new_tokens=4, handoff="robust")
    answers = {
        "localize": "<box>[[0, 250, 500, 750]]</box>, <box>[[500, 250, 1000, 750]]</box>, <box>[[10, 20",
        "semantic": "dog <box>[[0, 250, 500, 750]]</box>, cat <box>[[500, 250, 1000, 750]]</box>",
        "missing": "cat <box>[[500, 250, 1000, 750]]</box>, red ball <box>[[400, 400, 600, 600]]</box>",
        "hyper": "A dog <box>[[0, 250, 500, 750]]</box> and a cat play with a red ball.",
    }
    prompts = []
    real_generate = captioner.generator.generate

    def scripted(items):
        real_generate(items)
        texts = [captioner.tokenizer.decode(item["input_ids"][0], skip_special_tokens=True) for item in items]
        prompts.extend(texts)
        key = next(k for k in answers if k in texts[0])
        return [Generation([], answers[key], truncated=False) for _ in items]

    monkeypatch.setattr(captioner.generator, "generate", scripted)
    wide = Example(
        "wide", photos["chelsea"].resize((200, 100)), 200, 100
    )  # padded: y in 250..750 is the image
    record = captioner.caption_batch([wide])[0]
    assert record.status == "ok"
    assert prompts[1].endswith(
        "bounding boxes: <box>[[0, 250, 500, 750]]</box>, <box>[[500, 250, 999, 750]]</box> ASSISTANT:"
    )
    assert record.stages["entities"]["entities"] == [
        {"phrase": "dog", "boxes": [[0.0, 0.0, 0.5, 1.0]]},
        {"phrase": "cat", "boxes": [[0.5, 0.0, 1.0, 1.0]]},
        {"phrase": "red ball", "boxes": [[0.4, 0.3, 0.6, 0.7]]},
    ]
    assert "red ball <box>[[400, 400, 600, 600]]</box> ASSISTANT:" in prompts[3]
    assert record.caption == answers["hyper"]


def test_none_adds_nothing_and_tags_keep_whole_phrases():
    entities = tag_entities("man in a red shirt <box>[[0, 0, 500, 500]]</box>", 100, 100)
    assert entities[0].phrase == "man in a red shirt"
    assert merge_entities(entities, tag_entities("None", 100, 100)) == entities


def test_rejected_image_is_a_recorded_failure(tiny_llava, photos):
    captioner = PancapChainCaptioner(model=str(tiny_llava), max_new_tokens=4)
    bad = Example("bad", np.zeros((4,), dtype=np.uint8), 4, 1)
    records = captioner.caption_batch([*_examples(photos)[:1], bad])
    assert [r.status for r in records] == ["ok", "failed"]
    assert records[1].error.startswith("image rejected by the processor")


def test_needs_a_converted_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match="pancap convert llava"):
        PancapChainCaptioner(model=None)
    (tmp_path / "config.json").write_text('{"architectures": ["LlavaLlamaForCausalLM"]}')
    with pytest.raises(ModelLoadError, match="original LLaVA-format"):
        PancapChainCaptioner(model=str(tmp_path))
