"""The arithmetic and bookkeeping of PancapChain's generation engine: batch size from memory, shape buckets, the
prefix layout, the logits comparison, where compiled kernels are kept."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from pancap_retrieval.captioners.decoding import (
    PrefixKV,
    StopAtLengths,
    batch_bucket,
    batch_for_memory,
    collate_prefixed,
    compare_logits,
    compile_cache_dir,
    kv_bytes_per_token,
    write_prefixes,
)

GIB = 2**30
VICUNA_13B = SimpleNamespace(
    hidden_size=5120,
    intermediate_size=13824,
    num_hidden_layers=40,
    num_attention_heads=40,
    num_key_value_heads=40,
    vocab_size=32000,
)


def test_kv_cache_bytes_of_vicuna_13b_and_of_a_grouped_query_model():
    assert kv_bytes_per_token(VICUNA_13B, 2) == 2 * 40 * 40 * 128 * 2 == 819_200
    gqa = SimpleNamespace(**{**vars(VICUNA_13B), "num_key_value_heads": 8, "head_dim": 128})
    assert kv_bytes_per_token(gqa, 2) == 819_200 // 5
    # a LLaVA config: its text config counts
    llava = SimpleNamespace(get_text_config=lambda: VICUNA_13B)
    assert kv_bytes_per_token(llava, 4) == 2 * 819_200


def test_batch_for_memory_is_the_largest_that_fits():
    per_token = 819_200 + (4 * 5120 + 3 * 13824) * 2
    tokens = 1500
    per_sequence = tokens * per_token + 2 * 32000 * 4
    assert per_sequence == 1_414_912_000  # 1.4 GB: 1,500 tokens of a 13B model's KV cache and activations
    # 17 sequences fit in exactly this much memory at 85% use; a byte less and only 16
    free = math.ceil(17 * per_sequence / 0.85)
    assert batch_for_memory(VICUNA_13B, free, tokens, 2, ceiling=64) == 16  # 17, as a multiple of 8
    assert batch_for_memory(VICUNA_13B, math.ceil(24 * per_sequence / 0.85), tokens, 2) == 24
    assert batch_for_memory(VICUNA_13B, math.ceil(24 * per_sequence / 0.85) - 10**6, tokens, 2) == 16
    assert (
        batch_for_memory(VICUNA_13B, math.ceil(7 * per_sequence / 0.85), tokens, 2) == 4
    )  # power of two below 8
    assert batch_for_memory(VICUNA_13B, 141 * GIB, tokens, 2, ceiling=64) == 64  # an H200: the ceiling
    assert batch_for_memory(VICUNA_13B, 141 * GIB, tokens, 2, ceiling=256) == 88  # 90.9 fit
    assert (
        batch_for_memory(VICUNA_13B, GIB // 2, tokens, 2) == 1
    )  # never below one: the OOM back-off takes over
    # longer runs, fewer rows
    assert batch_for_memory(VICUNA_13B, 100 * GIB, 4000, 2, 256) < batch_for_memory(
        VICUNA_13B, 100 * GIB, 1000, 2, 256
    )


def test_the_first_batch_size_comes_from_the_gpus_free_memory(monkeypatch):
    from pancap_retrieval.captioners.generation import auto_batch_size

    model = SimpleNamespace(
        config=VICUNA_13B, parameters=lambda: iter([torch.zeros(1, dtype=torch.bfloat16)])
    )
    asked = []

    def free_memory(device=None):
        asked.append(device)
        return 60 * GIB, 80 * GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", free_memory)  # an 80 GB GPU with 60 GB free
    gpu = torch.device("cuda", 0)
    assert (
        auto_batch_size(model, 1500, gpu, ceiling=256)
        == batch_for_memory(VICUNA_13B, 60 * GIB, 1500, 2, 256)
        == 32
    )
    assert asked == [gpu]
    assert auto_batch_size(model, 1500, torch.device("cpu")) == 4 and len(asked) == 1  # no GPU asked on a CPU


def test_batch_buckets_are_powers_of_two_up_to_the_batch_size():
    assert [batch_bucket(n, 64) for n in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    assert {batch_bucket(n, 24) for n in range(1, 25)} == {1, 2, 4, 8, 16, 24}


def _prefix(length: int, value: float) -> PrefixKV:
    states = torch.full((1, 2, length, 4), value)
    return PrefixKV([(states, states + 100), (states + 1, states + 101)])


def test_prefixed_prompts_are_laid_out_prefix_padding_rest_and_their_states_right_aligned():
    items = [{"input_ids": torch.tensor([[1, 5, 6, 7, 8]])}, {"input_ids": torch.tensor([[1, 5, 9]])}]
    prefixes = [_prefix(3, 1.0), _prefix(2, 2.0)]
    batch, width = collate_prefixed(items, prefixes, pad_token_id=0, pad_to_multiple_of=4)
    assert width == 3
    assert batch["input_ids"].tolist() == [[1, 5, 6, 0, 0, 0, 7, 8], [0, 1, 5, 0, 0, 0, 0, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 1, 1], [0, 1, 1, 0, 0, 0, 0, 1]]
    # positions from the mask are those of the unpadded prompts: 0..4 and 0..2
    positions = (batch["attention_mask"].cumsum(-1) - 1)[batch["attention_mask"] == 1]
    assert positions.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]

    from transformers import DynamicCache

    cache = DynamicCache()
    write_prefixes(cache, prefixes, width)
    keys = cache.layers[0].keys
    assert keys.shape == (2, 2, 3, 4)
    assert keys[0, 0, :, 0].tolist() == [1.0, 1.0, 1.0]
    assert keys[1, 0, :, 0].tolist() == [0.0, 2.0, 2.0]  # the shorter prefix after a masked zero column
    assert cache.layers[1].values[1, 0, :, 0].tolist() == [0.0, 103.0, 103.0]


def test_stop_at_lengths_suppresses_eos_before_the_step_and_forces_it_at_the_step():
    stop = StopAtLengths([2, None, 0], prompt_width=5, eos_token_id=1)
    scores = torch.zeros(3, 4)
    scores[:, 1] = 10.0  # every row would end now
    first = stop(torch.zeros(3, 5, dtype=torch.long), scores)
    assert first.argmax(-1).tolist()[2] == 1 and first[2].isinf().sum() == 3  # length 0: EOS right away
    assert first[0, 1] == -math.inf and first[1, 1] == 10.0  # row 0 must go on; row 1 is left alone
    third = stop(torch.zeros(3, 7, dtype=torch.long), scores)
    assert third[0].argmax() == 1 and third[0].isinf().sum() == 3


def test_logits_comparison_counts_only_decided_steps_and_the_spread():
    reference = torch.tensor([[4.0, 1.0, 0.0], [2.0, 2.0 - 1e-6, 0.0], [0.0, 3.0, -math.inf]])
    close = reference + torch.tensor([[0.0, 0.001, 0.0], [-0.001, 0.001, 0.0], [0.0, 0.0, 0.0]])
    result = compare_logits([reference], [close], torch.bfloat16)
    # step 2 is a tie within bf16 rounding: its flip does not count
    assert (result["steps"], result["decided_steps"]) == (3, 2)
    assert result["top1_agreement_decided"] == 1.0 and result["top1_agreement_all"] == pytest.approx(2 / 3)
    assert result["max_abs_diff"] == pytest.approx(0.001, rel=1e-4)
    assert result["equivalent"] is True
    flipped = reference.clone()
    flipped[0] = torch.tensor([1.0, 4.0, 0.0])
    assert compare_logits([reference], [flipped], torch.bfloat16)["equivalent"] is False
    far = reference * 1.5
    assert compare_logits([reference], [far], torch.bfloat16)["max_diff_over_spread"] > 0.25
    assert compare_logits([reference], [far], torch.bfloat16)["equivalent"] is False


def test_compiled_kernels_are_kept_under_the_pancap_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    path = compile_cache_dir()
    assert path == tmp_path / "cache" / "compile" / "inductor" and path.is_dir()
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(path)
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    assert cache_dir() == str(path)  # what inductor will use
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"  # a user's choice stands
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what inductor writes there by itself
    assert compile_cache_dir() == path
