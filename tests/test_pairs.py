"""Paired comparisons of a run's rows (pairs.md, pairs.csv, the leaderboard's vs best), checked against an
independent computation: scipy's exact binomial test for McNemar and a direct bootstrap with the same seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from pancap_retrieval.leaderboard import read_run, table, write_leaderboard

IDS = [f"img{i:02d}" for i in range(30)]
RNG = np.random.default_rng(7)
# image id -> rank of its description: a captioner (caption->description) and a retriever (image->description).
CAPTIONER = {i: int(r) for i, r in zip(IDS, RNG.choice([1, 1, 1, 2, 4], size=len(IDS)))}
RETRIEVER = {i: int(r) for i, r in zip(IDS, RNG.choice([1, 1, 3, 9], size=len(IDS)))}
N_BOOTSTRAP, SEED = 400, 3


def _row(system: str, kind: str, ranks: dict[str, int]) -> dict:
    d = "caption->description" if kind == "captioner" else "image->description"
    r1 = sum(r == 1 for r in ranks.values()) / len(ranks)
    return {"system": system, "kind": kind, "n": len(ranks), d: {"R@1": r1, "R@1_ci": [r1, r1], "gallery_size": 30}}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "retrieval").mkdir(parents=True)
    results = {
        "dataset": {"name": "hand", "split": "test"},
        "retrieval": {"bootstrap_samples": N_BOOTSTRAP},
        "rows": [_row("cap", "captioner", CAPTIONER), _row("ret", "retriever", RETRIEVER),
                 _row("other", "captioner", dict(list(CAPTIONER.items())[:10]))],  # other images: not compared
        "reported": {"cap": {"kind": "captioner", "direction": "caption->description", "R@1": 0.619},
                     "MATE": {"kind": "retriever", "direction": "image->description", "R@1": 0.629,
                              "reported_only": True}},
    }  # fmt: skip
    (run / "results.json").write_text(json.dumps(results))
    (run / "manifest.json").write_text(json.dumps({"seed": SEED}))
    # keys in a shuffled order, directions by label and by name: the pairing is by image id
    shuffled = lambda ranks: dict(sorted(ranks.items(), key=lambda kv: hash(kv[0]) % 97))  # noqa: E731
    (run / "retrieval" / "cap.ranks.json").write_text(json.dumps({"c2d": shuffled(CAPTIONER), "d2c": {}}))
    (run / "retrieval" / "ret.ranks.json").write_text(json.dumps({"image->description": shuffled(RETRIEVER)}))
    (run / "retrieval" / "other.ranks.json").write_text(json.dumps({"c2d": dict(list(CAPTIONER.items())[:10])}))
    return run


def _direct(a: dict[str, int], b: dict[str, int]) -> tuple[float, list[float], float]:
    """R@1 difference, its paired bootstrap interval and the McNemar p-value, computed here from scratch."""
    ids = sorted(a)
    ha = np.array([a[i] == 1 for i in ids], dtype=float)
    hb = np.array([b[i] == 1 for i in ids], dtype=float)
    rng = np.random.default_rng(SEED)
    draws = rng.integers(0, len(ids), size=(N_BOOTSTRAP, len(ids)))
    means = (ha - hb)[draws].mean(axis=1)
    a_only, b_only = int(((ha == 1) & (hb == 0)).sum()), int(((ha == 0) & (hb == 1)).sum())
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return ha.mean() - hb.mean(), list(np.quantile(means, [0.025, 0.975])), float(p)


def test_pairs_files_match_an_independent_computation(run: Path) -> None:
    write_leaderboard([run], run)
    with (run / "pairs.csv").open() as f:
        pairs = list(csv.DictReader(f))
    assert [(p["a"], p["b"]) for p in pairs] == [("cap", "ret")]  # "other" was scored on other images
    pair = pairs[0]
    difference, (low, high), p = _direct(CAPTIONER, RETRIEVER)
    assert pair["direction a"] == "caption->description" and pair["direction b"] == "image->description"
    assert float(pair["difference (%)"]) == pytest.approx(100 * difference, abs=1e-4)
    assert float(pair["difference 95% CI low (%)"]) == pytest.approx(100 * low, abs=1e-5)
    assert float(pair["difference 95% CI high (%)"]) == pytest.approx(100 * high, abs=1e-5)
    assert float(pair["McNemar p"]) == pytest.approx(p, rel=1e-9)
    assert 0 < p < 1 and low < high
    markdown = (run / "pairs.md").read_text()
    assert "| cap | ret | 30 |" in markdown and "McNemar" in markdown


def test_leaderboard_has_kind_reported_and_vs_best_columns(run: Path) -> None:
    columns, rows = table([read_run(run)])
    assert columns[:4] == ["system", "kind", "reported R@1", "n"] and "vs best" in columns
    by = {row[0]: dict(zip(columns, row)) for row in rows}
    assert {name: line["kind"] for name, line in by.items()} == {
        "cap": "captioner", "ret": "retriever", "other": "captioner", "MATE": "reported"
    }  # fmt: skip
    assert by["MATE"]["reported R@1"].text() == "62.9" and by["MATE"]["n"] is None
    assert by["cap"]["reported R@1"].text() == "61.9" and by["ret"]["reported R@1"] is None
    best = max(("cap", "ret"), key=lambda n: sum(r == 1 for r in (CAPTIONER if n == "cap" else RETRIEVER).values()))
    worse = "ret" if best == "cap" else "cap"
    assert by[best]["vs best"].text() == "–" and by["other"]["vs best"] is None
    a, b = (RETRIEVER, CAPTIONER) if worse == "ret" else (CAPTIONER, RETRIEVER)
    difference, (low, high), _ = _direct(a, b)
    cell = by[worse]["vs best"]
    assert cell.value == pytest.approx(difference, abs=1e-6) and cell.ci == pytest.approx((low, high))

    write_leaderboard([run], run)
    board = (run / "leaderboard.md").read_text()
    assert "| system | kind | reported R@1 | n |" in board and "| MATE | reported | 62.9 |" in board
    with (run / "leaderboard.csv").open() as f:
        lines = {r["system"]: r for r in csv.DictReader(f)}
    assert lines["ret"]["kind"] == "retriever" and lines["MATE"]["reported R@1 (%)"] == "62.9"
    assert "vs best 95% CI low (%)" in lines["cap"]
    html = (run / "leaderboard.html").read_text()
    assert ">reported</td>" in html or ">reported<" in html
