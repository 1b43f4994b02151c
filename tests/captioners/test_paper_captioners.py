"""The paper's GIT and BLIP caption rows on tiny random-weight models of their real classes, loaded back from disk."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pancap_retrieval.captioners import CAPTIONERS, get_captioner
from pancap_retrieval.captioners.base import Example
from pancap_retrieval.errors import OptionError


@pytest.fixture(scope="module")
def examples():
    from skimage import data

    sizes = {"astronaut": (40, 30), "coffee": (30, 40), "chelsea": (64, 48), "rocket": (33, 33)}
    return [
        Example(name, Image.fromarray(getattr(data, name)()).convert("RGB").resize(size), *size)
        for name, size in sizes.items()
    ]


def direct_caption(name, directory, image, prompt, max_new_tokens):
    """One image captioned by transformers itself, as its model card shows, the prompt cut off."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(directory)
    pixels = processor(images=image, return_tensors="pt").pixel_values
    with torch.inference_mode():
        if name == "git":
            model = transformers.GitForCausalLM.from_pretrained(directory).eval()
            ids = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens)
            return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        model = transformers.BlipForConditionalGeneration.from_pretrained(directory).eval()
        inputs = processor(images=image, text=prompt, return_tensors="pt") if prompt else {"pixel_values": pixels}
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens)
        text = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        return text[len(prompt):].strip() if prompt and text.startswith(prompt) else text


@pytest.mark.parametrize("name,prompt", [("git", ""), ("blip", ""), ("blip", "a picture of")])
def test_batched_captions_equal_transformers(name, prompt, paper_dirs, examples):
    """Batched here, one image at a time in transformers (batched equals one by one: tests/contracts.py)."""
    batched = get_captioner(name, model=str(paper_dirs[name]), prompt=prompt, batch_size=4, max_new_tokens=8)
    records = batched.caption_batch(examples)
    assert [r.status for r in records] == ["ok"] * len(examples)
    assert len({r.caption for r in records}) > 1  # the captions depend on the image
    want = [direct_caption(name, paper_dirs[name], e.image, prompt, 8) for e in examples]
    assert [r.caption for r in records] == want
    manifest = batched.manifest()
    assert (manifest["name"], manifest["prompt"], manifest["generation"]["decoding"]) == (name, prompt, "greedy")


def test_beam_search_batched_equals_one_by_one(paper_dirs, examples):
    batched = get_captioner("git", model=str(paper_dirs["git"]), batch_size=3, num_beams=3, max_new_tokens=6)
    single = get_captioner("git", model=str(paper_dirs["git"]), batch_size=1, num_beams=3, max_new_tokens=6)
    assert [r.caption for r in batched.caption_batch(examples)] == [
        single.caption_batch([e])[0].caption for e in examples
    ]
    assert batched.manifest()["generation"]["decoding"] == "beam search (3 beams)"
    with pytest.raises(OptionError, match="num_beams"):
        get_captioner("git", model=str(paper_dirs["git"]), num_beams=0)


def test_defaults_are_named_and_a_rejected_image_is_recorded(paper_dirs, examples):
    import numpy as np

    assert "microsoft/git-large-coco" in CAPTIONERS.description("git")
    assert "Salesforce/blip-image-captioning-large" in CAPTIONERS.description("blip")
    captioner = get_captioner("blip", model=str(paper_dirs["blip"]), max_new_tokens=4)
    bad = Example("bad", np.zeros((4,), dtype=np.uint8), 4, 1)
    records = captioner.caption_batch([examples[0], bad, examples[1]])
    assert [r.status for r in records] == ["ok", "failed", "ok"]
    assert "image rejected by the processor" in records[1].error
