from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pancap_retrieval.captions.store import CaptionRecord
from reconstruct.gallery import write_gallery
from reconstruct.run import reconstruct_run

GOOD = {
    "astronaut": "A woman [[0.02, 0.02, 0.72, 1.0]] in a white spacesuit poses before a flag [[0.75, 0.1, 1.0, 0.5]].",
    "coffee": "A cup [[0.27, 0.03, 0.69, 0.78]] of coffee on a saucer.",
    "chelsea": "A cat [[0.01, 0.0, 0.93, 0.98]] lies on a rug.",
    "rocket": "A rocket on a launch pad under a clear sky.",
}
WRONG = {
    "astronaut": "A man [[0.7, 0.7, 0.95, 0.95]] stands in a room.",
    "coffee": "A dog [[0.0, 0.0, 0.3, 0.3]] sits by a cup [[0.7, 0.5, 1.0, 1.0]].",
    "chelsea": "A cat [[0.6, 0.6, 0.7, 0.7]] near a window.",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, photos) -> Path:
    run = tmp_path_factory.mktemp("run")
    captions = {
        "good": [CaptionRecord(k, v) for k, v in GOOD.items()],
        "wrong": [
            *(CaptionRecord(k, v) for k, v in WRONG.items()),
            CaptionRecord.failed("rocket", "generation timed out"),
            CaptionRecord("not_in_dataset", "A tree [[0, 0, 1, 1]]."),
        ],
    }
    reconstruct_run(run, captions, dict(photos), redrawer="sketch", seed=0, progress=False)
    return run


def test_run_writes_images_layouts_and_scores(run_dir):
    results = json.loads((run_dir / "reconstruction.json").read_text())
    assert results["redrawer"]["name"] == "sketch"
    good, wrong = results["captioners"]["good"], results["captioners"]["wrong"]
    assert good["redrawn"] == 4 and good["text_only"] == 1 and good["boxes"] == 4
    assert (
        wrong["redrawn"] == 3
        and wrong["skipped"]["failed_caption"] == 1
        and wrong["skipped"]["no_image"] == 1
    )
    assert sorted(p.name for p in (run_dir / "images" / "good").glob("*.png")) == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.png",
    ]
    lines = (run_dir / "images" / "good" / "layouts.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["layout"]["canvas"] == [512, 512]
    # the caption's boxes are right for the good captioner (3 COCO-named boxes found on the original), not for
    # the wrong one (man, dog, cup, cat all misplaced)
    assert good["scores"]["adherence"]["original"]["matched"] == 3
    assert wrong["scores"]["adherence"]["original"]["instances"] == 4
    assert wrong["scores"]["adherence"]["original"]["matched"] == 0
    assert good["scores"]["fid"]["n"] == 4 and good["scores"]["kid"]["subset_size"] == 4


def test_rerun_reuses_what_is_on_disk(run_dir, photos, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    run_dir = tmp_path / "run"
    captions = {"good": [CaptionRecord(k, v) for k, v in GOOD.items()]}
    results = reconstruct_run(
        run_dir, captions, dict(photos), redrawer="sketch", seed=0, scores=False, progress=False
    )
    assert results["captioners"]["good"]["redrawn"] == 0 and results["captioners"]["good"]["reused"] == 4
    on_disk = json.loads((run_dir / "reconstruction.json").read_text())
    assert sorted(on_disk["captioners"]) == ["good", "wrong"]  # same redrawer and seed: "wrong" is kept
    changed = reconstruct_run(
        run_dir, captions, dict(photos), redrawer="sketch", seed=1, scores=False, progress=False
    )
    assert changed["captioners"]["good"]["redrawn"] == 4
    # the captioner not redrawn this time keeps its entry while redrawer and seed are those it was drawn with
    kept = json.loads((run_dir / "reconstruction.json").read_text())
    assert list(kept["captioners"]) == ["good"] and kept["seed"] == 1


def test_gligen_run_end_to_end(tmp_path, photos, tiny_gligen_dir):
    captions = {"good": [CaptionRecord(k, v) for k, v in GOOD.items()]}
    # keyword options as a suite passes them: steps, then the rest for the redrawer
    results = reconstruct_run(
        tmp_path, captions, dict(photos), "gligen", str(tiny_gligen_dir), 0,
        steps=2, device="cpu", detector=None, progress=False, canvas_size=32, guidance_scale=3.0,
    )  # fmt: skip
    entry = results["captioners"]["good"]
    assert entry["redrawn"] == 4 and entry["text_only"] == 1
    assert results["redrawer"]["steps"] == 2 and results["redrawer"]["model"] == str(tiny_gligen_dir)
    assert results["redrawer"]["guidance_scale"] == 3.0
    assert entry["scores"]["adherence"] == {"skipped": "no detector"}
    line = json.loads((tmp_path / "images" / "good" / "layouts.jsonl").read_text().splitlines()[0])
    assert line["layout"]["token_counter"] == "tokenizer" and line["layout"]["canvas"] == [32, 32]


def _chromium_flags(profile: str) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        f"--user-data-dir={profile}",
    ]


def test_gallery_opens_in_a_real_browser_with_every_image(run_dir, chromium):
    index = write_gallery(run_dir)
    assert index == run_dir / "gallery" / "index.html"
    assert (run_dir / "gallery" / "grid.png").is_file()
    page = index.read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    # 4 originals, layouts + redraws: 4 for "good", 3 for "wrong"
    assert len(sources) == 4 + 2 * 4 + 2 * 3
    assert all(not s.startswith(("/", "file:")) for s in sources)

    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [chromium, *_chromium_flags(profile), "--virtual-time-budget=5000", "--dump-dom", index.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
        )
    match = re.search(r'<pre id="image-status">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert match, f"no image status in the page (chromium rc={dom.returncode}): {dom.stderr[-500:]}"
    status = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(status) == len(sources)
    broken = [s["src"] for s in status if not s["complete"] or s["naturalWidth"] == 0]
    assert not broken, f"images that did not load: {broken}"

    screenshot = run_dir / "gallery" / "screenshot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *_chromium_flags(profile), f"--screenshot={screenshot}", "--window-size=1280,2000",
             "--virtual-time-budget=5000", index.as_uri()],
            capture_output=True,
            timeout=90,
        )  # fmt: skip
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
