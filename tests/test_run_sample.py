"""The main job, `pancap run eval_suites/sample.yaml`, end to end on the offline defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli

SUITE = Path(__file__).resolve().parents[1] / "eval_suites" / "sample.yaml"


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PANCAP_CACHE_DIR", str(root / "cache"))
        result = CliRunner().invoke(
            cli, ["run", str(SUITE), "--out", str(root / "run")], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        first = {p: p.stat().st_mtime_ns for p in (root / "run").rglob("*") if p.is_file()}
        again = CliRunner().invoke(
            cli, ["run", str(SUITE), "--out", str(root / "run")], catch_exceptions=False
        )
        assert again.exit_code == 0, again.output
    return root / "run", result.output, first


@pytest.mark.slow
def test_reference_row_is_perfect_and_every_captioner_is_in_the_table(sample_run):
    run_dir, output, _ = sample_run
    results = json.loads((run_dir / "results.json").read_text())
    rows = {row["system"]: row for row in results["rows"]}
    assert set(rows) == {"reference", "detector"}
    assert rows["reference"]["caption->description"]["R@1"] == 1.0 and rows["reference"]["description->caption"]["R@1"] == 1.0
    assert {row["kind"] for row in rows.values()} == {"captioner"}
    assert rows["reference"]["n"] == rows["detector"]["n"] == results["dataset"]["n"] == 20
    for row in rows.values():
        for direction in ("caption->description", "description->caption"):
            metrics = row[direction]
            assert 0.0 <= metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= 1.0
            lo, hi = metrics["R@1_ci"]
            assert lo <= metrics["R@1"] <= hi
    table = (run_dir / "leaderboard.md").read_text()
    assert "| reference | captioner | 20 | 100.0 [100.0, 100.0] |" in table and "| detector | captioner | 20 |" in table
    assert "| reference |" in output and "| detector |" in output


def test_run_folder_holds_every_artifact(sample_run):
    run_dir, _, _ = sample_run
    for name in ("results.json", "leaderboard.md", "leaderboard.csv", "recall_at_k.png", "manifest.json"):
        assert (run_dir / name).is_file(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["versions"]["torch"] and manifest["seed"] == 0
    assert manifest["dataset"]["name"] == "sample" and manifest["embedder"]
    assert "git_commit" in manifest
    assert (run_dir / "gallery" / "index.html").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["reconstruction"]["captioners"]) == {"reference", "detector"}


def test_rerun_skips_finished_stages(sample_run):
    run_dir, _, first = sample_run
    for path in list((run_dir / "captions").glob("*.jsonl")) + list((run_dir / "retrieval").glob("*.json")):
        assert path.stat().st_mtime_ns == first[path], f"{path.name} was redone"
    lines = (run_dir / "captions" / "detector__sample__test.jsonl").read_text().splitlines()
    assert len(lines) == 20


@pytest.mark.slow
def test_every_long_step_has_a_labelled_bar(sample_run):
    import re

    _, output, _ = sample_run
    labels = set(re.findall(r"^([a-z][a-z ()0-9]+): +\d+%\|", output.replace("\r", "\n"), flags=re.M))
    for stage in ("caption", "redraw", "score"):
        assert {f"{stage} reference", f"{stage} detector"} <= labels, labels
    assert "gallery thumbnails" in labels


def test_faiss_top10_lists_are_kept_per_captioner(sample_run):
    run_dir, _, _ = sample_run
    top = json.loads((run_dir / "retrieval" / "reference.top10.json").read_text())
    assert top["backend"] == "faiss"
    assert len(top["c2d"]) == 20 and all(ids[0] == query for query, ids in top["c2d"].items())
    assert all(len(ids) == 10 for ids in top["d2c"].values())


def test_rows_report_the_over_limit_rate_of_their_own_texts(sample_run):
    run_dir, _, _ = sample_run
    for row in json.loads((run_dir / "results.json").read_text())["rows"]:
        captions, descriptions = row["embedding"]["captions"], row["embedding"]["descriptions"]
        assert captions["n_texts"] == row["n"] and descriptions["n_texts"] == 20
        assert captions["max_seq_length"] == 256 and 0.0 <= captions["over_limit_rate"] <= 1.0
        # texts past MiniLM's 256 word pieces are chunked by default, so nothing of them is cut
        assert descriptions["over_limit_handling"] == "chunked" and descriptions["truncated_rate"] == 0.0


def test_results_hold_nothing_that_depends_on_the_cache(sample_run, tmp_path):
    """Recomputing the retrieval rows with a warm embedding cache writes the same results.json; what the cache
    spared is in the manifest's cache statistics."""
    run_dir, _, _ = sample_run
    first = (run_dir / "results.json").read_text()
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "retrieval")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PANCAP_CACHE_DIR", str(run_dir.parent / "cache"))
        again = CliRunner().invoke(cli, ["run", str(SUITE), "--out", str(copy)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert (copy / "results.json").read_text() == first
    cache = json.loads((copy / "manifest.json").read_text())["cache"]
    assert cache["embedding"]["cache_hits"] > 0 and cache["embedding"]["encoded_texts"] == 0
    assert cache["rows_reused"] == [] and "n_chunks" not in first and "cache_hits" not in first


def test_retrieval_rows_are_those_recorded_before_the_rework(sample_run):
    """The sample suite's retrieval rows equal, to the last digit, those of the code before the run folder, keys,
    stores and registries were reworked (tests/golden, recorded from that commit)."""
    run_dir, _, _ = sample_run
    golden = json.loads((Path(__file__).parent / "golden" / "sample_retrieval_rows.json").read_text())["rows"]
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    got = {r["system"]: {"n": r["n"], "c2d": r["caption->description"], "d2c": r["description->caption"]} for r in rows}
    assert got == golden  # recorded as c2d and d2c, the names the directions had then
