"""`pancap reconstruct`, `pancap score pancapscore` and `pancap leaderboard` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.leaderboard import table


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_reconstruct_a_captions_file_and_write_its_gallery(tmp_path):
    from pancap_retrieval.data import load_dataset

    ids = load_dataset("sample", limit=3)["example_id"]
    captions = tmp_path / "boxes.jsonl"
    with captions.open("w") as handle:
        for example_id in ids:
            text = f"A photo of {example_id}. A thing [[0.1, 0.2, 0.6, 0.9]] stands left of a cup [[0.6, 0.5, 0.9, 0.8]]."
            handle.write(json.dumps({"example_id": example_id, "caption": text}) + "\n")
    out = tmp_path / "run"
    invoke(
        "reconstruct", "--dataset", "sample", "--limit", "3", "--captions", str(captions), "--out", str(out)
    )
    result = json.loads((out / "reconstruction.json").read_text())
    entry = result["captioners"]["boxes"]
    assert entry["redrawn"] == 3 and entry["boxes"] == 6
    assert sorted(p.stem for p in (out / "images" / "boxes").glob("*.png")) == sorted(ids)
    gallery = invoke("gallery", str(out))
    assert (out / "gallery" / "index.html").is_file() and "index.html" in gallery.output


def test_score_pancapscore_rule_judge_on_shipped_captions(tmp_path):
    import pancap_retrieval.data

    ref = Path(pancap_retrieval.data.__file__).parent / "sapancap" / "sapancap_test_gtcaption.json"
    items = json.loads(ref.read_text())[:10]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(items[:5]))  # half the images: the rest are counted as only in ref
    result = invoke(
        "score", "pancapscore", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "s")
    )
    assert "not computed" in result.output
    scores = json.loads((tmp_path / "s" / "pancapscore.json").read_text())
    assert scores["dimensions"]["tag"]["f1"] == 1.0 and scores["dimensions"]["location"]["f1"] == 1.0
    assert scores["overall"] is None


def test_leaderboard_across_runs_leaves_missing_cells_empty(tmp_path):
    runs = []
    for name, rows in (("a", ["reference", "detector"]), ("b", ["reference"])):
        run = tmp_path / name
        run.mkdir()
        results = {
            "dataset": {"name": f"set-{name}", "split": "test"},
            "embedder": {"name": "minilm"},
            "rows": [{"captioner": c, "n": 4, "c2d": {"R@1": 0.5}, "d2c": {"R@1": 0.25}} for c in rows],
        }
        (run / "results.json").write_text(json.dumps(results))
        runs.append(str(run))
    result = invoke("leaderboard", *runs, "--out", str(tmp_path / "board"))
    lines = result.output.splitlines()
    assert lines[0].startswith("| system | kind | set-a/test minilm n | set-a/test minilm c2d R@1 |")
    detector = next(line for line in lines if line.startswith("| detector |"))
    cells = [cell.strip() for cell in detector.strip("|").split("|")]
    columns, _ = table([json.loads((tmp_path / r / "results.json").read_text()) for r in ("a", "b")])
    assert cells[columns.index("set-a/test minilm c2d R@1")] == "50.0"
    assert cells[columns.index("set-b/test minilm c2d R@1")] == ""  # not measured: empty, never averaged
    assert (tmp_path / "board" / "leaderboard.csv").is_file()
