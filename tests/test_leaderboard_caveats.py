"""Numbers that mean less than they seem are marked, the column order is fixed by the metric lists, median rank
is shown, any run folder is read, and the HTML page has its legend, tooltips and column toggles."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np

from pancap_retrieval.leaderboard import FOOTNOTES, footnotes, table, write_leaderboard
from pancap_retrieval.results import read_results
from pancap_retrieval.retrieval.metrics import retrieval_metrics


def _row(name: str, n: int, gallery: int | None = None, coverage: float = 1.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"captioner": name, "n": n, "coverage": coverage, "skipped": {"no_caption": 0, "failed": 0}}
    for d in ("c2d", "d2c"):
        metrics = retrieval_metrics(rng.integers(1, n + 1, size=n), (1, 5, 10), n_bootstrap=50, seed=0)
        out[d] = {**metrics, "gallery_size": gallery or n}
    return out


def _results(rows: list[dict], reconstruction: dict | None = None) -> dict:
    out = {"dataset": {"name": "tiny", "split": "test"}, "embedder": {"name": "minilm"}, "rows": rows}
    if reconstruction:
        out["reconstruction"] = reconstruction
    return out


def _cells(results: dict) -> dict:
    columns, rows = table([results])
    return {row[0]: dict(zip(columns[1:], row[1:])) for row in rows}


def test_few_images_mark_n_and_blank_recall_at_k_beyond_the_gallery(tmp_path, caplog):
    results = _results([_row("a", 8)])
    cells = _cells(results)["a"]
    assert cells["n"].text() == "8*"
    assert cells["c2d R@10"].text() == "–" and cells["d2c R@10"].text() == "–"  # 10 >= 8 images
    assert cells["c2d R@5"].text() != "–"
    (tmp_path / "results.json").write_text(json.dumps(results))
    with caplog.at_level(logging.WARNING):
        write_leaderboard([tmp_path], tmp_path)
    board = (tmp_path / "leaderboard.md").read_text()
    assert f"* {FOOTNOTES['*']}" in board and f"– {FOOTNOTES['–']}" in board
    assert "a (tiny/test minilm): only 8 captions scored" in caplog.text
    with open(tmp_path / "leaderboard.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["c2d R@10 (%)"] == "" and row["n"] == "8"


def test_a_row_that_scored_few_of_the_images_is_marked_and_says_why(caplog):
    row = _row("half", 40, coverage=0.5, seed=1)
    row["skipped"] = {"no_caption": 38, "failed": 2}
    results = _results([row, _row("whole", 40, seed=2)])
    cells = _cells(results)
    assert cells["half"]["n"].text() == "40†" and cells["whole"]["n"].text() == "40"
    from pancap_retrieval.leaderboard import caveats

    assert caveats([results]) == ["half (tiny/test minilm): 50% of the images scored (no caption 38, failed 2): marked †"]


def test_true_by_construction_and_floor_columns_carry_footnotes():
    scores = {
        "n_pairs": 30, "retrieval": {"R@1": 0.1, "R@1_ci": [0.0, 0.2]}, "shuffled": {"R@1": 0.1},
        "adherence": {"original": {"instances": 5, "success_rate": 1.0}, "redraw": {"instances": 5, "success_rate": 0.2}},
    }
    reconstruction = {"redrawer": {"name": "sketch"}, "captioners": {"detector": {"scores": scores}}}
    cells = _cells(_results([_row("detector", 30)], reconstruction))["detector"]
    assert cells["boxes found in original"].text() == "100.0‡"
    assert cells["redraw R@1"].value_text() == "10.0§"
    assert cells["boxes re-found in redraw"].text() == "20.0"
    _, rows = table([_results([_row("detector", 30)], reconstruction)])
    assert [line[0] for line in footnotes(rows)] == ["‡", "§"]


def test_column_order_follows_the_metric_lists_whatever_the_captioner_order():
    scored = {"n_pairs": 30, "fid": {"value": 300.0}}
    boxes = {"n_pairs": 30, "adherence": {"original": {"instances": 4, "success_rate": 0.5}}}
    first = {"captioners": {"x": {"scores": boxes}, "y": {"scores": scored}}}
    second = {"captioners": {"y": {"scores": scored}, "x": {"scores": boxes}}}
    columns_a, _ = table([_results([_row("x", 30), _row("y", 30)], first)])
    columns_b, _ = table([_results([_row("y", 30), _row("x", 30)], second)])
    assert columns_a == columns_b
    assert columns_a.index("FID") < columns_a.index("boxes checked")
    assert columns_a[1] == "kind"  # what the row is, right after its name
    assert columns_a[2:13] == [
        "n", "c2d R@1", "c2d R@5", "c2d R@10", "c2d MRR", "c2d median rank",
        "d2c R@1", "d2c R@5", "d2c R@10", "d2c MRR", "d2c median rank",
    ]


def test_median_rank_is_shown_as_a_rank():
    row = _row("a", 30)
    cells = _cells(_results([row]))["a"]
    assert cells["c2d median rank"].value_text() == f"{row['c2d']['median_rank']:.3f}"


def test_a_reconstruct_folder_is_a_leaderboard(tmp_path):
    recon = {"redrawer": {"name": "sketch"}, "captioners": {"mine": {"scores": {"n_pairs": 3, "fid": {"value": 9.5}}}}}
    (tmp_path / "reconstruction.json").write_text(json.dumps(recon))
    assert read_results(tmp_path)["rows"] == []
    write_leaderboard([tmp_path], tmp_path)
    assert "| mine | captioner | 3 | 9.500 |" in (tmp_path / "leaderboard.md").read_text()


def test_html_has_a_legend_tooltips_a_sticky_first_column_and_column_toggles(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(_results([_row("a", 8)])))
    write_leaderboard([tmp_path], tmp_path)
    page = (tmp_path / "leaderboard.html").read_text()
    assert 'title="caption -&gt; description: share of queries whose match is ranked first"' in page
    assert "position: sticky" in page
    assert '<input type="checkbox" checked data-group="caption -&gt; description">' in page
    assert '<dl class="legend" id="legend">' in page and FOOTNOTES["*"] in page


def test_a_column_group_hides_in_chromium(tmp_path, dump_dom):
    from urllib.parse import quote

    (tmp_path / "results.json").write_text(json.dumps(_results([_row("a", 30)])))
    write_leaderboard([tmp_path], tmp_path)
    dom = dump_dom(f"{(tmp_path / 'leaderboard.html').as_uri()}#hide={quote('description -> caption')}")
    import re

    def hidden_cells(group: str) -> int:
        return len(re.findall(rf'<t[dh][^>]*data-group="{group}"[^>]*class="hidden"', dom))

    hidden, shown = hidden_cells("description -&gt; caption"), hidden_cells("caption -&gt; description")
    assert (hidden, shown) == (2 * 5, 0)  # the header and the row's cell of each of the five d2c columns
    assert 'data-group="description -&gt; caption"> description' in dom  # its box, now unchecked


def test_a_run_that_dropped_images_says_how_many_and_why(tmp_path):
    """An image folder whose metadata misses 3 of 24 descriptions: the run's summary says how many images were
    left out and why, and the leaderboard marks the row."""
    from click.testing import CliRunner
    from PIL import Image

    from pancap_retrieval.cli import cli

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"im{i:02d}.png")
        if i >= 3:
            lines.append(json.dumps({"file_name": f"im{i:02d}.png", "description": f"picture number {i} of a {i % 5} thing"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\ndataset: imagefolder:imgs\ncaptioners: [{name: reference}]\nretrieval: {bootstrap_samples: 20}\n"
    )
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    note = next(s for s in summary["stages"] if s["stage"].startswith("retrieve reference"))["note"]
    assert note.startswith("scored 21 of 24 images; left out:"), note
    assert "21†" in (tmp_path / "run" / "leaderboard.md").read_text()
    assert FOOTNOTES["†"] in (tmp_path / "run" / "leaderboard.md").read_text()
