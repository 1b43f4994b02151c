"""Pieces of the generation engine that decide what one batch costs and computes: shared prompt prefixes, per-row
stop lengths and teacher forcing, batch size from memory, shape buckets and the compile cache, logits comparison.

A **prefix** is the part of a prompt that several prompts share: for a LLaVA chain, the system prompt and the image
tokens of one image, the same in every stage's vicuna_v1 conversation. Its key/value states are computed once
(:class:`PrefixKV`) and written into each later batch's KV cache; only the rest of each prompt is prefilled, at the
positions that follow the prefix. A batch of prefixed prompts is laid out ``[pad][prefix][pad][rest]``: prefixes
right-aligned at one column, the rests left-padded after them, pads masked, so positions (the attention mask's
cumulative sum) are those of the unpadded prompt.

Logits processors here follow transformers' ``LogitsProcessor`` interface (``processor(input_ids, scores)``); torch is
imported only when they run, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Cache lengths are rounded up to this many tokens, so that a compiled decoding step meets few cache shapes.
CACHE_LENGTH_MULTIPLE = 256


@dataclass
class PrefixKV:
    """Key/value states of one sequence's prompt prefix: one ``(keys, values)`` pair per layer, each of shape
    ``[1, kv_heads, length, head_dim]``, computed once and copied into every batch whose prompts start with it."""

    layers: list[tuple[Any, Any]]

    @property
    def length(self) -> int:
        return int(self.layers[0][0].shape[-2])


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``.

    >>> round_up(600, 256), round_up(512, 256)
    (768, 512)
    """
    return -(-value // multiple) * multiple


def batch_bucket(rows: int, batch_size: int) -> int:
    """The batch size a batch of ``rows`` is padded to: the next power of two, at most ``batch_size``; a compiled
    decoding step then sees few batch shapes (a last, partial batch among them).

    >>> [batch_bucket(n, 24) for n in (1, 3, 5, 9, 17, 24)]
    [1, 4, 8, 16, 24, 24]
    """
    return min(batch_size, 1 << max(0, rows - 1).bit_length())


def collate_prefixed(
    items: Sequence[dict[str, Any]],
    prefixes: Sequence[PrefixKV],
    pad_token_id: int,
    pad_to_multiple_of: int | None = None,
) -> tuple[dict[str, Any], int]:
    """Batch prompts whose first ``prefix.length`` ids have computed key/values, laid out ``[pad][prefix][pad][rest]``.

    Returns ``input_ids`` and ``attention_mask`` (the whole prompt: generate slices off what the cache holds) and the
    prefix width, the column where every rest begins after the padding between.
    """
    import torch

    prefix_width = max(p.length for p in prefixes)
    rests = [item["input_ids"][0, p.length :] for item, p in zip(items, prefixes)]
    width = prefix_width + max(int(r.shape[-1]) for r in rests)
    if pad_to_multiple_of:
        width = round_up(width, pad_to_multiple_of)
    input_ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (item, prefix, rest) in enumerate(zip(items, prefixes, rests)):
        start = prefix_width - prefix.length
        input_ids[row, start:prefix_width] = item["input_ids"][0, : prefix.length]
        input_ids[row, width - rest.shape[-1] :] = rest
        mask[row, start:prefix_width] = 1
        mask[row, width - rest.shape[-1] :] = 1
    return {"input_ids": input_ids, "attention_mask": mask}, prefix_width


def write_prefixes(cache: Any, prefixes: Sequence[PrefixKV], width: int) -> None:
    """Write the prefixes' key/values into an empty transformers cache (static or dynamic), one row each,
    right-aligned at ``width`` columns; the columns before a shorter prefix stay zero and are masked."""
    import torch

    def aligned(states: Any) -> Any:
        return torch.nn.functional.pad(states, (0, 0, width - states.shape[-2], 0))

    for layer in range(len(prefixes[0].layers)):
        keys = torch.cat([aligned(p.layers[layer][0]) for p in prefixes])
        values = torch.cat([aligned(p.layers[layer][1]) for p in prefixes])
        cache.update(keys, values, layer)


class StopAtLengths:
    """Ends each row with EOS right after its own number of generated tokens (EOS is suppressed before that step):
    realistic, ragged caption lengths for benchmarks on random-weight models. ``None`` leaves a row alone."""

    def __init__(self, lengths: Sequence[int | None], prompt_width: int, eos_token_id: int) -> None:
        self.lengths = [-1 if n is None else int(n) for n in lengths]  # -1: neither suppressed nor forced
        self.prompt_width = prompt_width
        self.eos_token_id = eos_token_id
        self._lengths: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._lengths is None:
            self._lengths = torch.tensor(self.lengths, dtype=torch.long, device=scores.device)
        step = input_ids.shape[-1] - self.prompt_width
        blocked = torch.full_like(scores, -math.inf)
        blocked[:, self.eos_token_id] = 0.0
        scores = scores.clone()
        scores[:, self.eos_token_id] = torch.where(
            self._lengths > step, -math.inf, scores[:, self.eos_token_id]
        )
        return torch.where((self._lengths == step)[:, None], blocked, scores)


class TeacherForcing:
    """Feeds each row a given token sequence (then EOS) whatever the model prefers, and records the logits the model
    gave at each of those steps; a row with no sequence (``None``) decodes freely and, when ``record`` says so, is
    recorded until its EOS. Two decoding paths fed the same tokens this way can be compared step by step
    (:func:`compare_logits`). Logits stay on the device until :meth:`recorded` (no synchronisation per step).
    """

    def __init__(
        self,
        targets: Sequence[list[int] | None],
        record: Sequence[bool],
        prompt_width: int,
        eos_token_ids: Sequence[int],
    ) -> None:
        self.targets = list(targets)
        self.record = [bool(r) or t is not None for r, t in zip(record, self.targets)]
        self.prompt_width = prompt_width
        self.eos_token_ids = sorted(eos_token_ids)
        self.scores: list[Any] = []
        self.active: list[Any] = []
        self._tokens: Any = None

    def _start(self, device: Any) -> None:
        import torch

        lengths = [len(t) if t is not None else -1 for t in self.targets]
        self._tokens = torch.full((len(self.targets), max([*lengths, 0]) + 1), self.eos_token_ids[0])
        for row, target in enumerate(self.targets):
            if target:
                self._tokens[row, : len(target)] = torch.tensor(target)
        self._tokens = self._tokens.to(device)
        self._lengths = torch.tensor(lengths, device=device)
        self._forced = self._lengths >= 0
        self._record = torch.tensor(self.record, device=device)
        self._eos = torch.tensor(self.eos_token_ids, device=device)
        self._done = torch.zeros(len(self.targets), dtype=torch.bool, device=device)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._tokens is None:
            self._start(scores.device)
        step = input_ids.shape[-1] - self.prompt_width
        if step > 0:
            self._done |= torch.isin(input_ids[:, -1], self._eos)
        self.active.append(self._record & ~self._done & (~self._forced | (step <= self._lengths)))
        self.scores.append(scores.to(torch.float32, copy=True))
        token = self._tokens[:, min(step, self._tokens.shape[1] - 1)]
        forced = torch.full_like(scores, -math.inf).scatter_(1, token[:, None], 0.0)
        return torch.where(self._forced[:, None], forced, scores)

    def recorded(self, row: int) -> Any:
        """The logits of ``row``, ``[steps, vocab]`` in fp32 on the CPU (None when nothing was recorded)."""
        import torch

        if not self.scores:
            return None
        active = torch.stack([a[row] for a in self.active])
        logits = torch.stack([s[row] for s in self.scores])[active].cpu()
        return logits if len(logits) else None


def compare_logits(reference: Sequence[Any], candidate: Sequence[Any], dtype: Any) -> dict[str, Any]:
    """How closely ``candidate``'s per-step logits follow ``reference``'s when both were fed the same tokens.

    ``reference`` and ``candidate`` are per-sequence ``[steps, vocab]`` tensors (the common steps of each pair are
    compared). Reported: the largest absolute difference over the logits' spread (the standard deviation of all the
    reference's finite logits), and the top-1 agreement on *decided* steps, those
    where the reference's top-1 margin exceeds the rounding of ``dtype`` at the top logit (``eps * |top1|``: bf16 on
    a GPU); below that margin either token is a correct greedy choice. ``equivalent`` requires full agreement on
    decided steps and a relative difference within :func:`logit_tolerance`.
    """
    import torch

    sequences = steps = decided = agree_decided = agree_all = count = 0
    total = squares = max_diff = 0.0
    for ref, cand in zip(reference, candidate):  # one sequence at a time: a full-size run's logits are large
        if ref is None or cand is None:
            continue
        n, sequences = min(len(ref), len(cand)), sequences + 1
        ref, cand = ref[:n].double(), cand[:n].double()
        finite = torch.isfinite(ref) & torch.isfinite(cand)
        total, squares, count = (
            total + float(ref[finite].sum()),
            squares + float((ref[finite] ** 2).sum()),
            count + int(finite.sum()),
        )
        if finite.any():
            max_diff = max(max_diff, float((ref - cand).abs()[finite].max()))
        top = ref.masked_fill(~torch.isfinite(ref), -math.inf).topk(2, dim=-1).values
        sure = (top[:, 0] - top[:, 1]) > torch.finfo(dtype).eps * top[:, 0].abs()
        agree = ref.argmax(-1) == cand.argmax(-1)
        steps, decided = steps + n, decided + int(sure.sum())
        agree_all, agree_decided = agree_all + int(agree.sum()), agree_decided + int(agree[sure].sum())
    spread = math.sqrt(max(0.0, squares / count - (total / count) ** 2)) if count else 0.0
    agreement = agree_decided / decided if decided else 1.0
    relative = max_diff / spread if spread > 0 else 0.0
    tolerance = logit_tolerance(dtype)
    return {
        "sequences": sequences,
        "steps": steps,
        "decided_steps": decided,
        "top1_agreement_decided": round(agreement, 6),
        "top1_agreement_all": round(agree_all / steps if steps else 1.0, 6),
        "max_abs_diff": max_diff,
        "logit_spread": spread,
        "max_diff_over_spread": relative,
        "tolerance": tolerance,
        "rounding_dtype": str(dtype).removeprefix("torch."),
        "equivalent": bool(steps > 0 and agreement == 1.0 and relative <= tolerance),
    }


def logit_tolerance(dtype: Any) -> float:
    """The largest max-difference-over-spread two correct decoding paths may show in ``dtype``: 32 roundings of
    ``dtype`` (a deep network summing in different orders and shapes), at least 1e-4 (fp32 on CPUs, whose kernels
    differ with the shapes). On random-weight LLaVAs a correct path stays near 0.03 in bf16 and 4e-6 in fp32, a wrong
    one (another image's prefix, padding attended) exceeds 1.

    >>> import torch
    >>> logit_tolerance(torch.bfloat16), logit_tolerance(torch.float32)
    (0.25, 0.0001)
    """
    import torch

    return max(32 * torch.finfo(dtype).eps, 1e-4)


def text_config(config: Any) -> Any:
    """The language model's config of a (multimodal) model config."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def kv_bytes_per_token(config: Any, bytes_per_value: int) -> int:
    """Bytes of key/value cache one token takes: 2 x layers x kv heads x head dim x value size."""
    config = text_config(config)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * bytes_per_value


def batch_for_memory(
    config: Any,
    free_bytes: int,
    tokens_per_sequence: int,
    bytes_per_value: int,
    ceiling: int = 64,
    headroom: float = 0.85,
) -> int:
    """The largest batch whose key/value cache, prefill activations and logits fit in ``free_bytes``.

    One sequence holds ``tokens_per_sequence`` tokens of cache, plus while its prompt is prefilled about
    ``4 x hidden + 3 x intermediate`` values per token, plus two fp32 rows of logits; ``headroom`` of the free memory
    is used. The result is a multiple of 8 from 8 up (a power of two below), at most ``ceiling``.

    >>> from types import SimpleNamespace
    >>> vicuna13b = SimpleNamespace(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
    ...                             num_attention_heads=40, num_key_value_heads=40, vocab_size=32000)
    >>> batch_for_memory(vicuna13b, 110 * 2**30, 1500, 2), batch_for_memory(vicuna13b, 10 * 2**30, 4000, 2)
    (64, 2)
    """
    config = text_config(config)
    activations = (4 * config.hidden_size + 3 * getattr(config, "intermediate_size", 0)) * bytes_per_value
    per_sequence = tokens_per_sequence * (kv_bytes_per_token(config, bytes_per_value) + activations)
    per_sequence += 2 * config.vocab_size * 4
    fits = min(ceiling, int(free_bytes * headroom // max(1, per_sequence)))
    if fits >= 8:
        return fits // 8 * 8
    return 1 << max(0, fits.bit_length() - 1)


def compile_cache_dir() -> Path:
    """Where compiled kernels persist between runs, so a later process skips most of the compile warm-up:
    ``$TORCHINDUCTOR_CACHE_DIR`` when a user set it, else ``compile/inductor`` under pancap's cache dir, set here as
    ``TORCHINDUCTOR_CACHE_DIR`` (inductor reads it whenever it looks for a compiled graph). Inductor itself writes
    its temp-dir default into the variable once it has looked, so that value counts as unset."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as inductor_default

    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and os.path.abspath(chosen) != os.path.abspath(inductor_default()):
        return Path(chosen)
    from pancap_retrieval.artifacts import default_cache_dir

    path = default_cache_dir() / "compile" / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path
