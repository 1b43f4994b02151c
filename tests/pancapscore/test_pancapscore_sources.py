"""PancapScore's sides by name: the shipped SA-Pancap references (`--ref sapancap:test`) and a run's captioner
(`--run DIR --captioner NAME`), without store paths."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.data.sapancap import read_ground_truth
from pancap_retrieval.pancapscore.sources import reference_side, run_side


def _location_f1(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("| location"))


def test_shipped_references_by_name(tmp_path):
    items = read_ground_truth("test")[:3]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"example_id": i, "caption": c}) + "\n" for i, _, c in items))
    result = CliRunner().invoke(
        cli, ["score", "pancapscore", "--pred", str(pred), "--ref", "sapancap:test", "--pred-dialect", "norm",
              "--out", str(tmp_path / "s")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    score = json.loads((tmp_path / "s" / "pancapscore.json").read_text())
    assert score["counts"]["scored"] == 3 and score["box_dialects"]["ref"] == "norm"
    assert score["dimensions"]["tag"]["f1"] == 1.0 and score["dimensions"]["location"]["f1"] == 1.0
    assert reference_side("sapancap:val").path.name == "sapancap_val_gtcaption.json"
    assert reference_side(str(pred)).path == pred  # any other value is a file


def test_a_run_captioner_by_name(tmp_path):
    from pancap_retrieval.data import load_dataset
    from pancap_retrieval.pipeline import import_captions

    dataset = load_dataset("sample")
    ids = dataset["example_id"][:2]
    captions = tmp_path / "mine.jsonl"
    captions.write_text("".join(
        json.dumps({"example_id": i, "caption": f"A dog [[0.1, 0.1, 0.5, 0.5]] and a cat [[0.5, 0.5, 0.9, 0.9]] ({i})."})
        + "\n" for i in ids
    ))  # fmt: skip
    run = tmp_path / "run"
    import_captions(captions, "mine", "sample", dataset, run, dialect="norm")
    side = run_side(run, "mine")
    assert side.dataset == "sample" and side.split == "test" and side.path.parent == run / "captions"
    by_run = CliRunner().invoke(
        cli, ["score", "pancapscore", "--run", str(run), "--captioner", "mine", "--ref", str(captions)]
    )
    by_file = CliRunner().invoke(
        cli, ["score", "pancapscore", "--pred", str(side.path), "--ref", str(captions), "--dataset", "sample"]
    )
    assert by_run.exit_code == 0, by_run.output
    assert _location_f1(by_run.output) == _location_f1(by_file.output)
    assert _location_f1(by_run.output) == "| location | 100.00 | 100.00 | 100.00 | 2 |"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ref", "sapancap:test"], "give either --pred FILE, or --run DIR with --captioner NAME"),
        (["--run", "x", "--ref", "sapancap:test"], "give either --pred FILE, or --run DIR with --captioner NAME"),
    ],
)
def test_pred_or_run_is_required(args, message):
    result = CliRunner().invoke(cli, ["score", "pancapscore", *args])
    assert result.exit_code != 0 and message in result.output


def test_an_unknown_captioner_of_a_run_lists_the_known_ones(tmp_path):
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "detector__sample__test.jsonl").write_text("")
    result = CliRunner().invoke(
        cli, ["score", "pancapscore", "--run", str(tmp_path), "--captioner", "nope", "--ref", "sapancap:test"]
    )
    assert result.exit_code != 0
    assert "no captions of 'nope'" in result.output and "its captioners: detector" in result.output


def test_pancapscore_in_a_suite_scores_every_captioner_and_reaches_the_leaderboard(tmp_path):
    """`pancapscore: {reference: FILE, judge: rule}` in a suite: every captioner is scored, the summary goes into
    results.json and its columns into the leaderboard; a rerun reuses the scores."""
    from pancap_retrieval.data import load_dataset

    ids = load_dataset("sample")["example_id"]
    boxes = "A dog [[0.1, 0.1, 0.5, 0.5]] and a cat [[0.5, 0.5, 0.9, 0.9]]."
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps({"example_id": i, "caption": boxes}) + "\n" for i in ids))
    half = "A dog [[0.1, 0.1, 0.5, 0.5]] and a car [[0.0, 0.6, 0.2, 0.9]]."
    (tmp_path / "ref.jsonl").write_text("".join(json.dumps({"example_id": i, "caption": half}) + "\n" for i in ids))
    (tmp_path / "s.yaml").write_text(
        "name: s\ndataset: sample\n"
        "captioners: [{name: mine, file: mine.jsonl, dialect: norm}, {name: reference}]\n"
        "retrieval: {bootstrap_samples: 20}\n"
        "pancapscore: {reference: ref.jsonl, judge: rule}\n"
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "results.json").read_text())["pancapscore"]
    assert set(scores) == {"mine", "reference"}
    assert scores["mine"]["f1"]["tag"] == 0.5 and scores["mine"]["f1"]["location"] == 0.5  # dog found, cat not
    assert scores["mine"]["partial"] == 100.0 and scores["mine"]["n"] == len(ids)
    assert (run / "pancapscore" / "mine" / "pancapscore.json").is_file()
    board = (run / "leaderboard.md").read_text()
    assert "PancapScore tag F1" in board and "PancapScore tag+location" in board
    assert "| 50.0 | 50.0 |" in board.split("| mine |")[1].split("\n")[0]
    stamp = (run / "pancapscore" / "mine" / "pancapscore.json").stat().st_mtime_ns
    again = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--out", str(run)])
    assert again.exit_code == 0, again.output
    assert (run / "pancapscore" / "mine" / "pancapscore.json").stat().st_mtime_ns == stamp
