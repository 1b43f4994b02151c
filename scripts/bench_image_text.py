"""Benchmark the image-text retrievers: images/s and texts/s to encode, BLIP re-ranked pairs/s, peak memory.

The models are random-weight models of the real classes: full size by default (CLIP ViT-L/14-336 and BLIP
ViT-L/16-384 with its BERT-base text tower, configs in ``pancap_retrieval.testing``, no download) in the device's
retrieval dtype (fp16 on a GPU), built in memory; ``--tiny`` runs tiny ones on the CPU, saved to a temporary folder
and loaded back through the real loader. Images are real photos shipped with scikit-image, texts the DOCCI-length
descriptions of pancap's sample set (about 140 words each, over CLIP's 77 tokens). Steps, each appended to
``--out`` as one JSON line when it finishes:

- ``setup``: device, versions;
- ``<model>_load``: seconds and parameters;
- ``<model>_images``: images/s to encode (after one warm-up batch) and the peak memory of the step;
- ``<model>_texts``: texts/s to encode, truncated at the window and chunked, and the share over the window;
- ``blip_rerank``: ITM re-ranking of each image's top ``--rerank-k`` texts: pairs/s and peak memory;
- ``summary``: every figure above.

Peak memory is the CUDA allocator's peak during the step on a GPU, the process's peak resident memory so far on a
CPU. The tokenizers are the test ones (one token per character for CLIP, a few dozen whole words and single
characters for BLIP's BERT), so a description fills the text window: texts/s and re-ranked pairs/s are for full
windows (77 tokens for CLIP, 512 for BLIP), an upper bound of the cost of real descriptions; their vocabularies
are small, which leaves out about 10% of the parameters (token embeddings) and none of the compute.

    python scripts/bench_image_text.py --out bench_image_text.jsonl          # GPU, full size
    python scripts/bench_image_text.py --tiny                                # CPU, tiny models
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pancap_retrieval.artifacts import StepLog, to_jsonable  # noqa: E402

MODELS = ("clip", "blip")
PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket", "cat", "motorcycle_left", "immunohistochemistry")


class Recorder(StepLog):
    """The results so far, by step; each step is also a JSON line of ``path``."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path, label="bench_image_text")
        self.results: dict[str, Any] = {}

    def add(self, step: str, **fields: Any) -> None:
        self.results[step] = self.step(step, **fields)


def photos(count: int) -> list[Any]:
    """Real photos shipped with scikit-image, cycled to ``count`` images of a few sizes."""
    from PIL import Image
    from skimage import data

    images = []
    for name in PHOTOS:
        try:
            images.append(Image.fromarray(getattr(data, name)()).convert("RGB"))
        except Exception:  # a photo that needs a download (pooch) is skipped
            continue
    sizes = [(640, 480), (480, 640), (512, 512), (800, 533)]
    return [images[i % len(images)].resize(sizes[i % len(sizes)]) for i in range(count)]


def descriptions(count: int) -> list[str]:
    """DOCCI-length descriptions (pancap's sample set), each made distinct by its index."""
    from pancap_retrieval.data.sample import sample_entries

    texts = [entry["description"] for entry in sample_entries()]
    return [f"{texts[i % len(texts)]} ({i})" for i in range(count)]


def peak_memory_mb(device: Any) -> float:
    """Peak CUDA memory allocated since the last reset on a GPU; the process's peak resident memory on a CPU."""
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else []:
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(device: Any, fn: Any) -> tuple[Any, float]:
    """``fn()`` and its seconds, the GPU synchronised around it and its peak memory counter reset first."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - began


def build(name: str, args: argparse.Namespace, scratch: Path) -> Any:
    """The retriever ``name`` on a random-weight model: tiny ones through the real loader, full size in memory."""
    from pancap_retrieval import testing
    from pancap_retrieval.retrieval.image_text import get_retriever

    preset = "tiny" if args.tiny else "full"
    parts = testing.random_clip(preset) if name == "clip" else testing.random_blip_retrieval(preset)
    options = {"batch_size": args.batch_size, "device": args.device, "dtype": args.dtype, "show_progress": False}
    if name == "blip":
        options.update(rerank_k=args.rerank_k, rerank_batch_size=args.rerank_batch_size)
    if args.tiny:
        directory = testing.save_pretrained(scratch / name, *parts)
        return get_retriever(name, model=str(directory), **options)
    return get_retriever(name, loaded=parts, **options)


def bench_model(name: str, args: argparse.Namespace, record: Recorder, scratch: Path) -> None:
    """Load, encode images, encode texts (truncated and chunked), and for BLIP re-rank: one step each."""
    began = time.perf_counter()
    retriever = build(name, args, scratch)
    device = retriever.device
    record.add(
        f"{name}_load",
        seconds=round(time.perf_counter() - began, 2),
        parameters=sum(p.numel() for p in retriever.model.parameters()),
        manifest=retriever.manifest(),
    )
    images, texts = photos(args.images), descriptions(args.texts)
    retriever.encode_images(images[: retriever.batch_size])  # warm-up: kernels, allocator
    image_vectors, seconds = timed(device, lambda: retriever.encode_images(images))
    record.add(
        f"{name}_images",
        images=len(images),
        batch_size=retriever.batch_size,
        images_per_s=round(len(images) / seconds, 2),
        peak_memory_mb=peak_memory_mb(device),
    )
    text_vectors, truncate_s = timed(device, lambda: retriever.encode_texts(texts))
    stats = dict(retriever.text_stats)
    retriever.long_text = "chunk"
    _, chunk_s = timed(device, lambda: retriever.encode_texts(texts))
    retriever.long_text = "truncate"
    record.add(
        f"{name}_texts",
        texts=len(texts),
        text_window=retriever.text_window,
        over_window_rate=stats["over_window_rate"],
        truncate_texts_per_s=round(len(texts) / truncate_s, 2),
        chunk_texts_per_s=round(len(texts) / chunk_s, 2),
        peak_memory_mb=peak_memory_mb(device),
    )
    if name == "blip" and args.rerank_k > 0:
        cosine = image_vectors @ text_vectors.T
        k = min(args.rerank_k, len(texts))
        _, seconds = timed(device, lambda: retriever.rerank(images, texts, cosine, k=k))
        record.add(
            "blip_rerank",
            queries=len(images),
            k=k,
            pairs=len(images) * k,
            rerank_batch_size=retriever.rerank_batch_size,
            pairs_per_s=round(len(images) * k / seconds, 2),
            peak_memory_mb=peak_memory_mb(device),
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models on the CPU, through the real loader")
    parser.add_argument("--out", type=Path, help="JSON lines file: one line per finished step")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS))
    parser.add_argument("--images", type=int, help="images to encode (default 16 tiny, 512 full size)")
    parser.add_argument("--texts", type=int, help="descriptions to encode (default 16 tiny, 512 full size)")
    parser.add_argument("--rerank-k", type=int, default=16, help="texts re-ranked per image by BLIP's ITM head")
    parser.add_argument("--rerank-batch-size", type=int, default=128, help="(image, text) pairs per ITM pass")
    parser.add_argument("--batch-size", type=int, help="images or texts per forward pass (default: the retriever's)")
    parser.add_argument("--device", help="cuda, cpu, ... (default: the GPU when there is one; cpu with --tiny)")
    parser.add_argument("--dtype", help="bf16, fp16 or fp32 (default: fp16 on a GPU, fp32 on a CPU)")
    args = parser.parse_args(argv)
    args.images = args.images or (16 if args.tiny else 512)
    args.texts = args.texts or (16 if args.tiny else 512)
    if args.tiny and args.device is None:
        args.device = "cpu"
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; known: {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    import transformers

    from pancap_retrieval.loading import choose_device

    args = parse_args(argv)
    record = Recorder(args.out)
    device = choose_device(args.device)
    record.add(
        "setup",
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        preset="tiny" if args.tiny else "full",
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
    )
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            bench_model(name, args, record, Path(scratch))
            gc.collect()  # the model of this step is gone before the next one loads
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    report = to_jsonable(record.results)
    record.write({"step": "summary", **report})
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
