"""Benchmark the packaged COCO-80 detector and the whole `detector` captioner: images per second; prints JSON.

The images are skimage's bundled photos (chelsea, astronaut, coffee, camera, rocket, motorcycle), cycled to
``--images`` images. After ``--warmup`` untimed images, three things are timed over the same images:
``detector`` (``Detector.detect`` alone, pre- and post-processing included), ``inference`` (the ONNX session
alone on prepared inputs) and ``captioner`` (``DetectorCaptioner.caption_batch`` in batches of its default size:
detection, pixel measurements and the text).

    python scripts/bench_detector.py
    python scripts/bench_detector.py --images 64 --out runs/bench_detector.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

PHOTOS = ("chelsea", "astronaut", "coffee", "camera", "rocket", "stereo_motorcycle")


def photos(count: int) -> list[Any]:
    import skimage.data
    from PIL import Image

    bank = []
    for name in PHOTOS:
        array = getattr(skimage.data, name)()
        bank.append(Image.fromarray(array[0] if isinstance(array, tuple) else array).convert("RGB"))
    return [bank[i % len(bank)] for i in range(count)]


def rate(count: int, seconds: float) -> dict[str, float]:
    return {"images": count, "seconds": round(seconds, 4), "images_per_s": round(count / seconds, 3),
            "ms_per_image": round(1000 * seconds / count, 2)}  # fmt: skip


def bench(images: int, warmup: int, providers: list[str] | None, threshold: float) -> dict[str, Any]:
    import onnxruntime

    from pancap_retrieval.captioners.base import Example
    from pancap_retrieval.captioners.detector import DetectorCaptioner
    from pancap_retrieval.detection.detector import INPUT_NAME, OUTPUT_NAME

    captioner = DetectorCaptioner(score_threshold=threshold, providers=providers)
    detector = captioner.detector
    batch = photos(images + warmup)
    detector.detect(batch[:warmup])
    timed = batch[warmup:]

    start = time.perf_counter()
    found = detector.detect(timed)
    detect_s = time.perf_counter() - start

    inputs = [detector.preprocess(image)[0] for image in timed]
    start = time.perf_counter()
    for array in inputs:
        detector.session.run([OUTPUT_NAME], {INPUT_NAME: array})
    inference_s = time.perf_counter() - start

    examples = [Example(f"img{i}", image, image.width, image.height) for i, image in enumerate(timed)]
    size = captioner.default_batch_size
    start = time.perf_counter()
    records = []
    for first in range(0, len(examples), size):
        records += captioner.caption_batch(examples[first : first + size])
    caption_s = time.perf_counter() - start

    return {
        "benchmark": "detector",
        "machine": {
            "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
        },
        "providers": detector.providers,
        "score_threshold": threshold,
        "batch_size": size,
        "photos": list(PHOTOS),
        "detector": rate(len(timed), detect_s),
        "inference": rate(len(timed), inference_s),
        "captioner": rate(len(timed), caption_s),
        "detections_per_image": round(sum(len(f) for f in found) / len(found), 2),
        "caption_chars_per_image": round(sum(len(r.caption or "") for r in records) / len(records), 1),
        "failed": sum(r.status != "ok" for r in records),
        "model_sha256": detector.sha256,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="timed images (default 24)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed images first (default 2)")
    parser.add_argument("--threshold", type=float, default=0.3, help="detector score threshold (default 0.3)")
    parser.add_argument(
        "--providers", default=None, help="comma-separated onnxruntime providers (default: auto)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.images < 1 or args.warmup < 0:
        parser.error("--images must be at least 1 and --warmup at least 0")
    providers = args.providers.split(",") if args.providers else None
    result = bench(args.images, args.warmup, providers, args.threshold)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
