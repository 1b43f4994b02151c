"""pancap export: the sample run as a Hugging Face dataset, read back by datasets and imported into a new run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from click.testing import CliRunner

from pancap_retrieval.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "eval_suites" / "sample.yaml"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PANCAP_CACHE_DIR", str(root / "cache"))
        run = CliRunner().invoke(cli, ["run", str(SUITE), "--out", str(root / "run"), "--limit", "6"])
        assert run.exit_code == 0, run.output
        done = CliRunner().invoke(cli, ["export", str(root / "run"), "--to", str(root / "out"), "--with-images"])
        assert done.exit_code == 0, done.output
    return root


def test_load_dataset_reads_one_row_per_image(exported) -> None:
    table = datasets.load_dataset(str(exported / "out"), split="test")
    results = json.loads((exported / "run" / "results.json").read_text())
    ranks = json.loads((exported / "run" / "retrieval" / "detector.ranks.json").read_text())
    assert len(table) == 6 and table["example_id"] == sorted(table["example_id"])
    for name in ("reference", "detector"):
        assert {f"{name}_caption", f"{name}_boxes", f"{name}_c2d_rank", f"{name}_cosine", f"{name}_redraw"} <= set(
            table.column_names
        )
    assert table["detector_c2d_rank"] == [ranks["c2d"][i] for i in table["example_id"]]
    assert table["reference_caption"] == table["description"]  # the oracle captions are the descriptions
    boxes = [box for row in table["detector_boxes"] for box in row]
    assert boxes and all(0 <= box["x1"] <= box["x2"] <= 1 and box["phrase"] for box in boxes)
    assert table[0]["detector_redraw"].size == (512, 512)
    assert len(results["rows"]) == 2


def test_the_card_names_licence_revision_and_version(exported) -> None:
    text = (exported / "out" / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] and front["configs"][0]["data_files"][0]["split"] == "test"
    assert front["pancap"]["version"] and "revision" in front["pancap"]["source"]
    assert front["pancap"]["suite"]["name"] == "sample" and front["pancap"]["systems"] == ["reference", "detector"]
    assert [f["name"] for f in front["dataset_info"]["features"]][:2] == ["example_id", "description"]
    assert "| detector | captioner | 6* |" in text  # the leaderboard (6 captions: under 20, marked *)


def test_imported_captions_give_the_same_leaderboard(exported, monkeypatch) -> None:
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(exported / "cache"))
    new = exported / "again"
    files = []
    for name in ("reference", "detector"):
        done = CliRunner().invoke(
            cli, ["captions", "import", str(exported / "out"), "--captioner", name, "--dataset", "sample", "--out", str(new)]
        )
        assert done.exit_code == 0, done.output
        files.append(str(new / "imported" / f"{name}.jsonl"))
    done = CliRunner().invoke(
        cli, ["retrieve", "--dataset", "sample", "--limit", "6", "--captions", files[0], "--captions", files[1], "--out", str(new)]
    )
    assert done.exit_code == 0, done.output
    before = json.loads((exported / "run" / "results.json").read_text())["rows"]
    after = json.loads((new / "results.json").read_text())["rows"]
    assert [(r["system"], r["n"], r["caption->description"], r["description->caption"]) for r in after] == [
        (r["system"], r["n"], r["caption->description"], r["description->caption"]) for r in before
    ]
    wrong = CliRunner().invoke(
        cli, ["captions", "import", str(exported / "out"), "--captioner", "gpt", "--dataset", "sample", "--out", str(exported / "x")]
    )
    assert wrong.exit_code != 0 and "holds: reference, detector" in wrong.output
    assert not (exported / "x").exists()


def test_an_offline_push_is_one_line_and_leaves_nothing(exported) -> None:
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(exported)}
    args = ["export", str(exported / "run"), "--to", str(exported / "pushed"), "--push-to-hub", "someone/results"]
    done = subprocess.run(
        [sys.executable, "-m", "pancap_retrieval.cli", *args], env=env, capture_output=True, text=True, cwd=exported
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode != 0 and len(errors) == 1 and "cannot push to the Hub repository 'someone/results'" in errors[0]
    assert not (exported / "pushed").exists()
    assert not [p for p in exported.iterdir() if p.name.startswith(".pancap-export-")]
