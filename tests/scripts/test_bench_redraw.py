"""scripts/bench_redraw.py on a CPU: the GPU run's targets, summary and writers, and its JSON lines."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_redraw")


@pytest.mark.slow
def test_tiny_check_targets_prints_targets_equivalence_and_writes_each_step(tmp_path, bench, capsys, json_native):
    lines = tmp_path / "bench.jsonl"
    lines.write_text('{"step": "row", "row": {"name": "from an earlier run"}}\n')
    results = bench.main(["--tiny", "--check-targets", "--profile", "--out", str(lines)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == results and json_native(results)
    assert printed["targets"] == bench.TARGETS and printed["targets_judged_on"] == "tiny on cpu"
    assert printed["steps"] == 4  # one of them grounded: the fuser path is compared with eager too
    assert set(printed["meets_targets"]) == set(bench.TARGETS)
    assert all(type(v) is bool for v in printed["meets_targets"].values())
    equivalence = printed["equivalence"]
    assert set(equivalence["psnr_db_vs_eager_by_batch"]) == {"1", "2"}
    assert equivalence["equivalent"] is True  # fp32 on a CPU: ours draws the eager images
    assert printed["summary"]["min_psnr_db_vs_eager"] >= 30.0
    names = [row["name"] for row in printed["rows"]]
    assert names == ["diffusers-eager-fp32-b1", "diffusers-eager-fp32-batched", "ours-b1", "ours-b2"]
    ours = printed["rows"][2]
    assert ours["fused_qkv"] is True and ours["channels_last"] is True and ours["warmup_seconds"] > 0
    profile = printed["profile"]
    assert set(profile["share_of_image_time"]) == {"unet_all_steps", "vae_decode", "text_encode"}
    assert {"convolution", "matmul", "attention"} <= set(profile["unet_by_operator"]["share_by_kind"])
    assert sum(profile["unet_by_operator"]["share_by_kind"].values()) == pytest.approx(1.0, abs=1e-3)
    written = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [w["step"] for w in written] == ["setup", "flops", "profile", "row", "row", "row", "row", "summary"]
    assert [w["row"] for w in written if w["step"] == "row"] == printed["rows"]  # the earlier run's line is gone


def test_without_check_targets_a_cpu_run_judges_no_target(bench):
    plan = _plan(bench, check_targets=False)
    out = bench.summarise(plan, _rows(np.float64))
    assert "meets_targets" not in out and "targets" not in out
    assert out["equivalence"]["psnr_db_vs_eager_by_batch"] == {"1": 31.5, "8": 29.0}


def test_targets_judged_on_numpy_figures_are_plain_bools(bench, tmp_path, json_native):
    """The GPU run died at its last line on a numpy bool in meets_targets: that must be impossible."""
    out = bench.summarise(_plan(bench, check_targets=True), _rows(np.float64))
    assert out["meets_targets"] == {
        "best_flop_utilisation": True,
        "best_images_per_s": True,
        "batch1_unet_steps_per_s": True,
        "min_psnr_db_vs_eager": False,
    }
    assert out["equivalence"]["equivalent"] is False
    json.dumps(out)
    record = bench.Recorder(tmp_path / "lines.jsonl")
    record.add("summary", **out, extra={"numpy_bool": np.bool_(True), "half": np.float16(0.5)})
    assert json_native(record.results)
    assert json.loads(record.text())["extra"] == {"numpy_bool": True, "half": 0.5}
    (line,) = (json.loads(x) for x in (tmp_path / "lines.jsonl").read_text().splitlines())
    assert line["step"] == "summary" and line["meets_targets"]["min_psnr_db_vs_eager"] is False


def test_recorder_converts_torch_values(bench, tmp_path):
    import torch

    record = bench.Recorder(None)
    record.add("row", row={"name": "ours-b1", "rate": torch.tensor(3.5), "ok": torch.tensor(True)})
    assert record.results["rows"] == [{"name": "ours-b1", "rate": 3.5, "ok": True}]


def _plan(bench, check_targets: bool):
    import torch

    return bench.Plan(
        preset="tiny",
        steps=2,
        batches=[1, 8],
        eager_batch=8,
        size=32,
        guidance_scale=7.5,
        device=torch.device("cpu"),
        half=torch.float32,
        compile_mode=None,
        check_targets=check_targets,
        peak_tflops=800.0,
    )


def _rows(number):
    return [
        {"name": "diffusers-eager-fp32-b1", "batch": 1, "flop_utilisation": number(0.1)},
        {"name": "ours-b1", "batch": 1, "flop_utilisation": number(0.3), "images_per_s": number(1.0),
         "unet_steps_per_s": number(40.0), "min_psnr_db_vs_eager": number(31.5)},
        {"name": "ours-b8", "batch": 8, "flop_utilisation": number(0.55), "images_per_s": number(4.0),
         "unet_steps_per_s": number(10.0), "min_psnr_db_vs_eager": number(29.0)},
    ]  # fmt: skip
