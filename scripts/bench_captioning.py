"""Benchmark PancapChain captioning speed: the original loop, plain batched ``generate``, and ours.

The model is the full LLaVA-1.5-13B architecture (Vicuna-13B + CLIP ViT-L/14-336; configs in
``pancap_retrieval.captioners.convert.LLAVA_PRESETS``, no download) with random weights, bf16 on the GPU, and
every stage forced to the same output length (``min_new_tokens == max_new_tokens``). ``--tiny`` runs a tiny
architecture on CPU in fp32. Printed as one JSON object:

- ``original_loop``: one image at a time, its four stages as four sequential plain ``generate`` calls (batch 1);
- ``plain_batched``: the chain batched across images, plain ``generate`` (dynamic KV cache);
- ``ours``: the chain batched, static KV cache, compiled decoding with CUDA graphs on a GPU (first pass = warm-up);
- ``decode``: decode steps/s at batch 1 and decode tokens/s at the full batch size with our engine;
- ``identical_to_plain``: fraction of images whose four stage outputs are the same in ``ours`` and ``plain``.

    python scripts/bench_captioning.py            # GPU, full size
    python scripts/bench_captioning.py --tiny     # CPU, tiny size
    python scripts/bench_captioning.py --tiny --compile-any-device   # CPU, tiny size, ours compiled as on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

TARGETS = {
    "speedup_vs_original": 25.0,
    "batch1_decode_steps_per_s": 45.0,
    "decode_tokens_per_s_at_64": 2500.0,
}


def photos(count: int) -> list[Any]:
    """Real photos shipped with scikit-image, cycled to ``count`` examples."""
    from PIL import Image
    from skimage import data

    from pancap_retrieval.captioners.base import Example

    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "camera",
        "rocket",
        "cat",
        "immunohistochemistry",
        "motorcycle_left",
    ]
    images = []
    for name in names:
        try:
            array = getattr(data, name)()
        except Exception:  # a photo that needs a download (pooch) is skipped
            continue
        images.append(Image.fromarray(array).convert("RGB"))
    return [
        Example(
            f"{i:04d}", images[i % len(images)], images[i % len(images)].width, images[i % len(images)].height
        )
        for i in range(count)
    ]


def timed(fn: Any) -> tuple[Any, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - began


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (CPU, fp32)")
    parser.add_argument("--images", type=int, default=None, help="images for the batched runs (64; tiny: 8)")
    parser.add_argument("--original-images", type=int, default=None, help="images for the original loop (2)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="batch size of the batched runs (64; tiny: 8)"
    )
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per stage (128; tiny: 16)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-static", action="store_true", help="ours without the static cache / compile")
    parser.add_argument(
        "--compile-any-device",
        action="store_true",
        help="compile ours' static-cache decoding on a CPU too (transformers compiles only on accelerators)",
    )
    args = parser.parse_args(argv)

    import torch

    from pancap_retrieval.captioners.generation import choose_device, choose_dtype
    from pancap_retrieval.captioners.pancapchain import STAGE_PROMPTS, PancapChainCaptioner
    from pancap_retrieval.testing import LLAVA_PRESETS, random_llava

    device = choose_device(args.device or ("cpu" if args.tiny else None))
    dtype = choose_dtype(device)
    preset = "tiny" if args.tiny else "llava-1.5-13b"
    images = args.images or (8 if args.tiny else 64)
    batch = args.batch_size or images
    original_images = args.original_images or 2
    new_tokens = args.new_tokens or (16 if args.tiny else 128)

    built, build_seconds = timed(lambda: random_llava(preset, seed=0, dtype=dtype, device=device))
    model, processor = built
    examples = photos(images)

    def chain(batch_size: int, static: bool) -> PancapChainCaptioner:
        return PancapChainCaptioner(
            loaded=(model, processor),
            batch_size=batch_size,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            static_cache=static,
        )

    def run(captioner: PancapChainCaptioner, items: list[Any], size: int) -> tuple[list[Any], float]:
        def go() -> list[Any]:
            out = []
            for start in range(0, len(items), size):
                out.extend(captioner.caption_batch(items[start : start + size]))
            return out

        return timed(go)

    original = chain(1, False)
    original_records, original_seconds = run(original, examples[:original_images], 1)
    plain = chain(batch, False)
    plain_records, plain_seconds = run(plain, examples, batch)
    static = not args.no_static
    compiled = static and (device.type == "cuda" or args.compile_any_device)
    if compiled and device.type != "cuda":
        from transformers import CompileConfig

        compile_config = CompileConfig(mode="default")
        compile_config._compile_all_devices = True  # transformers' switch for compiling off accelerators
        model.generation_config.compile_config = compile_config
    ours = chain(batch, static)
    _, warmup_seconds = run(ours, examples, batch)
    ours_records, ours_seconds = run(ours, examples, batch)

    def stages(record: Any) -> list[str]:
        return [record.stages.get(f"stage{k}") for k in range(1, 5)]

    identical = sum(stages(a) == stages(b) for a, b in zip(ours_records, plain_records)) / len(examples)
    original_identical = sum(
        stages(a) == stages(b) for a, b in zip(original_records, plain_records[:original_images])
    ) / max(1, original_images)

    # Decode rates with our engine on the stage-1 prompt: time(L tokens) - time(1 token) is L - 1 decode steps.
    pixels = processor.image_processor(images=[examples[0].image], return_tensors="pt")["pixel_values"]
    item = ours.encode(STAGE_PROMPTS["stage1"], pixels)

    def decode_rate(size: int) -> float:
        generator = ours.generator
        generator.batch_size = size
        items = [item] * size
        generator.max_new_tokens = generator.min_new_tokens = 1
        generator.generate(items)
        _, first = timed(lambda: generator.generate(items))
        generator.max_new_tokens = generator.min_new_tokens = new_tokens
        generator.generate(items)
        _, full = timed(lambda: generator.generate(items))
        return (new_tokens - 1) / max(full - first, 1e-9)

    steps_batch1 = decode_rate(1)
    steps_batched = decode_rate(batch)
    report = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "architecture": preset,
        "config": LLAVA_PRESETS[preset],
        "parameters_billion": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "build_seconds": round(build_seconds, 2),
        "new_tokens_per_stage": new_tokens,
        "stages": 4,
        "batch_size": batch,
        "original_loop": {
            "images": original_images,
            "seconds": round(original_seconds, 3),
            "images_per_s": round(original_images / original_seconds, 4),
        },
        "plain_batched": {
            "images": images,
            "seconds": round(plain_seconds, 3),
            "images_per_s": round(images / plain_seconds, 4),
        },
        "ours": {
            "images": images,
            "static_cache": ours.generator.static_cache,
            "compiled": compiled,
            "warmup_seconds": round(warmup_seconds, 3),
            "seconds": round(ours_seconds, 3),
            "images_per_s": round(images / ours_seconds, 4),
            "batch_size_used": ours.generator.stats.smallest_batch_size,
            "oom_backoffs": ours.generator.stats.oom_backoffs,
        },
        "speedup_vs_original": round((images / ours_seconds) / (original_images / original_seconds), 2),
        "speedup_plain_vs_original": round(
            (images / plain_seconds) / (original_images / original_seconds), 2
        ),
        "decode": {
            "batch1_steps_per_s": round(steps_batch1, 2),
            f"batch{batch}_tokens_per_s": round(steps_batched * batch, 1),
        },
        "identical_to_plain": identical,
        "original_identical_to_plain": original_identical,
    }
    if device.type == "cuda" and not args.tiny:
        report["targets"] = TARGETS
        report["meets_targets"] = {
            "speedup_vs_original": report["speedup_vs_original"] >= TARGETS["speedup_vs_original"],
            "batch1_decode_steps_per_s": steps_batch1 >= TARGETS["batch1_decode_steps_per_s"],
            "decode_tokens_per_s_at_64": batch >= 64
            and steps_batched * batch >= TARGETS["decode_tokens_per_s_at_64"],
            "identical_to_plain": identical == 1.0,
        }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
