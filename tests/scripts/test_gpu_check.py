"""scripts/gpu_check.py: the tiny sequence end to end on a CPU, and the parts that keep a GPU run's result."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check(load_script):
    return load_script("gpu_check")


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_tiny_check_runs_every_step_and_writes_log_and_summary(tmp_path, gpu_check):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = read_lines(out / "gpu_check.jsonl")
    assert [line["step"] for line in lines] == [name for name, _ in gpu_check.STEPS]
    failed = {line["step"]: line.get("error") for line in lines if not line["ok"]}
    assert not failed
    assert all(isinstance(line["seconds"], float) for line in lines)
    environment, by_step = lines[0], {line["step"]: line for line in lines}
    assert environment["stand_ins"] == {"embedder": "random-weight stand-in", "inception": "random-weight stand-in"}
    assert environment["search_backend"] in ("torch", "faiss")
    assert not Path(environment["work"]).exists()  # the default work folder is removed
    run = by_step["pancap_run"]
    assert set(run["retrieval"]) == {"reference", "pancapchain"}
    assert run["retrieval"]["reference"]["c2d_R@1"] == 1.0  # the oracle finds its own description
    assert {entry["redrawn"] for entry in run["redraw"].values()} == {4}
    assert run["suite"]["captioners"][1]["options"]["static_cache"] is True
    assert run["suite"]["reconstruction"]["redrawer"] == "gligen"
    assert "stand-in" in by_step["inception_stand_in"]["inception"]
    redraw = by_step["bench_redraw"]
    assert set(redraw["meets_targets"]) == {"best_flop_utilisation", "best_images_per_s"} | {
        "batch1_unet_steps_per_s",
        "min_psnr_db_vs_eager",
    }
    assert set(redraw["equivalence"]["psnr_db_vs_eager_by_batch"]) == {"1", "2"}
    captioning = by_step["bench_captioning"]
    assert {"speedup_vs_original", "equivalence", "meets_targets"} <= set(captioning)
    image_text = by_step["bench_image_text"]
    assert image_text["clip_images"]["images_per_s"] > 0 and image_text["blip_rerank"]["pairs"] == 4 * 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and summary["failed"] == [] and summary["steps"] == lines
    assert {p.name for p in out.iterdir()} == {
        "gpu_check.jsonl",
        "summary.json",
        "leaderboard.md",
        "bench_redraw.jsonl",
        "bench_captioning.jsonl",
        "bench_image_text.jsonl",
    }


def test_a_full_size_check_without_a_gpu_stops_after_saying_so(tmp_path, gpu_check):
    import os

    script = ROOT / "scripts" / "gpu_check.py"
    no_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # any GPU of this machine hidden: the same run everywhere
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True,
                          env=no_gpu)  # fmt: skip
    assert done.returncode == 1
    lines = read_lines(tmp_path / "gpu_check.jsonl")
    assert lines[0]["step"] == "environment" and lines[0]["error"] == "no CUDA device: run with --tiny on a CPU"
    assert lines[0]["device"] == "cpu"  # what it found is logged with the error
    assert {line["error"] for line in lines[1:]} == {"skipped: no usable environment"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is False and summary["failed"] == [name for name, _ in gpu_check.STEPS]


def test_log_writes_numpy_and_torch_values_as_json_native(tmp_path, gpu_check):
    import torch

    log = gpu_check.StepLog(tmp_path / gpu_check.LOG_FILE)
    record = log.write(
        {
            "step": "x",
            "ok": np.bool_(True),
            "meets": {"a": np.bool_(False), "b": torch.tensor(True)},
            "rate": np.float32(0.5),
            "count": np.int64(3),
            "loss": torch.tensor(2.5),
            "vector": np.arange(3, dtype=np.int32),
            "matrix": torch.ones(2, 2, dtype=torch.float16),
            "where": tmp_path,
        }
    )
    (line,) = read_lines(tmp_path / "gpu_check.jsonl")
    assert line == record
    assert line["ok"] is True and line["meets"] == {"a": False, "b": True}
    assert line["rate"] == 0.5 and line["count"] == 3 and line["loss"] == 2.5
    assert line["vector"] == [0, 1, 2] and line["matrix"] == [[1.0, 1.0], [1.0, 1.0]]
    assert line["where"] == str(tmp_path)
    json.dumps(record)  # native all the way down: no default= needed


def test_a_failing_step_is_logged_and_the_next_one_runs(tmp_path, gpu_check):
    log = gpu_check.StepLog(tmp_path / gpu_check.LOG_FILE)

    def broken():
        raise RuntimeError("CUDA error: out of memory\nmore lines")

    def partial():
        raise gpu_check.StepFailed("timed out after 5 s", {"rows": {"a": 1}})

    first = gpu_check.run_step(log, "broken", broken)
    second = gpu_check.run_step(log, "partial", partial)
    third = gpu_check.run_step(log, "fine", lambda: {"value": np.float64(1.5)})
    assert first["ok"] is False and first["error"] == "RuntimeError: CUDA error: out of memory"
    assert first["where"].startswith("test_gpu_check.py:")
    assert second == {"step": "partial", "rows": {"a": 1}, "ok": False, "error": "timed out after 5 s",
                      "seconds": second["seconds"]}  # fmt: skip
    assert third["ok"] is True and third["value"] == 1.5
    assert [line["step"] for line in read_lines(tmp_path / "gpu_check.jsonl")] == ["broken", "partial", "fine"]


def _check(gpu_check, tmp_path):
    return gpu_check.Check(
        size=gpu_check.SIZES["tiny"], tiny=True, out=tmp_path, work=tmp_path, deadline=0.0, budget=1.0, stand_ins={}
    )


def test_a_step_past_its_time_is_ended_and_reports_its_last_output(tmp_path, gpu_check):
    check = _check(gpu_check, tmp_path)
    code = "import time; print('started', flush=True); import sys; print('on stderr', file=sys.stderr, flush=True); time.sleep(60)"
    with pytest.raises(gpu_check.StepFailed, match=r"timed out after 2 s; last output: on stderr"):
        gpu_check.run_cli(check, "sleeper", ["-c", code], timeout=2)
    with pytest.raises(gpu_check.StepFailed, match=r"exit status 3"):
        gpu_check.run_cli(check, "failing", ["-c", "raise SystemExit(3)"], timeout=30)
    with pytest.raises(gpu_check.StepFailed, match="skipped: 0 s of the budget left"):
        gpu_check.run_cli(check, "late", ["-c", "pass"], timeout=-4)


def test_stand_ins_are_chosen_by_what_is_installed(gpu_check):
    assert gpu_check.choose_stand_ins("always") == {"embedder": True, "inception": True}
    assert gpu_check.choose_stand_ins("never") == {"embedder": False, "inception": False}
    installed = {
        name: importlib.util.find_spec(package) is not None for name, package in gpu_check.STAND_IN_PACKAGES.items()
    }
    assert gpu_check.choose_stand_ins("auto") == {name: not found for name, found in installed.items()}


def test_bench_figures_survive_a_run_cut_short(tmp_path, gpu_check):
    lines = tmp_path / "bench_redraw.jsonl"
    rows = [{"name": f"ours-b{b}", "images_per_s": 1.0 * b, "min_psnr_db_vs_eager": 40.0} for b in (1, 2)]
    text = "".join(json.dumps({"step": "row", "row": row}) + "\n" for row in rows)
    lines.write_text(text + '{"step": "summary", "summ')  # killed while writing the summary
    with pytest.warns(UserWarning, match="torn last line"):
        figures = gpu_check.bench_redraw_figures(lines)
    assert set(figures) == {"rows"}
    assert figures["rows"]["ours-b2"]["images_per_s"] == 2.0
    assert gpu_check.bench_redraw_figures(tmp_path / "missing.jsonl") == {"rows": {}}


def test_captioning_figures_are_its_finished_steps(tmp_path, gpu_check):
    lines = tmp_path / "bench_captioning.jsonl"
    steps = [
        {"step": "setup", "config": {"big": 1}},
        {"step": "ours", "ours": {"images_per_s": 2.5}, "speedup_vs_original": 90.0},
        {"step": "equivalence", "equivalence": {"equivalent": True}},
    ]
    lines.write_text("".join(json.dumps(step) + "\n" for step in steps))
    assert gpu_check.bench_captioning_figures(lines) == {
        "ours": {"images_per_s": 2.5},
        "speedup_vs_original": 90.0,
        "equivalence": {"equivalent": True},
    }


def test_the_fid_network_can_be_replaced_by_a_file_and_says_so(tmp_path, monkeypatch):
    from pancap_retrieval.errors import ModelLoadError
    from reconstruct import fidelity

    monkeypatch.setenv(fidelity.INCEPTION_ENV, str(tmp_path / "missing.pt"))
    with pytest.raises(ModelLoadError, match=r"PANCAP_FID_INCEPTION=.*missing\.pt: no such file"):
        fidelity.inception_model_path()


def test_image_text_figures_are_its_finished_steps_by_name(tmp_path, gpu_check):
    lines = tmp_path / "bench_image_text.jsonl"
    steps = [
        {"step": "setup", "device": "cuda"},
        {"step": "clip_load", "seconds": 3.0, "manifest": {"name": "clip"}},
        {"step": "clip_images", "images_per_s": 410.5, "peak_memory_mb": 900.0},
    ]
    lines.write_text("".join(json.dumps(step) + "\n" for step in steps))
    assert gpu_check.bench_image_text_figures(lines) == {
        "clip_load": {"seconds": 3.0},
        "clip_images": {"images_per_s": 410.5, "peak_memory_mb": 900.0},
    }
