"""Benchmark PancapChain captioning speed: the original loop, plain batched ``generate``, and ours.

The model is the full LLaVA-1.5-13B architecture (Vicuna-13B + CLIP ViT-L/14-336; configs in
``pancap_retrieval.testing.LLAVA_PRESETS``, no download) with random weights, bf16 on the GPU. ``--tiny`` runs a
tiny architecture on CPU in fp32. Steps, each written to ``--out`` as one JSON line when it finishes:

- ``original_loop``: one image at a time, its four stages as four sequential plain ``generate`` calls (batch 1);
- ``plain_batched``: the chain batched across images, plain ``generate`` (dynamic KV cache), each stage its own
  conversation;
- ``ours``: the chain batched, each image's system prompt and image tokens prefilled once for its four stages,
  static KV cache, compiled decoding with CUDA graphs on a GPU; the first pass is the warm-up (compile), with the
  compile cache under pancap's cache dir (a second process starts warm);
- ``equivalence``: plain's outputs fed through ours (teacher forcing), per-step logits compared: max |diff| over the
  logits' spread and top-1 agreement on the steps whose top-1 margin exceeds the run dtype's rounding; plus
  ``identical_to_plain``, the fraction of images whose four stage outputs are the same (exact in fp32 only);
- ``decode``: decode steps/s at batch 1 and decode tokens/s at the full batch size with our engine;
- ``ragged`` (``--lengths sapancap``): every stage of every image stops at its own length (an EOS forced at the
  drawn step): stage 4 from the token lengths of the shipped SA-Pancap ground-truth captions, stages 1-3 from their
  boxes (stage 1: the box list, stage 2: the tag list, stage 3: the tags of the last quarter of the entities, the
  "missing" ones, or "None"), each stage's lengths scaled so that the 95th percentile is ``--new-tokens`` (the
  shape of the distribution is SA-Pancap's, the longest rows are cut there). Reports useful tokens/s (tokens before
  EOS) against the fixed-length run's tokens/s;
- ``summary``: the whole report; with ``--check-targets`` (always on a full-size GPU run) the issue's targets and
  whether they are met, on any device.

Every stage is forced to ``--new-tokens`` tokens in the fixed-length runs (``min_new_tokens == max_new_tokens``).
The batch is the largest whose KV cache fits the GPU (``--batch-size auto``, the default on a GPU), else given.
``--dtype fp32 --layers 2`` runs the full width with fewer layers in fp32, where greedy identity is meaningful.

    python scripts/bench_captioning.py --out bench_captioning.jsonl      # GPU, full size
    python scripts/bench_captioning.py --tiny --check-targets --lengths sapancap   # CPU, tiny size
    python scripts/bench_captioning.py --tiny --compile-any-device   # CPU, tiny size, ours compiled as on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pancap_retrieval.artifacts import StepLog, to_jsonable  # noqa: E402

# Issue 13's targets on an H100/H200 (4 stages x 64 tokens, 64 images).
TARGETS = {
    "speedup_vs_original": 150.0,
    "batch1_decode_steps_per_s": 110.0,
    "decode_tokens_per_s_at_64": 4000.0,
    "useful_vs_fixed_tokens_per_s": 0.8,
    "warmup_seconds_fresh": 60.0,
    "warmup_seconds_cached": 20.0,
}
STAGES = ("stage1", "stage2", "stage3", "stage4")


class Recorder(StepLog):
    """The results so far, every step's fields in one record; each step is also a JSON line of ``path``."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path, label="bench_captioning")
        self.results: dict[str, Any] = {}

    def add(self, step: str, **fields: Any) -> None:
        self.results.update(self.step(step, **fields))


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
    return [Example(f"{i:04d}", images[i % len(images)], *images[i % len(images)].size) for i in range(count)]


def timed(fn: Any) -> tuple[Any, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - began


def drawn_lengths(
    tokenizer: Any, count: int, new_tokens: int, seed: int = 0
) -> tuple[dict[str, list[int]], dict]:
    """Per-image stop lengths of the four stages from the SA-Pancap ground truth (see the module docstring), and
    what they were drawn from."""
    from pancap_retrieval.captions.boxes import format_box_group
    from pancap_retrieval.captions.model import format_entities, parse_caption
    from pancap_retrieval.data.sapancap import read_ground_truth

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    pool: dict[str, list[int]] = {stage: [] for stage in STAGES}
    for _, _, caption in [*read_ground_truth("val"), *read_ground_truth("test")]:
        entities = parse_caption(caption, "norm").entities
        missing = entities[len(entities) - len(entities) // 4 :]
        boxes = ", ".join(format_box_group(e.boxes, "asmv2", 1000, 1000) for e in entities)
        pool["stage1"].append(tokens(boxes))
        pool["stage2"].append(tokens(format_entities(entities, "asmv2", 1000, 1000)))
        pool["stage3"].append(tokens(format_entities(missing, "asmv2", 1000, 1000) if missing else "None"))
        pool["stage4"].append(tokens(caption))
    rng = random.Random(seed)
    picks = [rng.randrange(len(pool["stage4"])) for _ in range(count)]
    lengths, source = {}, {"captions": len(pool["stage4"]), "seed": seed}
    for stage, values in pool.items():
        p95 = sorted(values)[int(0.95 * (len(values) - 1))]
        lengths[stage] = [max(1, min(new_tokens, round(values[i] * new_tokens / max(1, p95)))) for i in picks]
        source[stage] = {"tokens_p95": p95, "tokens_mean": round(sum(values) / len(values), 1),
                         "drawn_mean": round(sum(lengths[stage]) / count, 2), "drawn_max": max(lengths[stage])}  # fmt: skip
    return lengths, source


@dataclass
class Bench:
    """The loaded model and the settings every step shares."""

    args: argparse.Namespace
    model: Any
    processor: Any
    examples: list[Any]
    new_tokens: int
    batch: int
    device: Any
    dtype: Any
    record: Recorder

    def chain(
        self, batch_size: int | None, static: bool, share_prefix: bool = True, ragged: bool = False
    ) -> Any:
        from pancap_retrieval.captioners.pancapchain import PancapChainCaptioner

        return PancapChainCaptioner(
            loaded=(self.model, self.processor),
            batch_size=batch_size,
            max_new_tokens=self.new_tokens,
            min_new_tokens=self.new_tokens,
            static_cache=static,
            share_prefix=share_prefix,
        )


def run_chain(captioner: Any, items: list[Any], size: int, options: Any = None) -> tuple[list, dict, float]:
    """Records, generations by stage (keyed by position in ``items``) and seconds of the chain over ``items``."""

    def go() -> tuple[list, dict]:
        records: list[Any] = []
        generations: dict[str, dict[int, Any]] = {stage: {} for stage in STAGES}
        for start in range(0, len(items), size):
            shifted = (lambda stage, i, s=start: options(stage, s + i)) if options else None
            done, stages = captioner.run_chain(items[start : start + size], shifted)
            records += done
            for stage, by_index in stages.items():
                generations[stage].update({start + i: g for i, g in by_index.items()})
        return records, generations

    (records, generations), seconds = timed(go)
    return records, generations, seconds


def stage_texts(record: Any) -> list[str]:
    return [record.stages.get(stage) for stage in STAGES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (CPU, fp32)")
    parser.add_argument("--images", type=int, default=None, help="images for the batched runs (64; tiny: 8)")
    parser.add_argument("--original-images", type=int, default=None, help="images for the original loop (2)")
    parser.add_argument(
        "--batch-size",
        default=None,
        help="batch size of the batched runs, or 'auto' (GPU: auto; CPU: --images)",
    )
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per stage (128; tiny: 16)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (GPU: bf16; CPU: fp32)")
    parser.add_argument("--layers", type=int, default=None, help="language-model layers (the architecture's)")
    parser.add_argument("--no-static", action="store_true", help="ours without the static cache / compile")
    parser.add_argument(
        "--compile-any-device",
        action="store_true",
        help="compile ours' static-cache decoding on a CPU too (transformers compiles only on accelerators)",
    )
    parser.add_argument(
        "--compile-backend",
        choices=("inductor", "eager"),
        default="inductor",
        help="torch.compile backend of ours (eager: trace only, a quick check of the compiled path)",
    )
    parser.add_argument(
        "--lengths", choices=("fixed", "sapancap"), default="fixed", help="add the ragged run"
    )
    parser.add_argument(
        "--equivalence-images", type=int, default=None, help="images fed through both (a batch)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn lengths")
    parser.add_argument("--check-targets", action="store_true", help="judge the targets on any device")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per finished step here")
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> Bench:
    import torch

    from pancap_retrieval.captioners.generation import auto_batch_size
    from pancap_retrieval.loading import choose_device, choose_dtype
    from pancap_retrieval.testing import LLAVA_PRESETS, random_llava

    record = Recorder(args.out)
    device = choose_device(args.device or ("cpu" if args.tiny else None))
    dtype = choose_dtype(device, args.dtype)
    preset = "tiny" if args.tiny else "llava-1.5-13b"
    if args.layers:  # full width, fewer layers: fp32 identity at a GPU's width in little time
        text = {**LLAVA_PRESETS[preset]["text"], "num_hidden_layers": args.layers}
        LLAVA_PRESETS[f"{preset}-{args.layers}-layers"] = {**LLAVA_PRESETS[preset], "text": text}
        preset = f"{preset}-{args.layers}-layers"
    images = args.images or (8 if args.tiny else 64)
    new_tokens = args.new_tokens or (16 if args.tiny else 128)
    (model, processor), build_seconds = timed(
        lambda: random_llava(preset, seed=0, dtype=dtype, device=device)
    )
    bench = Bench(args, model, processor, photos(images), new_tokens, 0, device, dtype, record)
    from_memory = None
    if args.batch_size == "auto" or (args.batch_size is None and device.type == "cuda"):
        tokens = bench.chain(1, True).tokens_per_row  # what one row of ours holds at most
        from_memory = auto_batch_size(model, tokens, device, ceiling=images)
    bench.batch = from_memory or int(args.batch_size or images)
    record.add(
        "setup",
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        dtype=str(dtype).removeprefix("torch."),
        architecture=preset,
        config=LLAVA_PRESETS[preset],
        parameters_billion=round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        build_seconds=round(build_seconds, 2),
        new_tokens_per_stage=new_tokens,
        stages=4,
        images=images,
        batch_size=bench.batch,
        batch_size_from_memory=from_memory,
        versions={
            "torch": str(torch.__version__),
            "transformers": str(__import__("transformers").__version__),
        },
    )
    return bench


def baselines(bench: Bench) -> tuple[list[Any], list[Any], float]:
    """The original loop and plain batched generate: their records, and the original loop's images/s."""
    count = bench.args.original_images or 2
    original = bench.chain(1, False, share_prefix=False)
    original_records, _, original_seconds = run_chain(original, bench.examples[:count], 1)
    original_rate = count / original_seconds
    loop = {"images": count, "seconds": round(original_seconds, 3), "images_per_s": round(original_rate, 4)}
    bench.record.add("original_loop", original_loop=loop)
    plain = bench.chain(bench.batch, False, share_prefix=False)
    plain_records, _, plain_seconds = run_chain(plain, bench.examples, bench.batch)
    images = len(bench.examples)
    bench.record.add(
        "plain_batched",
        plain_batched={
            "images": images,
            "seconds": round(plain_seconds, 3),
            "images_per_s": round(images / plain_seconds, 4),
        },
        speedup_plain_vs_original=round((images / plain_seconds) / original_rate, 2),
    )
    return original_records, plain_records, original_rate


def compile_for_any_device(bench: Bench) -> bool:
    """Whether ours is compiled: on a GPU with the static cache (transformers' default: inductor, CUDA graphs), or on
    any device with ``--compile-any-device``; ``--compile-backend eager`` traces without generating kernels."""
    compiled = not bench.args.no_static and (bench.device.type == "cuda" or bench.args.compile_any_device)
    if compiled and (bench.device.type != "cuda" or bench.args.compile_backend != "inductor"):
        from transformers import CompileConfig

        inductor = bench.args.compile_backend == "inductor"
        config = CompileConfig(backend=bench.args.compile_backend, mode="default" if inductor else None)
        config._compile_all_devices = True  # transformers' switch for compiling off accelerators
        bench.model.generation_config.compile_config = config
    return compiled


def ours(bench: Bench, original_rate: float) -> tuple[Any, list[Any], float]:
    """Our engine: a warm-up pass (compiles), then the timed pass; the captioner, its records and tokens/s."""
    from pancap_retrieval.captioners.decoding import compile_cache_dir

    compiled = compile_for_any_device(bench)
    cache = compile_cache_dir() if compiled else None
    cached_files = sum(1 for p in cache.rglob("*") if p.is_file()) if cache else 0
    captioner = bench.chain(bench.batch, not bench.args.no_static)
    _, _, warmup = run_chain(captioner, bench.examples, bench.batch)
    before = captioner.generator.stats.generated_tokens
    records, _, seconds = run_chain(captioner, bench.examples, bench.batch)
    tokens = captioner.generator.stats.generated_tokens - before
    images = len(bench.examples)
    stats = captioner.generator.stats
    bench.record.add(
        "ours",
        ours={
            "images": images,
            "static_cache": captioner.generator.static_cache,
            "compiled": compiled,
            "compile_backend": bench.args.compile_backend if compiled else None,
            "shared_prefix": captioner.share_prefix,
            "warmup_seconds": round(warmup, 3),
            "compile_cache_dir": str(cache) if cache else None,
            "compile_cache_files_at_start": cached_files,
            "seconds": round(seconds, 3),
            "images_per_s": round(images / seconds, 4),
            "tokens_per_s": round(tokens / seconds, 1),
            "batch_size_used": stats.smallest_batch_size,
            "oom_backoffs": stats.oom_backoffs,
        },
        speedup_vs_original=round((images / seconds) / original_rate, 2),
    )
    return captioner, records, tokens / seconds


def equivalence(bench: Bench, captioner: Any, plain_records: list[Any], ours_records: list[Any]) -> None:
    """Plain generate's outputs fed through ours (teacher forcing); per-step logits compared."""
    from pancap_retrieval.captioners.decoding import compare_logits

    count = min(len(bench.examples), bench.args.equivalence_images or bench.batch)
    items = bench.examples[:count]
    plain = bench.chain(count, False, share_prefix=False)
    _, reference, _ = run_chain(plain, items, count, lambda stage, i: {"record_logits": True})
    _, forced, _ = run_chain(
        captioner, items, bench.batch, lambda stage, i: {"forced_ids": reference[stage][i].token_ids}
    )
    pairs = [(reference[s][i].logits, forced[s][i].logits) for s in STAGES for i in sorted(reference[s])]
    result = compare_logits([r for r, _ in pairs], [c for _, c in pairs], bench.dtype)
    result["images"] = count
    identical = sum(stage_texts(a) == stage_texts(b) for a, b in zip(ours_records, plain_records))
    bench.record.add(
        "equivalence",
        equivalence=result,
        identical_to_plain=identical / len(bench.examples),
        greedy_identity_meaningful=str(bench.dtype) == "torch.float32",
    )


def decode_rates(bench: Bench, captioner: Any) -> tuple[float | None, float | None]:
    """Decode steps/s at batch 1 and at the full batch with our engine, on the stage-1 prompt:
    time(L tokens) - time(1 token) is L - 1 decode steps."""
    from pancap_retrieval.captioners.pancapchain import STAGE_PROMPTS

    pixels = bench.processor.image_processor(images=[bench.examples[0].image], return_tensors="pt")[
        "pixel_values"
    ]
    item = captioner.encode(STAGE_PROMPTS["stage1"], pixels)
    generator = captioner.generator

    def rate(size: int) -> float | None:
        generator.batch_size = size
        items = [item] * size
        generator.max_new_tokens = generator.min_new_tokens = 1
        generator.generate(items)
        _, first = timed(lambda: generator.generate(items))
        generator.max_new_tokens = generator.min_new_tokens = bench.new_tokens
        generator.generate(items)
        _, full = timed(lambda: generator.generate(items))
        # None: the difference drowned in timing noise (a loaded CPU), no rate to report
        return (bench.new_tokens - 1) / (full - first) if full > first else None

    batch1, batched = rate(1), rate(bench.batch)
    generator.batch_size = bench.batch
    tokens = batched * bench.batch if batched is not None else None
    decode = {
        "batch1_steps_per_s": round(batch1, 2) if batch1 is not None else None,
        f"batch{bench.batch}_tokens_per_s": round(tokens, 1) if tokens is not None else None,
    }
    bench.record.add("decode", decode=decode)
    return batch1, tokens


def ragged(bench: Bench, captioner: Any, fixed_tokens_per_s: float) -> float:
    """Ours with every row stopping at its drawn SA-Pancap length; useful tokens/s against the fixed-length run."""
    lengths, source = drawn_lengths(
        bench.processor.tokenizer, len(bench.examples), bench.new_tokens, bench.args.seed
    )
    generator = captioner.generator  # the warm engine: its cache and compiled shapes
    generator.min_new_tokens = 0
    before = generator.stats.generated_tokens
    _, generations, seconds = run_chain(
        captioner, bench.examples, bench.batch, lambda stage, i: {"stop_length": lengths[stage][i]}
    )
    useful = generator.stats.generated_tokens - before
    generator.min_new_tokens = bench.new_tokens
    stopped_as_drawn = all(
        len(generations[s][i].token_ids) == lengths[s][i] for s in STAGES for i in range(len(bench.examples))
    )
    ratio = useful / seconds / fixed_tokens_per_s
    bench.record.add(
        "ragged",
        ragged={
            "lengths": "sapancap",
            "drawn_from": source,
            "images": len(bench.examples),
            "seconds": round(seconds, 3),
            "useful_tokens": useful,
            "useful_tokens_per_s": round(useful / seconds, 1),
            "fixed_tokens_per_s": round(fixed_tokens_per_s, 1),
            "useful_vs_fixed_tokens_per_s": round(ratio, 4),
            "rows_stopped_at_drawn_lengths": stopped_as_drawn,
        },
    )
    return ratio


def judge(bench: Bench, figures: dict[str, Any]) -> None:
    """The targets and whether this run meets them (``None``: not measured in this run)."""
    results = bench.record.results
    warm = results["ours"]
    cached = warm["compile_cache_files_at_start"] > 0
    meets = {
        "speedup_vs_original": results["speedup_vs_original"] >= TARGETS["speedup_vs_original"],
        "batch1_decode_steps_per_s": (figures["batch1"] or 0.0) >= TARGETS["batch1_decode_steps_per_s"],
        "decode_tokens_per_s_at_64": bench.batch >= 64
        and (figures["batched"] or 0.0) >= TARGETS["decode_tokens_per_s_at_64"],
        "useful_vs_fixed_tokens_per_s": None
        if figures["ragged"] is None
        else figures["ragged"] >= TARGETS["useful_vs_fixed_tokens_per_s"],
        "warmup_seconds_fresh": None if cached else warm["warmup_seconds"] <= TARGETS["warmup_seconds_fresh"],
        "warmup_seconds_cached": warm["warmup_seconds"] <= TARGETS["warmup_seconds_cached"]
        if cached
        else None,
        "equivalent": results["equivalence"]["equivalent"],
    }
    if results["greedy_identity_meaningful"]:
        meets["identical_to_plain"] = results["identical_to_plain"] == 1.0
    full_gpu = bench.device.type == "cuda" and not bench.args.tiny
    judged_on = (
        "full-size GPU run"
        if full_gpu
        else f"{'tiny' if bench.args.tiny else 'full size'} on {bench.device.type}"
    )
    bench.record.add("targets", targets=TARGETS, meets_targets=meets, targets_judged_on=judged_on)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    bench = setup(args)
    _, plain_records, original_rate = baselines(bench)
    captioner, ours_records, fixed_tokens_per_s = ours(bench, original_rate)
    equivalence(bench, captioner, plain_records, ours_records)
    batch1, batched = decode_rates(bench, captioner)
    ratio = ragged(bench, captioner, fixed_tokens_per_s) if args.lengths == "sapancap" else None
    if args.check_targets or (bench.device.type == "cuda" and not args.tiny):
        judge(bench, {"batch1": batch1, "batched": batched, "ragged": ratio})
    report = to_jsonable(bench.record.results)
    bench.record.write({"step": "summary", **report})
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
