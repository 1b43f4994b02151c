"""Stream check: caption the first rows of a large parquet set through hf: without reading the set into memory.

Builds a parquet set of ``--rows`` small JPEG images (``Image`` features, shards of 10,000 rows, ids in order; each
image a different crop of a sample photo with its row number written into its pixels, so no two are equal), opens
it as ``hf:DIR`` and runs the real ``pancap caption --limit N`` on it in a child process, whose exact peak RSS
comes from ``wait4``. With ``--baseline-rows M`` the same caption run is measured on a set of M rows too, so the
peak can be compared across set sizes: reading only what is needed, it should not grow with the set. Prints JSON.

    python scripts/stream_check.py --rows 100000 --limit 1000 --baseline-rows 2000 --workdir /tmp/stream
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARD_ROWS = 10_000
DEFAULT_BOUND_MB = 1500


def base_photos(side: int, count: int = 64) -> list[tuple[Any, str]]:
    """``count`` crops of the sample photos, ``side`` pixels square, each with its photo's first sentence."""
    from PIL import Image

    from pancap_retrieval.data import load_dataset

    sample = load_dataset("sample")
    photos = []
    for n in range(count):
        row = sample[n % len(sample)]
        with Image.open(row["image"]["path"]) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        crop = min(width, height) // (1 + n // len(sample))
        left, top = (width - crop) * (n % 3) // 2, (height - crop) * (n % 5) // 4
        tile = image.crop((left, top, left + crop, top + crop)).resize((side, side))
        photos.append((tile, row["description"].split(". ")[0].rstrip(".") + "."))
    return photos


def row_image(base: Any, index: int) -> bytes:
    """The base tile with the bits of ``index`` written as black and white pixels along its top row, as JPEG."""
    image = base.copy()
    for bit in range(20):
        value = 255 if (index >> bit) & 1 else 0
        for dx in range(2):
            image.putpixel((2 * bit + dx, 0), (value, value, value))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_set(folder: Path, rows: int, side: int) -> dict[str, Any]:
    """The parquet set: ``data/test-NNNNN-of-MMMMM.parquet`` with example_id, image (Image) and description."""
    import datasets

    started = time.perf_counter()
    photos = base_photos(side)
    features = datasets.Features(
        {"example_id": datasets.Value("string"), "image": datasets.Image(), "description": datasets.Value("string")}
    )
    shards = max(1, -(-rows // SHARD_ROWS))
    (folder / "data").mkdir(parents=True)
    for shard in range(shards):
        indices = range(shard * SHARD_ROWS, min(rows, (shard + 1) * SHARD_ROWS))
        table = datasets.Dataset.from_dict(
            {
                "example_id": [f"img-{i:07d}" for i in indices],
                "image": [{"bytes": row_image(photos[i % len(photos)][0], i), "path": None} for i in indices],
                "description": [f"{photos[i % len(photos)][1]} Frame {i}." for i in indices],
            },
            features=features,
        )
        table.to_parquet(str(folder / "data" / f"test-{shard:05d}-of-{shards:05d}.parquet"))
    size = sum(p.stat().st_size for p in (folder / "data").iterdir())
    return {"rows": rows, "shards": shards, "set_bytes": size, "build_seconds": round(time.perf_counter() - started, 1)}


def caption(folder: Path, out: Path, limit: int, captioner: str, cache: Path) -> dict[str, Any]:
    """``pancap caption --dataset hf:FOLDER --limit N`` in a child process: seconds, exit code, exact peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache)}
    command = [sys.executable, "-m", "pancap_retrieval.cli", "caption", "--captioner", captioner]
    command += ["--dataset", f"hf:{folder}", "--split", "test", "--limit", str(limit), "--out", str(out)]
    started = time.perf_counter()
    log = out.parent / f"{out.name}.log"
    with log.open("wb") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"pancap caption failed ({code}): {' | '.join(tail)}")
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    records = [json.loads(line) for p in (out / "captions").glob("*.jsonl") for line in p.read_text().splitlines()]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "captioned": sum(r.get("status") == "ok" for r in records),
        "failed": sum(r.get("status") != "ok" for r in records),
        "first_id": min((r["example_id"] for r in records), default=None),
        "last_id": max((r["example_id"] for r in records), default=None),
    }


def measure(workdir: Path, rows: int, limit: int, captioner: str, side: int) -> dict[str, Any]:
    folder = workdir / f"set-{rows}"
    if folder.exists():
        shutil.rmtree(folder)
    built = build_set(folder, rows, side)
    run = caption(folder, workdir / f"run-{rows}", limit, captioner, workdir / f"hf-cache-{rows}")
    expected_last = f"img-{limit - 1:07d}"
    return {**built, **run, "first_rows": run["first_id"] == "img-0000000" and run["last_id"] == expected_last}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the parquet set (default 100,000)")
    parser.add_argument("--limit", type=int, default=1000, help="rows to caption, the first in id order")
    parser.add_argument("--baseline-rows", type=int, default=0, help="also measure a set of this many rows")
    parser.add_argument("--captioner", default="reference", choices=["reference", "detector"], help="offline")
    parser.add_argument("--side", type=int, default=96, help="image side in pixels")
    parser.add_argument("--bound-mb", type=float, default=DEFAULT_BOUND_MB, help="the peak RSS bound to check")
    parser.add_argument("--workdir", type=Path, default=None, help="where the sets go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if not 0 < args.limit <= args.rows:
        raise SystemExit("--limit must be between 1 and --rows")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pancap-stream-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result: dict[str, Any] = {"limit": args.limit, "captioner": args.captioner, "bound_mb": args.bound_mb}
        result["large"] = measure(workdir, args.rows, args.limit, args.captioner, args.side)
        if args.baseline_rows:
            result["baseline"] = measure(workdir, args.baseline_rows, args.limit, args.captioner, args.side)
            result["rss_growth_mb"] = round(result["large"]["peak_rss_mb"] - result["baseline"]["peak_rss_mb"], 1)
        large = result["large"]
        result["ok"] = (
            large["captioned"] == args.limit
            and large["failed"] == 0
            and large["first_rows"]
            and large["peak_rss_mb"] <= args.bound_mb
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
