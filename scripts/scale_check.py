"""Scale check: N real photos through `pancap run`, first run and rerun; seconds and peak memory per stage as JSON.

The photos are the sample dataset's (shipped inside scikit-image, scikit-learn and matplotlib), each image a
different crop, mirror, size and colour balance of one of them, written as JPEG into an imagefolder with a
``metadata.jsonl`` of DOCCI-style descriptions: the photo's hand-written description (left and right swapped
when mirrored, some sentences left out), sentences about the framing, light and colour of this variant, and on
about one image in ten a longer run of detail sentences, so that some exceed MiniLM's 256 word pieces. A suite
with the ``reference`` and ``detector`` captioners, MiniLM, FAISS, sketch redraws, fidelity scores, the
leaderboard and the gallery is run with the real CLI (``pancap run``) in a child process, then run again in the
same folder. Per run: seconds per stage (from the run's ``run_summary.json``), images/s, the exact peak RSS of
the child (``wait4``) and the peak per stage from RSS samples. With several sizes (``--n 500,2000,5000``) each
stage's seconds per image are compared across sizes (``exponent``: the slope of log seconds over log N, 1 for a
linear stage).

    python scripts/scale_check.py --n 500
    python scripts/scale_check.py --n 500,2000,5000 --workdir /tmp/scale --keep --out runs/scale.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Colour and light of a variant: (name, low, high) of the PIL enhancement factor.
JITTER = (("brightness", 0.7, 1.3), ("contrast", 0.8, 1.2), ("saturation", 0.6, 1.4))
LONG_SIDE = (384, 768)  # pixels of a variant's long side
KEEP_SHARE = 0.4  # share of a photo's sentences (after the first) kept in a variant's description
LONG_SHARE = 0.1  # share of descriptions with a long run of detail sentences
GROWTH_LIMIT = 1.15  # exponent above which a stage is reported as growing faster than N
SHORT_STAGE_S = 2.0  # a stage shorter than this at the largest N is too short to judge

REGIONS = (("upper left", "top", "upper right"), ("left", "centre", "right"), ("lower left", "bottom", "lower right"))
DETAIL_WORDS = {
    "edge": ("top", "bottom", "left", "right"),
    "surface": ("background", "foreground", "backdrop", "surface below the subject"),
    "texture": ("grainy", "speckled", "striped", "mottled", "smooth", "blotchy"),
    "light": ("soft", "harsh", "even", "dim", "bright", "patchy"),
    "tone": ("darker", "lighter", "warmer", "cooler", "flatter"),
    "colour": ("grey", "brown", "white", "blue", "green", "orange", "black", "cream"),
    "focus": ("sharp", "soft", "slightly blurred", "crisp"),
    "balance": ("balanced", "off-centre", "crowded on one side", "open and airy"),
    "where": ("to the middle", "toward the top", "toward one side", "down to the bottom"),
}
DETAIL_SENTENCES = (
    "Near the {edge} edge the {surface} shows fine {texture} detail, and the light there is {light}.",
    "The {region} of the frame is {tone} than the rest, with {texture} patterns that fade toward the middle.",
    "Small specks of {colour} are scattered across the {region} part of the frame.",
    "The focus is {focus} over most of the picture, and a fine grain is visible in the flatter areas.",
    "A thin band of {colour} runs along the {edge} edge of the image, only a few pixels wide.",
    "Compared with the rest of the picture, the {region} area looks {tone} and slightly {focus}.",
    "The composition is {balance}, and the main subject draws the eye {where}.",
    "Faint compression blocks show in the smooth gradients near the {edge} of the frame.",
    "The {surface} is {texture} and {tone} than the subject, which keeps the subject easy to pick out.",
    "Where the {surface} meets the {edge} edge, the colour turns {colour} and the light becomes {light}.",
)


# ---------------------------------------------------------------- the dataset


def base_photos() -> list[tuple[str, Any, str]]:
    """(example_id, RGB image, description) of every sample photo installed."""
    from PIL import Image

    from pancap_retrieval.data.sample import package_file, sample_entries

    photos = []
    for entry in sample_entries():
        path = package_file(entry["source"]["package"], entry["source"]["file"])
        if path is not None:
            with Image.open(path) as image:
                photos.append((entry["example_id"], image.convert("RGB"), entry["description"]))
    if not photos:
        sys.exit("scale_check: no sample photo installed (scikit-image, scikit-learn, matplotlib)")
    return photos


def variant_params(rng: random.Random) -> dict[str, Any]:
    """How one image differs from its photo: mirror, crop box (fractions), long side, colour factors."""
    area = rng.uniform(0.45, 1.0)
    aspect = rng.uniform(0.8, 1.25)
    width, height = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
    left, top = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
    params = {"mirror": rng.random() < 0.5, "crop": (left, top, left + width, top + height)}
    params["long_side"] = rng.randint(*LONG_SIDE)
    params.update({name: rng.uniform(low, high) for name, low, high in JITTER})
    params["tint"] = rng.choice(("warm", "cool", None, None))
    return params


def make_variant(photo: Any, params: dict[str, Any]) -> Any:
    """The image ``params`` describe: mirrored, cropped, resized, colour-jittered."""
    from PIL import Image, ImageEnhance, ImageOps

    image = ImageOps.mirror(photo) if params["mirror"] else photo
    left, top, right, bottom = params["crop"]
    image = image.crop((round(left * image.width), round(top * image.height),
                        round(right * image.width), round(bottom * image.height)))  # fmt: skip
    scale = params["long_side"] / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    image = ImageEnhance.Brightness(image).enhance(params["brightness"])
    image = ImageEnhance.Contrast(image).enhance(params["contrast"])
    image = ImageEnhance.Color(image).enhance(params["saturation"])
    if params["tint"]:
        red, green, blue = image.split()
        warm = params["tint"] == "warm"
        red = red.point(lambda v: min(255, int(v * (1.08 if warm else 0.94))))
        blue = blue.point(lambda v: min(255, int(v * (0.92 if warm else 1.08))))
        image = Image.merge("RGB", (red, green, blue))
    return image


def mirrored_text(text: str) -> str:
    """``text`` with left and right swapped, for a mirrored photo."""
    swap = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}
    return re.sub(r"\b(left|right|Left|Right)\b", lambda m: swap[m.group(1)], text)


def framing_sentences(params: dict[str, Any], size: tuple[int, int]) -> list[str]:
    """What the crop, mirror, size, light and colour of a variant look like, in DOCCI's plain words."""
    left, top, right, bottom = params["crop"]
    share = round(100 * (right - left) * (bottom - top))
    region = REGIONS[min(2, int(3 * (top + bottom) / 2))][min(2, int(3 * (left + right) / 2))]
    out = []
    if share >= 90:
        out.append("Almost the whole scene is in view, with little cut away at the edges.")
    else:
        out.append(f"The view is cropped to the {region} of the scene, about {share} percent of it.")
    if params["mirror"]:
        out.append("The picture is mirrored, so what usually sits on one side appears on the other.")
    out.append(f"It is a {'small' if max(size) < 512 else 'medium-sized'} picture, {size[0]} pixels wide and "
               f"{size[1]} pixels tall.")  # fmt: skip
    if params["brightness"] < 0.85:
        out.append("The exposure is dark, as if taken late in the day, and the shadows are deep.")
    elif params["brightness"] > 1.15:
        out.append("The exposure is bright, and the lightest areas are a little washed out.")
    if params["saturation"] < 0.8:
        out.append("The colours are muted and slightly greyish.")
    elif params["saturation"] > 1.2:
        out.append("The colours are vivid and strongly saturated.")
    if params["tint"]:
        hue = "yellowish" if params["tint"] == "warm" else "bluish"
        out.append(f"A {params['tint']}, {hue} cast lies over the whole image.")
    return out


def detail_sentences(count: int, rng: random.Random) -> list[str]:
    """``count`` different detail sentences with their words drawn at random."""
    out = []
    for template in rng.sample(DETAIL_SENTENCES, count):
        words = {name: rng.choice(choices) for name, choices in DETAIL_WORDS.items()}
        words["region"] = rng.choice([name for row in REGIONS for name in row])
        out.append(template.format(**words))
    return out


def describe(description: str, params: dict[str, Any], size: tuple[int, int], rng: random.Random) -> str:
    """A DOCCI-style description of one variant: its photo's sentences (some left out), then its framing and
    colour, then detail sentences (a long run of them on about one image in ten)."""
    text = mirrored_text(description) if params["mirror"] else description
    first, *rest = re.split(r"(?<=[.!?])\s+", text.strip())
    kept = [first] + [sentence for sentence in rest if rng.random() < KEEP_SHARE]
    details = rng.randint(7, 9) if rng.random() < LONG_SHARE else rng.randint(0, 1)
    return " ".join([*kept, *framing_sentences(params, size), *detail_sentences(details, rng)])


def build_photos(folder: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` variants as JPEG in ``folder``; their metadata lines (file_name, description), all distinct."""
    from pancap_retrieval.artifacts import save_image

    photos = base_photos()
    folder.mkdir(parents=True, exist_ok=True)
    lines, seen = [], set()
    for index in range(count):
        example_id, photo, description = photos[index % len(photos)]
        for attempt in range(100):
            rng = random.Random(f"{seed}-{index}-{attempt}")
            params = variant_params(rng)
            image = make_variant(photo, params)
            text = describe(description, params, image.size, rng)
            if text not in seen:
                break
        seen.add(text)
        name = f"{index:05d}-{example_id}.jpg"
        save_image(image, folder / name, format="JPEG", quality=90)
        lines.append({"file_name": name, "description": text})
    return lines


def dataset_folder(photos: Path, lines: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """An imagefolder of the first ``len(lines)`` photos (hard links where possible) and their metadata."""
    folder.mkdir(parents=True)
    for line in lines:
        try:
            os.link(photos / line["file_name"], folder / line["file_name"])
        except OSError:
            shutil.copyfile(photos / line["file_name"], folder / line["file_name"])
    (folder / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    words = [len(line["description"].split()) for line in lines]
    return {"images": len(lines), "mean_words": round(sum(words) / len(words), 1), "max_words": max(words),
            "image_mb": round(sum(p.stat().st_size for p in folder.glob("*.jpg")) / 2**20, 1)}  # fmt: skip


def write_suite(path: Path, data: Path) -> dict[str, Any]:
    """The suite the check runs: both offline captioners, MiniLM + FAISS, sketch redraws with scores."""
    import yaml

    suite = {
        "name": "scale",
        "description": f"scale check on {data}",
        "dataset": {"name": f"imagefolder:{data}"},
        "captioners": [{"name": "reference"}, {"name": "detector"}],
        "embedders": [{"name": "minilm", "long_text": "chunk"}],
        "retrieval": {"backend": "faiss", "text_prep": "strip", "bootstrap_samples": 1000},
        "reconstruction": {"redrawer": "sketch", "scores": True},
        "seed": 0,
    }
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return suite


# ---------------------------------------------------------------- one run


def pancap_command() -> list[str]:
    """The `pancap` console script beside this Python, else the CLI module."""
    script = Path(sys.executable).with_name("pancap")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pancap_retrieval.cli"]


def tree_usage(process: Any) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system) of ``process`` and its live children now."""
    import psutil

    rss, cpu = 0, 0.0
    try:
        for member in [process, *process.children(recursive=True)]:
            rss += member.memory_info().rss
            times = member.cpu_times()
            cpu += times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return rss, cpu


def watch(command: list[str], env: dict[str, str], log: Path, interval: float) -> dict[str, Any]:
    """Run ``command``; its seconds, exit code, exact peak RSS and CPU seconds (``wait4``), and samples
    (time, RSS bytes, CPU seconds) every ``interval`` seconds."""
    import psutil

    samples: list[tuple[float, int, float]] = []
    started = time.perf_counter()
    with log.open("wb") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        process = psutil.Process(child.pid)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            samples.append((time.time(), *tree_usage(process)))
            time.sleep(interval)
    child.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"seconds": time.perf_counter() - started, "returncode": child.returncode, "peak_rss": peak,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "samples": samples}  # fmt: skip


def stage_windows(stages: list[dict[str, Any]], summary_written: float) -> tuple[list[tuple[float, float]], str]:
    """(start, end) wall-clock time of each stage, and how it was found.

    From the stages' recorded start times when the summary has them; otherwise the stages are laid back to back
    ending when ``run_summary.json`` was written, so time spent between stages (loading a model outside any
    stage) falls at the start of the stage before it.
    """
    if stages and all("started" in stage for stage in stages):
        return [(s["started"], s["started"] + s["seconds"]) for s in stages], "recorded start times"
    windows, end = [], summary_written
    for stage in reversed(stages):
        windows.append((end - stage["seconds"], end))
        end -= stage["seconds"]
    return windows[::-1], "laid back to back, ending when run_summary.json was written"


def mb(value: float | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def cpu_at(samples: list[tuple[float, int, float]], moment: float) -> float:
    """CPU seconds of the last sample at or before ``moment`` (0 before the first)."""
    return max((cpu for t, _, cpu in samples if t <= moment), default=0.0)


def stage_rows(stages: list[dict[str, Any]], windows: list[tuple[float, float]], samples: list, n: int) -> list:
    """Per stage: seconds, counts, images/s, peak RSS and CPU seconds within its window."""
    rows = []
    for stage, (start, end) in zip(stages, windows):
        inside = [rss for t, rss, _ in samples if start <= t <= end]
        row = {"stage": stage["stage"], "seconds": stage["seconds"]}
        row.update({k: stage[k] for k in ("done", "reused", "failed", "skipped") if k in stage})
        row["images_per_s"] = round(n / stage["seconds"], 2) if stage["seconds"] >= 0.1 else None
        row["peak_rss_mb"] = mb(max(inside)) if inside else None
        row["cpu_seconds"] = round(cpu_at(samples, end) - cpu_at(samples, start), 2)
        rows.append(row)
    return rows


def run_once(suite: Path, out: Path, env: dict[str, str], log: Path, n: int, interval: float) -> dict[str, Any]:
    """One `pancap run` of ``suite`` into ``out``: totals, and per stage seconds, images/s, peak RSS, CPU."""
    watched = watch([*pancap_command(), "run", str(suite), "--out", str(out)], env, log, interval)
    result = {"returncode": watched["returncode"], "seconds": round(watched["seconds"], 2),
              "images_per_s": round(n / watched["seconds"], 3), "peak_rss_mb": mb(watched["peak_rss"]),
              "cpu_seconds": round(watched["cpu_seconds"], 2)}  # fmt: skip
    summary_path = out / "run_summary.json"
    if watched["returncode"] != 0 or not summary_path.is_file():
        result["log_tail"] = log.read_text(errors="replace").replace("\r", "\n")[-3000:]
        return result
    stages = json.loads(summary_path.read_text())["stages"]
    windows, method = stage_windows(stages, summary_path.stat().st_mtime)
    result["outside_stages_seconds"] = round(watched["seconds"] - sum(s["seconds"] for s in stages), 2)
    result["stage_windows"] = method
    result["stages"] = stage_rows(stages, windows, watched["samples"], n)
    return result


# ---------------------------------------------------------------- one size, several sizes


def retrieval_summary(run_dir: Path) -> dict[str, Any]:
    """Per captioner: n, c2d R@1 and d2c R@1; and how many descriptions were longer than MiniLM's window."""
    from pancap_retrieval.results import read_results

    results = read_results(run_dir)
    rows = {row["system"]: row for row in results["rows"]}
    descriptions = next(iter(rows.values()))["embedding"]["descriptions"]
    return {
        "rows": {name: {"n": r["n"], "c2d_R@1": r["caption->description"]["R@1"],
                 "d2c_R@1": r["description->caption"]["R@1"]} for name, r in rows.items()},
        "descriptions_over_max_tokens": descriptions["n_longer_than_max"],
        "max_seq_length": descriptions["max_seq_length"],
    }


def metrics_of(run_dir: Path) -> Any:
    """What a rerun must reproduce: every retrieval row's c2d/d2c metrics and the reconstruction scores."""
    from pancap_retrieval.results import read_results

    results = read_results(run_dir)
    rows = [(row["system"], row["caption->description"], row["description->caption"]) for row in results["rows"]]
    scores = {k: v.get("scores") for k, v in results.get("reconstruction", {}).get("captioners", {}).items()}
    return rows, scores


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def check_size(workdir: Path, lines: list[dict[str, Any]], rerun: bool, interval: float) -> dict[str, Any]:
    """The dataset, first run and rerun of one size, in ``workdir/n{N}``."""
    n = len(lines)
    home = workdir / f"n{n}"
    home.mkdir()
    result: dict[str, Any] = {"n": n, "dataset": dataset_folder(workdir / "photos", lines, home / "data")}
    write_suite(home / "suite.yaml", home / "data")
    env = {**os.environ, "PANCAP_CACHE_DIR": str(home / "cache"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    run_dir = home / "run"
    result["first"] = run_once(home / "suite.yaml", run_dir, env, home / "first.log", n, interval)
    if result["first"]["returncode"] != 0:
        return result
    result["retrieval"] = retrieval_summary(run_dir)
    result["run_folder_mb"] = folder_mb(run_dir)
    if rerun:
        before = metrics_of(run_dir)
        result["rerun"] = run_once(home / "suite.yaml", run_dir, env, home / "rerun.log", n, interval)
        if result["rerun"]["returncode"] == 0:
            result["rerun_over_first"] = round(result["rerun"]["seconds"] / result["first"]["seconds"], 3)
            result["rerun_same_results"] = metrics_of(run_dir) == before
    return result


def exponent(ns: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) over log(n): 1 when seconds grow linearly with n, 2 quadratically."""
    points = [(math.log(n), math.log(s)) for n, s in zip(ns, seconds) if s > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return round(sum((x - mean_x) * (y - mean_y) for x, y in points) / spread, 3) if spread else None


def linearity(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds and CPU seconds per image of every stage (and the whole run) across sizes, with growth exponents.

    The verdict reads the CPU exponent: on a shared machine wall time also counts the other processes' work.
    """
    runs = [(s["n"], s["first"]) for s in sizes if s["first"].get("stages")]
    ns = [n for n, _ in runs]
    timings = {"whole run": [(run["seconds"], run["cpu_seconds"]) for _, run in runs]}
    for name in [row["stage"] for row in runs[0][1]["stages"]] if runs else []:
        found = [next(((r["seconds"], r["cpu_seconds"]) for r in run["stages"] if r["stage"] == name), None)
                 for _, run in runs]  # fmt: skip
        if None not in found:
            timings[name] = found
    stages = {}
    for name, pairs in timings.items():
        seconds, cpu = [p[0] for p in pairs], [p[1] for p in pairs]
        growth = exponent(ns, cpu)
        if seconds[-1] < SHORT_STAGE_S:
            verdict = "too short to judge"
        else:
            verdict = "linear or better" if growth is not None and growth <= GROWTH_LIMIT else "grows faster than N"
        stages[name] = {"seconds": seconds, "ms_per_image": [round(1000 * s / n, 2) for s, n in zip(seconds, ns)],
                        "exponent": exponent(ns, seconds), "cpu_seconds": cpu,
                        "cpu_ms_per_image": [round(1000 * c / n, 2) for c, n in zip(cpu, ns)],
                        "cpu_exponent": growth, "verdict": verdict}  # fmt: skip
    peaks = [run["peak_rss_mb"] for _, run in runs]
    per_thousand = (peaks[-1] - peaks[0]) / (ns[-1] - ns[0]) * 1000 if len(ns) > 1 else None
    return {"sizes": ns, "exponent_limit": GROWTH_LIMIT, "stages": stages, "peak_rss_mb": peaks,
            "rss_mb_per_1000_images": None if per_thousand is None else round(per_thousand, 1)}  # fmt: skip


def machine() -> dict[str, Any]:
    """The machine, its load, and the folder the measured pancap code is imported from."""
    import psutil

    import pancap_retrieval

    return {
        "pancap_code": str(Path(pancap_retrieval.__file__).resolve().parents[1]),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


# ---------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"--n takes image counts like 500 or 500,2000,5000, not {text!r}")
    return sizes


def scale_check(sizes: list[int], workdir: Path, rerun: bool, seed: int, interval: float,
                out: Path | None) -> dict[str, Any]:  # fmt: skip
    """Build the largest dataset once, then run each size; the JSON is rewritten to ``out`` after each size."""
    result: dict[str, Any] = {"benchmark": "scale_check", "machine": machine(), "seed": seed, "sizes": []}
    result["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.perf_counter()
    lines = build_photos(workdir / "photos", sizes[-1], seed)
    result["build_seconds"] = round(time.perf_counter() - started, 2)
    for n in sizes:
        result["sizes"].append(check_size(workdir, lines[:n], rerun, interval))
        if len(result["sizes"]) > 1:
            result["linearity"] = linearity(result["sizes"])
        result["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
        if result["sizes"][-1]["first"]["returncode"] != 0:
            break
    return result


def _table_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(result: dict[str, Any]) -> str:
    """The first runs of every size as a Markdown table: seconds per stage, then the whole run and the rerun."""
    sizes = [s for s in result["sizes"] if s["first"].get("stages")]
    growth = result.get("linearity", {}).get("stages", {})
    head = ["stage", *[f"N = {s['n']:,}" for s in sizes], "ms per image", "exponent (wall / CPU)"]
    lines = [_table_line(head), "|" + "---|" * len(head)]

    def row(name: str, cells: list[str]) -> None:
        fit = growth.get(name, {})
        per_image = " → ".join(f"{v:.0f}" for v in fit.get("ms_per_image", [])) or "-"
        pair = (fit.get("exponent"), fit.get("cpu_exponent"))
        exponents = " / ".join("-" if v is None else f"{v:.2f}" for v in pair) if fit else "-"
        lines.append(_table_line([name, *cells, per_image, exponents]))

    for stage in [r["stage"] for r in sizes[0]["first"]["stages"]] if sizes else []:
        cells = [next((f"{r['seconds']:.1f} s" for r in s["first"]["stages"] if r["stage"] == stage), "-")
                 for s in sizes]  # fmt: skip
        row(stage, cells)
    row("whole run", [f"{s['first']['seconds']:.0f} s" for s in sizes])
    reruns = [f"{s['rerun']['seconds']:.1f} s ({100 * s['rerun_over_first']:.1f}%)" if "rerun_over_first" in s else "-"
              for s in sizes]  # fmt: skip
    totals = {
        "CPU seconds": [f"{s['first']['cpu_seconds']:.0f}" for s in sizes],
        "images/s": [f"{s['first']['images_per_s']:.2f}" for s in sizes],
        "peak RSS": [f"{s['first']['peak_rss_mb']:,.0f} MB" for s in sizes],
        "rerun (share of the first run)": reruns,
    }
    lines.extend(_table_line([name, *cells, "", ""]) for name, cells in totals.items())
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=parse_sizes, default=[500], help="images, or sizes like 500,2000,5000")
    parser.add_argument("--workdir", type=Path, default=None, help="an empty or new folder (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the photos and run folders")
    parser.add_argument("--rerun", action=argparse.BooleanOptionalAction, default=True, help="run twice")
    parser.add_argument("--seed", type=int, default=0, help="seed of the variants and descriptions")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--table", type=Path, default=None, help="only print a saved JSON as a Markdown table")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pancap-scale-"))
    if workdir.exists() and any(workdir.iterdir()):
        parser.error(f"--workdir {workdir} is not empty: give a new or empty folder")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = scale_check(args.n, workdir.resolve(), args.rerun, args.seed, args.interval, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if any(size["first"]["returncode"] != 0 for size in result["sizes"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
