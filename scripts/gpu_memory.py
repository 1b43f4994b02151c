"""GPU memory of the LLaVA-family captioners of a DOCCI run, worked out from their architectures (no weights).

For each captioner: parameters (counted on the meta device from the real architecture), weight bytes in fp16/bf16,
key/value cache bytes per token, the tokens one batch row holds at most (the ``tokens_per_row`` rule of
``pancapchain``: the shared prefix twice, 128 prompt tokens and three answers; one prompt and one answer for the
single-call baselines) and the batch :func:`batch_for_memory` picks on an 80 GB and a 141 GB card. Prints one JSON
line per captioner. These are estimates from the formulas the captioners use to choose their batch, not
measurements.

    python scripts/gpu_memory.py [--max-new-tokens N]
"""

from __future__ import annotations

import argparse
import json

GIB = 2**30
# The system prompt and role words before the image, in Llama tokens (about 40), plus CLIP-L/336's 576 patches.
PREFIX_TOKENS = 40 + 576
CAPTIONERS = {  # name: (architecture preset, stages that each hold an answer in the row)
    "pancapchain": ("llava-1.5-13b", 3),
    "sharegpt4v": ("llava-1.5-7b", 1),
    "llava-1.5": ("llava-1.5-7b", 1),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-new-tokens", type=int, default=None,
        help="longest answer of one stage (default: each captioner's own default, read from its signature)",
    )
    return parser.parse_args(argv)


def plan(name: str, max_new_tokens: int | None = None) -> dict:
    """The memory plan of one captioner (see the module's docstring)."""
    import torch

    from pancap_retrieval.captioners import CAPTIONERS as REGISTRY
    from pancap_retrieval.captioners.decoding import batch_for_memory, kv_bytes_per_token
    from pancap_retrieval.testing import random_llava

    if max_new_tokens is None:
        defaults = {o.name: o.default for o in REGISTRY.options(name)}
        max_new_tokens = int(defaults["max_new_tokens"])

    preset, answers = CAPTIONERS[name]
    model, _ = random_llava(preset, device="meta", dtype=torch.float16)
    parameters = sum(p.numel() for p in model.parameters())
    weights = parameters * 2
    prefix = PREFIX_TOKENS * (2 if answers > 1 else 1)
    tokens_per_row = prefix + 128 + answers * max_new_tokens
    config = model.config
    batches = {
        f"batch_on_{gib}_gib": batch_for_memory(config, int((gib - 2) * GIB - weights), tokens_per_row, 2)
        for gib in (80, 141)
    }
    return {
        "captioner": name,
        "architecture": preset,
        "parameters": parameters,
        "weights_gib_fp16": round(weights / GIB, 1),
        "kv_cache_mib_per_token": round(kv_bytes_per_token(config, 2) / 2**20, 3),
        "max_new_tokens": max_new_tokens,
        "tokens_per_row": tokens_per_row,
        "kv_cache_gib_per_row": round(tokens_per_row * kv_bytes_per_token(config, 2) / GIB, 2),
        **batches,
        "images_per_s": "unmeasured",
        "estimate": True,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name in CAPTIONERS:
        print(json.dumps(plan(name, args.max_new_tokens)), flush=True)


if __name__ == "__main__":
    main()
