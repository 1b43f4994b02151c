"""scripts/bench_captioning.py on a CPU: every step of the GPU run, the targets and the equivalence branch, the
ragged SA-Pancap lengths, and its JSON lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_captioning")


def test_recorder_writes_numpy_and_torch_scalars_as_json(bench, tmp_path, json_native):
    path = tmp_path / "steps.jsonl"
    path.write_text('{"step": "old"}\n')
    recorder = bench.Recorder(path)
    recorder.add(
        "ours", ours={"ok": np.bool_(True), "rate": np.float32(2.5), "n": torch.tensor(3), "v": np.arange(2)}
    )
    assert recorder.results == {"ours": {"ok": True, "rate": 2.5, "n": 3, "v": [0, 1]}}
    assert json_native(recorder.results)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"step": "ours", **recorder.results}
    ]


@pytest.mark.slow
def test_drawn_lengths_follow_the_sapancap_captions(bench):
    from pancap_retrieval.testing import synthetic_tokenizer

    tokenizer = synthetic_tokenizer(["a dog <box>[[1, 2, 3, 4]]</box>, the sky is blue."])
    lengths, source = bench.drawn_lengths(tokenizer, 40, 64, seed=3)
    assert source["captions"] == 630
    for stage in bench.STAGES:
        assert len(lengths[stage]) == 40 and all(1 <= n <= 64 for n in lengths[stage])
        assert len(set(lengths[stage])) > 5  # ragged
    # captions are far longer than their box lists, before scaling
    assert source["stage4"]["tokens_mean"] > source["stage2"]["tokens_mean"] > source["stage3"]["tokens_mean"]
    assert bench.drawn_lengths(tokenizer, 40, 64, seed=3)[0] == lengths


@pytest.mark.slow
def test_tiny_check_targets_with_sapancap_lengths(bench, tmp_path, capsys, monkeypatch, json_native):
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored afterwards, whatever the run sets
    lines = tmp_path / "bench.jsonl"
    args = ["--tiny", "--check-targets", "--lengths", "sapancap", "--images", "3", "--batch-size", "auto"]
    args += ["--compile-any-device", "--compile-backend", "eager"]  # the GPU's compiled path, traced on a CPU
    args += ["--layers", "1"]
    results = bench.main([*args, "--original-images", "1", "--new-tokens", "6", "--out", str(lines)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == results and json_native(results)
    assert (
        results["batch_size"] == 3 and results["ours"]["batch_size_used"] == 3
    )  # auto: 4 on a CPU, at most 3
    assert results["ours"]["shared_prefix"] is True and results["ours"]["warmup_seconds"] > 0
    assert results["ours"]["compiled"] is True and results["ours"]["compile_cache_dir"] is not None
    equivalence = results["equivalence"]
    assert (
        equivalence["equivalent"] is True and equivalence["steps"] == 3 * 4 * 6
    )  # a batch of three, fed plain's
    assert equivalence["max_diff_over_spread"] < 1e-4 and results["identical_to_plain"] == 1.0
    ragged = results["ragged"]
    assert ragged["rows_stopped_at_drawn_lengths"] is True
    assert 0 < ragged["useful_tokens"] < 3 * 4 * 6
    assert results["targets"] == bench.TARGETS and results["targets_judged_on"] == "tiny on cpu"
    assert set(results["meets_targets"]) == {*bench.TARGETS, "equivalent", "identical_to_plain"}
    assert results["meets_targets"]["equivalent"] is True
    assert all(v is None or type(v) is bool for v in results["meets_targets"].values())
    written = [json.loads(line) for line in lines.read_text().splitlines()]
    steps = ["setup", "original_loop", "plain_batched", "ours", "equivalence", "decode", "ragged", "targets"]
    assert [w["step"] for w in written] == [*steps, "summary"]
    assert {k: v for k, v in written[-1].items() if k != "step"} == results
