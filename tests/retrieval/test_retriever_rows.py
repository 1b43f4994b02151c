"""Image-text retrievers in runs: named like the captioners, keyed without loading the model, image features cached
on disk, and the long-text policy in the row."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.stages import retrievers as stage


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Counts of retrievers built and images encoded, with the feature cache in a folder of this test."""
    from pancap_retrieval.retrieval.image_text import ImageTextRetriever

    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    counts = {"built": 0, "images": 0}
    build, encode = stage.build_retriever, ImageTextRetriever.encode_images

    def counting_build(spec):
        counts["built"] += 1
        return build(spec)

    def counting_encode(self, images):
        counts["images"] += len(images)
        return encode(self, images)

    monkeypatch.setattr(stage, "build_retriever", counting_build)
    monkeypatch.setattr(ImageTextRetriever, "encode_images", counting_encode)
    return counts


def _suite(tmp_path, model_dirs, **extra) -> object:
    import shutil

    shutil.copytree(model_dirs["clip"], tmp_path / "weights" / "clip")
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "both",
        "dataset": {"name": "sample", "split": "test", "limit": 4},
        "retrievers": [{"name": "clip", "model": "weights/clip", "options": {"long_text": "chunk"}}],
        "retrieval": {"bootstrap_samples": 50},
        **extra,
    }))
    return suite


def _run(suite, out) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return time.perf_counter() - start


def test_a_suite_with_a_captioner_and_a_retriever_runs_offline_and_a_rerun_builds_no_model(
    model_dirs, counted, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite = _suite(tmp_path, model_dirs, captioners=[{"name": "reference", "reported": 100.0}])
    out = tmp_path / "run"
    first = _run(suite, out)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert sorted(r["kind"] for r in rows) == ["captioner", "retriever"]
    row = next(r for r in rows if r["kind"] == "retriever")
    assert row["system"] == "clip" and row["n"] == 4
    for direction in ("image->description", "description->image"):
        assert "R@1" in row[direction] and len(row[direction]["R@1_ci"]) == 2
    assert row["text_window"] == 77 and row["long_text"] == "chunk" and 0.0 <= row["over_window_rate"] <= 1.0
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "pairs.md", "pairs.csv"):
        assert (out / name).is_file()
    board = (out / "leaderboard.md").read_text()  # one table: both kinds, the reported column, vs best
    assert "| clip | retriever |  | 4* |" in board and "| reference | captioner | 100.0 | 4* |" in board
    assert "reported R@1" in board and "vs best" in board and "i2d R@1" in board and "c2d R@1" in board
    assert "reference" in (out / "pairs.md").read_text() and "clip" in (out / "pairs.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())["retrievers"]["clip"]
    assert "revision" in manifest and manifest["model"].endswith("weights/clip")
    assert counted == {"built": 1, "images": 4}

    second = _run(suite, out)  # the row is reused: no retriever built, no image encoded
    print(f"first run {first:.2f}s, rerun {second:.2f}s")
    assert counted == {"built": 1, "images": 4}
    assert json.loads((out / "results.json").read_text())["rows"] == rows
    assert "clip" in json.loads((out / "manifest.json").read_text())["cache"]["rows_reused"]
    assert json.loads((out / "manifest.json").read_text())["retrievers"]["clip"] == manifest

    _run(suite, tmp_path / "other")  # another run folder over the same images: features come from the disk cache
    assert counted == {"built": 2, "images": 4}
    assert json.loads((tmp_path / "other" / "results.json").read_text())["rows"] == rows


def test_changed_weights_recompute_the_row(model_dirs, counted, tmp_path) -> None:
    suite = _suite(tmp_path, model_dirs)
    out = tmp_path / "run"
    _run(suite, out)
    config = tmp_path / "weights" / "clip" / "config.json"
    config.write_text(config.read_text().replace("{", '{"pancap_note": 1,', 1))
    _run(suite, out)
    assert counted["built"] == 2


def test_retriever_inputs_complete_the_defaults_without_building() -> None:
    from pancap_retrieval.suite import RetrieverSpec

    inputs = stage.retriever_inputs(RetrieverSpec(name="clip", model="org/not-cached"))
    assert inputs["options"]["long_text"] == "truncate" and inputs["options"]["model"] == "org/not-cached"
    assert "batch_size" not in inputs["options"] and inputs["model_fingerprint"]
    default = stage.retriever_inputs(RetrieverSpec(name="clip"))
    assert default["options"]["model"] == "openai/clip-vit-large-patch14"


def test_relative_model_paths_are_read_from_the_suite_folder(tmp_path) -> None:
    from pathlib import Path

    from pancap_retrieval.suite import with_paths_from

    (tmp_path / "w").mkdir()
    data = with_paths_from({"retrievers": [{"name": "clip", "model": "w"}, {"name": "a", "model": "org/id"}]}, tmp_path)
    assert data["retrievers"][0]["model"] == str(tmp_path / "w") and data["retrievers"][1]["model"] == "org/id"
    assert Path(data["retrievers"][0]["model"]).is_dir()


def test_retrieve_runs_a_retriever_without_captions(model_dirs, counted, tmp_path) -> None:
    out = tmp_path / "run"
    args = ["retrieve", "--dataset", "sample", "--split", "test", "--limit", "3", "--retriever", "clip",
            "--retriever-model", str(model_dirs["clip"]), "-o", "long_text=truncate", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert (row["system"], row["kind"], row["long_text"]) == ("clip", "retriever", "truncate")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs --captions or --retriever"),
        (["--retriever-model", "x"], "name the retriever"),
        (["--retriever", "clip", "-o", "nokey"], "KEY=VALUE"),
        (["--retriever", "clip", "-o", "colour=red"], "colour"),
    ],
)
def test_retrieve_refuses_bad_input_in_one_line(tmp_path, args, message) -> None:
    result = CliRunner().invoke(cli, ["retrieve", "--dataset", "sample", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
