"""PancapChain with each image's prefix (system prompt + image tokens) prefilled once for its four stages, against the
four separate vicuna_v1 conversations of the released chain: tiny and wider random LLaVAs loaded from disk, real
photos of different sizes, fp32 greedy identity, teacher-forced logits in fp32 and bf16, per-row stop lengths."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pancap_retrieval.captioners import generation
from pancap_retrieval.captioners.base import Example
from pancap_retrieval.captioners.decoding import collate_prefixed, compare_logits
from pancap_retrieval.captioners.pancapchain import PancapChainCaptioner

STAGES = ("stage1", "stage2", "stage3", "stage4")


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    """Four real photos of different sizes and shapes (square, portrait, landscape, a wide strip)."""
    from skimage import data

    out = []
    for name, size in (
        ("astronaut", (64, 64)),
        ("coffee", (50, 75)),
        ("chelsea", (90, 60)),
        ("rocket", (120, 30)),
    ):
        image = Image.fromarray(getattr(data, name)()).convert("RGB").resize(size)
        out.append(Example(name, image, *image.size))
    return out


@pytest.fixture(scope="module")
def wide_llava(tmp_path_factory: pytest.TempPathFactory):
    """A wider LLaVA (256 wide, 4 layers, 8 full key/value heads as in Vicuna), saved and loaded like a checkpoint."""
    from pancap_retrieval.testing import LLAVA_PRESETS, random_llava, save_pretrained

    text = dict(LLAVA_PRESETS["tiny"]["text"], hidden_size=256, intermediate_size=512, num_hidden_layers=4)
    text.update(num_attention_heads=8, num_key_value_heads=8, initializer_range=0.1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(LLAVA_PRESETS, "wide", {"text": text, "vision": LLAVA_PRESETS["tiny"]["vision"]})
        parts = random_llava("wide", seed=1)
    return save_pretrained(tmp_path_factory.mktemp("wide_llava"), *parts)


def _chain(path, **options) -> PancapChainCaptioner:
    return PancapChainCaptioner(model=str(path), **{"max_new_tokens": 8, **options})


def _vision_rows(captioner: PancapChainCaptioner) -> list[int]:
    """Batch sizes the vision tower is called with, from now on."""
    rows: list[int] = []

    def count(module, args, kwargs):
        pixels = args[0] if args else kwargs["pixel_values"]
        rows.append(int(pixels.shape[0]))

    captioner.model.model.vision_tower.register_forward_pre_hook(count, with_kwargs=True)
    return rows


def _separate(path, examples, **options) -> list[dict]:
    """The released chain: each stage its own conversation, one image at a time, dynamic cache."""
    separate = _chain(path, batch_size=1, static_cache=False, share_prefix=False, **options)
    rows = _vision_rows(separate)
    stages = [separate.caption_batch([e])[0].stages for e in examples]
    assert sum(rows) == 4 * len(examples)  # the image is encoded once per stage there
    return stages


@pytest.fixture(scope="module")
def separate_tiny(tiny_llava, examples) -> list[dict]:
    return _separate(tiny_llava, examples[:3])


@pytest.mark.parametrize("static", [False, True], ids=["dynamic-cache", "static-cache"])
def test_shared_prefix_gives_the_outputs_of_four_separate_conversations(
    tiny_llava, examples, separate_tiny, static
):
    expected = separate_tiny
    assert len({s["stage1"] for s in expected}) > 1  # the photos give different outputs: the image counts

    batched = _chain(tiny_llava, batch_size=3, static_cache=static)
    rows = _vision_rows(batched)
    assert [r.stages for r in batched.caption_batch(examples[:3])] == expected
    assert rows == [3]  # the vision tower ran once, on the three images
    assert batched.generator.stats.prefixes == 3
    assert batched.manifest()["shared_prefix"] is True

    one_by_one = _chain(tiny_llava, batch_size=1, static_cache=static)
    assert [one_by_one.caption_batch([e])[0].stages for e in examples[:3]] == expected


@pytest.mark.slow
def test_shared_prefix_on_a_wider_model_batched_with_the_static_cache(wide_llava, examples):
    expected = _separate(wide_llava, examples[:3], max_new_tokens=10)
    assert all(len(set(s["stage4"])) > 4 for s in expected)  # varied text, not one repeated token
    shared = _chain(wide_llava, batch_size=2, static_cache=True, max_new_tokens=10)
    # two then one: two batch shapes, the prefixes of one call used across both
    assert [r.stages for r in shared.caption_batch(examples[:3])] == expected


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.slow
def test_teacher_forced_logits_of_the_shared_path_follow_plain_generate(wide_llava, examples, dtype):
    plain = _chain(wide_llava, batch_size=3, static_cache=False, share_prefix=False, dtype=dtype)
    _, reference = plain.run_chain(examples[:3], lambda stage, i: {"record_logits": True})
    ours = _chain(wide_llava, batch_size=3, static_cache=True, dtype=dtype)
    _, forced = ours.run_chain(examples[:3], lambda stage, i: {"forced_ids": reference[stage][i].token_ids})
    for stage in STAGES:  # ours was made to say what plain said
        assert [g.token_ids for g in forced[stage].values()] == [
            g.token_ids for g in reference[stage].values()
        ]
    pairs = [(reference[s][i].logits, forced[s][i].logits) for s in STAGES for i in reference[s]]
    assert all(r.shape == c.shape and r.shape[0] > 0 for r, c in pairs)
    result = compare_logits([r for r, _ in pairs], [c for _, c in pairs], ours.model.dtype)
    assert result["equivalent"], result
    assert result["decided_steps"] > 0.9 * result["steps"]
    if dtype == "fp32":
        assert result["max_diff_over_spread"] < 1e-4


@pytest.mark.slow
def test_teacher_forcing_catches_a_prefix_layout_that_attends_to_padding(tiny_llava, examples, monkeypatch):
    plain = _chain(tiny_llava, batch_size=4, static_cache=False, share_prefix=False)
    _, reference = plain.run_chain(examples, lambda stage, i: {"record_logits": True})

    def attend_padding(*args, **kwargs):
        batch, width = collate_prefixed(*args, **kwargs)
        batch["attention_mask"][:] = 1  # the padding between prefix and question is attended, positions shift
        return batch, width

    monkeypatch.setattr(generation, "collate_prefixed", attend_padding)
    ours = _chain(tiny_llava, batch_size=4, static_cache=True)
    _, forced = ours.run_chain(examples, lambda stage, i: {"forced_ids": reference[stage][i].token_ids})
    result = compare_logits(
        [reference[s][i].logits for s in STAGES for i in reference[s]],
        [forced[s][i].logits for s in STAGES for i in forced[s]],
        torch.float32,
    )
    assert not result["equivalent"]
    assert result["max_diff_over_spread"] > 0.5


@pytest.mark.parametrize("static", [False, True], ids=["dynamic-cache", "static-cache"])
@pytest.mark.slow
def test_rows_stop_exactly_at_their_drawn_lengths(tiny_llava, examples, static):
    lengths = {
        "stage1": [3, 0, 9, 5],
        "stage2": [1, 7, 2, 11],
        "stage3": [4, 4, 0, 6],
        "stage4": [8, 2, 20, 5],
    }
    captioner = _chain(tiny_llava, batch_size=4, static_cache=static, max_new_tokens=12)
    records, generations = captioner.run_chain(examples, lambda stage, i: {"stop_length": lengths[stage][i]})
    for stage, drawn in lengths.items():
        got = [generations[stage][i] for i in range(len(examples))]
        assert [len(g.token_ids) for g in got] == [min(n, 12) for n in drawn]
        assert [g.truncated for g in got] == [n >= 12 for n in drawn]
    assert records[3].caption == generations["stage4"][3].text


def test_out_of_memory_in_the_shared_prefill_halves_the_batch(
    tiny_llava, examples, separate_tiny, monkeypatch
):
    captioner = _chain(tiny_llava, batch_size=3, static_cache=False)
    real = captioner.model.forward

    def small_memory(*args, **kwargs):
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(captioner.model, "forward", small_memory)
    assert [r.stages for r in captioner.caption_batch(examples[:3])] == separate_tiny
    stats = captioner.generator.stats
    assert (stats.oom_backoffs, stats.smallest_batch_size, stats.prefixes) == (
        1,
        1,
        3,
    )  # 3 -> 1 at the prefill
