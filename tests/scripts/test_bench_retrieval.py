"""scripts/bench_retrieval.py: every backend in its own process on one small size, and how their lists agree."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_retrieval")


@pytest.mark.slow
def test_small_size_runs_every_backend_and_their_top_k_lists_agree(bench, capsys):
    assert bench.main(["--sizes", "1500x300", "--numpy-budget-gb", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    (entry,) = report["results"]
    assert (entry["gallery"], entry["queries"]) == (1500, 300)
    assert set(entry["backends"]) == {"faiss", "torch", "numpy"}
    assert all(entry["backends"][b]["seconds"] > 0 for b in ("faiss", "torch", "numpy"))
    assert entry["top_k_identical"] is True
    assert entry["rows_identical_fraction"] == {"faiss~numpy": 1.0, "faiss~torch": 1.0, "numpy~torch": 1.0}
    assert entry["numpy_over_faiss_speedup"] > 0 and "target_20k_x_20k" not in report


def test_agreement_counts_rows_that_differ_and_a_skipped_backend_has_no_ratio(bench):
    a = np.arange(12).reshape(4, 3)
    b = a.copy()
    b[1, 2] = 99
    out = bench.agreement({"faiss": a, "torch": b}, {"faiss": {"seconds": 2.0}, "numpy": {"skipped": "too big"},
                                                      "torch": {"seconds": 3.0}})  # fmt: skip
    assert out["top_k_identical"] is False and out["rows_identical_fraction"] == {"faiss~torch": 0.75}
    assert out["torch_over_faiss_time_ratio"] == 1.5 and "numpy_over_faiss_speedup" not in out
