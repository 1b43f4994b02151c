"""scripts/scale_check.py: the DOCCI-style dataset it builds, its arithmetic, and one real small run through the CLI."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "scale_check.py"


@pytest.fixture(scope="module")
def scale_check(load_script):
    return load_script("scale_check")


def test_descriptions_are_docci_length_distinct_and_some_longer_than_minilm(scale_check):
    from tokenizers import Tokenizer

    from pancap_retrieval.data.sample import sample_entries
    from pancap_retrieval.retrieval.embedder import resolve_local

    entries = sample_entries()
    texts = []
    for index in range(400):
        rng = random.Random(index)
        params = scale_check.variant_params(rng)
        texts.append(scale_check.describe(entries[index % len(entries)]["description"], params, (640, 480), rng))
    words = [len(text.split()) for text in texts]
    tokenizer = Tokenizer.from_file(str(resolve_local("minilm")[0] / "tokenizer.json"))
    tokenizer.no_truncation()  # the file cuts at 128
    over = sum(len(encoding.ids) > 256 for encoding in tokenizer.encode_batch(texts))
    assert len(set(texts)) == len(texts)
    assert 120 <= sum(words) / len(words) <= 155  # DOCCI: 136 words on average
    assert 10 <= over <= 80  # some, not most, are cut at MiniLM's 256 word pieces


def test_mirrored_photo_swaps_left_and_right(scale_check):
    text = "A dog on the left looks right. Left of it, a leftover bowl."
    assert scale_check.mirrored_text(text) == "A dog on the right looks left. Right of it, a leftover bowl."


def test_variants_differ_and_metadata_names_them(scale_check, tmp_path):
    lines = scale_check.build_photos(tmp_path / "photos", 22, seed=0)  # 20 photos, two used twice
    digests = {hashlib.sha256((tmp_path / "photos" / line["file_name"]).read_bytes()).hexdigest() for line in lines}
    assert len(digests) == 22
    assert lines[0]["file_name"].startswith("00000-") and lines[20]["file_name"].startswith("00020-")
    info = scale_check.dataset_folder(tmp_path / "photos", lines[:5], tmp_path / "data")
    assert info["images"] == 5
    metadata = [json.loads(line) for line in (tmp_path / "data" / "metadata.jsonl").read_text().splitlines()]
    assert [m["file_name"] for m in metadata] == [line["file_name"] for line in lines[:5]]
    assert all((tmp_path / "data" / m["file_name"]).is_file() for m in metadata)


def test_exponent_reads_linear_quadratic_and_constant(scale_check):
    sizes = [500, 2000, 5000]
    assert scale_check.exponent(sizes, [0.3 * n for n in sizes]) == 1.0
    assert scale_check.exponent(sizes, [1e-4 * n * n for n in sizes]) == 2.0
    assert scale_check.exponent(sizes, [4.0, 4.0, 4.0]) == 0.0
    assert scale_check.exponent([500], [1.0]) is None


def test_table_of_sizes(scale_check):
    def first(n: int) -> dict:
        stages = [{"stage": "caption detector", "seconds": 0.1 * n, "cpu_seconds": 0.2 * n, "peak_rss_mb": 400.0}]
        return {"seconds": 10 + 0.1 * n, "cpu_seconds": 0.2 * n, "images_per_s": n / (10 + 0.1 * n),
                "peak_rss_mb": 1000.0 + n, "stages": stages}  # fmt: skip

    sizes = [{"n": n, "first": first(n), "rerun": {"seconds": 2.0}, "rerun_over_first": 2.0 / (10 + 0.1 * n)}
             for n in (500, 2000)]  # fmt: skip
    table = scale_check.markdown_table({"sizes": sizes, "linearity": scale_check.linearity(sizes)})
    lines = table.splitlines()
    assert lines[0] == "| stage | N = 500 | N = 2,000 | ms per image | exponent (wall / CPU) |"
    assert lines[2] == "| caption detector | 50.0 s | 200.0 s | 100 → 100 | 1.00 / 1.00 |"
    assert "| peak RSS | 1,500 MB | 3,000 MB |  |  |" in lines
    assert "| rerun (share of the first run) | 2.0 s (3.3%) | 2.0 s (1.0%) |  |  |" in lines


def test_stage_windows_back_to_back_or_recorded(scale_check):
    stages = [{"stage": "a", "seconds": 2.0}, {"stage": "b", "seconds": 3.0}]
    windows, method = scale_check.stage_windows(stages, 100.0)
    assert windows == [(95.0, 97.0), (97.0, 100.0)] and "back to back" in method
    recorded = [{**stage, "started": 10.0 * i} for i, stage in enumerate(stages)]
    assert scale_check.stage_windows(recorded, 100.0) == ([(0.0, 2.0), (10.0, 13.0)], "recorded start times")


def test_sizes_option(scale_check):
    assert scale_check.parse_sizes("2000,500, 500") == [500, 2000]
    for bad in ("", "0", "five"):
        with pytest.raises(Exception, match="image counts like 500"):
            scale_check.parse_sizes(bad)


def test_refuses_a_workdir_with_files(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "4", "--workdir", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "is not empty: give a new or empty folder" in done.stderr.strip().splitlines()[-1]
    assert (tmp_path / "old.txt").is_file()


@pytest.mark.slow
def test_small_run_reports_stages_memory_and_a_fast_rerun(tmp_path):
    workdir, out = tmp_path / "work", tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "12", "--workdir", str(workdir), "--interval", "0.1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout) == result
    assert not workdir.exists()  # removed without --keep
    (size,) = result["sizes"]
    first, rerun = size["first"], size["rerun"]
    names = [row["stage"] for row in first["stages"]]
    for stage in ("caption reference", "caption detector", "redraw detector", "score detector", "gallery"):
        assert stage in names
    assert "retrieve detector (minilm)" in names and "leaderboard" in names
    assert all(row["seconds"] >= 0 and row["cpu_seconds"] >= 0 for row in first["stages"])
    assert next(r for r in first["stages"] if r["stage"] == "caption detector")["done"] == 12
    assert sum(row["seconds"] for row in first["stages"]) <= first["seconds"]
    assert 100 < first["peak_rss_mb"] < 16_000
    assert any(row["peak_rss_mb"] for row in first["stages"])
    assert first["images_per_s"] == pytest.approx(12 / first["seconds"], rel=0.01)
    assert size["retrieval"]["rows"]["reference"]["c2d_R@1"] == 1.0  # every description is distinct
    assert all(row.get("done", 0) == 0 for row in rerun["stages"])  # everything reused
    assert rerun["seconds"] < 0.5 * first["seconds"] and size["rerun_over_first"] < 0.5
    assert size["rerun_same_results"] is True


def test_readme_table_is_the_one_printed_from_the_measured_json(scale_check):
    root = SCRIPT.parents[1]
    measured = json.loads((root / "scripts" / "measured" / "scale_check.json").read_text())
    assert [size["n"] for size in measured["sizes"]] == [500, 2000, 5000]
    assert all(size["first"]["returncode"] == 0 and size["rerun_same_results"] for size in measured["sizes"])
    assert scale_check.markdown_table(measured) in (root / "README.md").read_text()
