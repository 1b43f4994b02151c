"""scripts/bench_image_text.py --tiny: every step written as it finishes, with rates and peak memory."""

from __future__ import annotations

import json


def test_tiny_run_writes_every_step_as_json_lines(load_script, json_native, tmp_path, capsys):
    bench = load_script("bench_image_text")
    out = tmp_path / "bench.jsonl"
    report = bench.main(["--tiny", "--images", "6", "--texts", "5", "--rerank-k", "3", "--out", str(out)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["step"] for line in lines] == [
        "setup",
        "clip_load",
        "clip_images",
        "clip_texts",
        "blip_load",
        "blip_images",
        "blip_texts",
        "blip_rerank",
        "summary",
    ]
    assert all(json_native(line) for line in lines)
    assert report["setup"]["device"] == "cpu" and report["setup"]["preset"] == "tiny"
    for name in ("clip", "blip"):
        assert report[f"{name}_images"]["images_per_s"] > 0 and report[f"{name}_images"]["peak_memory_mb"] > 0
        assert report[f"{name}_texts"]["chunk_texts_per_s"] > 0
    assert report["clip_texts"]["text_window"] == 77 and report["clip_texts"]["over_window_rate"] == 1.0
    assert report["clip_load"]["manifest"]["fingerprint"] != "in-memory"  # tiny: through the real loader
    rerank = report["blip_rerank"]
    assert (rerank["queries"], rerank["k"], rerank["pairs"]) == (6, 3, 18) and rerank["pairs_per_s"] > 0
    assert json.loads(capsys.readouterr().out) == report
