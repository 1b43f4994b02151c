"""Leaderboard tables and plot: one cell read in the Markdown, the CSV, the plot's drawn data and the HTML page
agrees everywhere; intervals, units and n are shown; the HTML page sorts in a real browser."""

from __future__ import annotations

import copy
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.leaderboard import recall_figure, shown_runs, table, write_leaderboard
from pancap_retrieval.results import read_results
from pancap_retrieval.retrieval.metrics import retrieval_metrics


def _results() -> dict:
    """results.json of a run of two captioners on 40 images, the metrics computed by the real metric code."""
    rng = np.random.default_rng(0)
    rows = []
    for name, worst in (("reference", 1), ("detector", 30)):
        ranks = {d: rng.integers(1, worst + 1, size=40) for d in ("c2d", "d2c")}
        rows.append(
            {
                "captioner": name,
                "n": 40,
                **{d: retrieval_metrics(r, (1, 5, 10), n_bootstrap=200, seed=0) for d, r in ranks.items()},
            }
        )
    scores = {
        "n_pairs": 38,
        "cosine": {"mean": 0.41234},
        "retrieval": retrieval_metrics(rng.integers(1, 8, size=38), (1, 5), n_bootstrap=200, seed=0),
        "shuffled": {"R@1": 0.025},
        "fid": {"value": 212.5},
        "adherence": {
            "original": {"instances": 50, "matched": 42, "success_rate": 0.84},
            "redraw": {"instances": 50, "matched": 11, "success_rate": 0.22},
        },
    }
    return {
        "dataset": {"name": "sample", "split": "test", "n": 40},
        "embedder": {"name": "minilm"},
        "rows": rows,
        "reconstruction": {"captioners": {"detector": {"scores": scores}, "reference": {"scores": {"n_pairs": 40}}}},
    }


class _HtmlTable(HTMLParser):
    """Header texts and rows of cells (the value and its interval) of the leaderboard page's table."""

    def __init__(self) -> None:
        super().__init__()
        self.header: list[str] = []
        self.rows: list[list[tuple[str, str]]] = []
        self.images: list[str] = []
        self._where: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "tr":
            self._row = []
        elif tag in ("th", "td"):
            self._where, self._cell = tag, ["", ""]
        elif tag == "span" and attrs.get("class") == "ci":
            self._where = "ci"

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._row.append((self._cell[0].strip(), self._cell[1].strip()))
            self._where = None
        elif tag == "span" and self._where == "ci":
            self._where = "td"
        elif tag == "tr":
            if not self.header:
                self.header = [text for text, _ in self._row]
            else:
                self.rows.append(self._row)

    def handle_data(self, data):
        if self._where in ("th", "td"):
            self._cell[0] += data
        elif self._where == "ci":
            self._cell[1] += data


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


@pytest.fixture()
def board(tmp_path) -> tuple[Path, dict]:
    results = _results()
    (tmp_path / "results.json").write_text(json.dumps(results))
    paths = write_leaderboard([tmp_path], tmp_path)
    assert set(paths) == {"markdown", "csv", "plot", "html", "pairs_markdown", "pairs_csv"}
    return tmp_path, results


def test_the_same_cell_in_markdown_csv_plot_and_html(board):
    folder, results = board
    md_lines = [line for line in (folder / "leaderboard.md").read_text().splitlines() if line.startswith("|")]
    md_header = [c.strip() for c in md_lines[0].strip("|").split("|")]
    md_rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in md_lines[2:])}
    with (folder / "leaderboard.csv").open(newline="") as handle:
        csv_rows = {row["system"]: row for row in csv.DictReader(handle)}
    page = _HtmlTable()
    page.feed((folder / "leaderboard.html").read_text())
    html_rows = {row[0][0]: row for row in page.rows}
    assert page.header == md_header  # the same column words in every table

    figure = recall_figure(results)
    plotted = {}  # (direction, captioner) -> (values at k = 1, 5, 10, interval ends)
    for ax, direction in zip(figure.axes, ("c2d", "d2c")):
        for container in ax.containers:
            name = container.get_label().split(" (n=")[0]
            segments = container.lines[2][0].get_segments()
            plotted[direction, name] = (list(container.lines[0].get_ydata()), [(s[0][1], s[1][1]) for s in segments])

    checked = 0
    for name in ("reference", "detector"):
        row = next(r for r in results["rows"] if r["captioner"] == name)
        for direction in ("c2d", "d2c"):
            for i, k in enumerate((1, 5, 10)):
                column = f"{direction} R@{k}"
                value, (low, high) = row[direction][f"R@{k}"], row[direction][f"R@{k}_ci"]
                expected = [round(100 * v, 1) for v in (value, low, high)]
                md_cell = md_rows[name][md_header.index(column)]
                assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", md_cell), md_cell
                assert _numbers(md_cell) == expected
                csv_cell = [float(csv_rows[name][f"{column}{end} (%)"]) for end in ("", " 95% CI low", " 95% CI high")]
                assert [round(v, 1) for v in csv_cell] == expected
                html_value, html_ci = html_rows[name][md_header.index(column)]
                assert _numbers(html_value) + _numbers(html_ci) == expected
                values, bars = plotted[direction, name]
                drawn = [values[i], *bars[i]]
                assert [round(v, 1) for v in drawn] == expected and drawn == pytest.approx(csv_cell)
                checked += 1
    assert checked == 12

    # n in every table, units where a reader needs them
    assert md_rows["detector"][md_header.index("n")] == "40" and csv_rows["detector"]["n"] == "40"
    assert md_rows["detector"][md_header.index("redraw n")] == "38" and csv_rows["detector"]["redraw n"] == "38"
    assert all(label.endswith(f"(n={r['n']})") for label, r in zip(_legend(figure), results["rows"]))
    text = (folder / "leaderboard.md").read_text()
    assert "in percent" in text and "95% bootstrap interval" in text
    assert md_rows["detector"][md_header.index("boxes re-found in redraw")] == "22.0"
    assert csv_rows["detector"]["boxes re-found in redraw (%)"] == "22.0"
    assert csv_rows["detector"]["redraw cosine"] == "0.41234" and md_rows["detector"][md_header.index("redraw cosine")] == "0.412"
    assert md_rows["reference"][md_header.index("FID")] == "" and csv_rows["reference"]["FID"] == ""  # not measured


def _legend(figure) -> list[str]:
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def test_a_rerun_rewrites_no_unchanged_file(board):
    folder, _ = board
    names = ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "recall_at_k.png")
    before = {name: (folder / name).stat().st_mtime_ns for name in names}
    write_leaderboard([folder], folder)
    assert {name: (folder / name).stat().st_mtime_ns for name in names} == before


def test_html_page_is_self_contained(board):
    folder, _ = board
    text = (folder / "leaderboard.html").read_text()
    page = _HtmlTable()
    page.feed(text)
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "<link" not in text and not re.search(r"""(?:src|href)=["'](?!data:|#)""", text)


def test_html_page_sorts_by_a_column_in_chromium(board, dump_dom):
    folder, _ = board
    page = _HtmlTable()
    page.feed((folder / "leaderboard.html").read_text())
    column = page.header.index("c2d R@1")
    order = {}
    for direction in ("asc", "desc"):
        sorted_page = _HtmlTable()
        sorted_page.feed(dump_dom(f"{(folder / 'leaderboard.html').as_uri()}#sort=leaderboard.{column}.{direction}"))
        order[direction] = [row[0][0] for row in sorted_page.rows]
    assert order == {"asc": ["detector", "reference"], "desc": ["reference", "detector"]}


# ------------------------------------------------------------------------------ runs as columns


def _run(tmp_path, name: str, *, long_text="chunk", text_prep="strip", limit=None, shift=0):
    """A run folder whose results differ from the others in ``long_text``/``text_prep``/``limit`` (and, with
    ``shift``, in its figures: each captioner's ranks moved by ``shift``)."""
    results = copy.deepcopy(_results())
    results["embedder"]["long_text"] = long_text
    results["dataset"]["limit"] = limit
    results["retrieval"] = {"backend": "faiss", "text_prep": text_prep, "bootstrap_samples": 200}
    rng = np.random.default_rng(shift)
    for row in results["rows"]:
        if shift:
            row["d2c"] = retrieval_metrics(rng.integers(1, 20, size=40), (1, 5, 10), n_bootstrap=200, seed=0)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def _cells(runs) -> dict:
    columns, rows = table([read_results(r) for r in runs], [str(r) for r in runs])
    return {(row[0], column): text for row in rows for column, text in zip(columns[1:], map(str, row[1:]))}


def test_runs_that_differ_only_in_long_text_are_two_labelled_columns_in_any_order(tmp_path):
    chunk, truncate = _run(tmp_path, "chunk"), _run(tmp_path, "truncate", long_text="truncate", shift=7)
    cells = _cells([chunk, truncate])
    assert cells == _cells([truncate, chunk])
    d2c = {column: value for (captioner, column), value in cells.items() if captioner == "detector" and column.endswith("d2c R@1")}
    assert set(d2c) == {"sample/test minilm long_text=chunk d2c R@1", "sample/test minilm long_text=truncate d2c R@1"}
    assert len(set(d2c.values())) == 2  # each run's own figure, none overwritten


def test_every_field_of_a_run_s_identity_tells_columns_apart(tmp_path):
    runs = [_run(tmp_path, "a"), _run(tmp_path, "b", text_prep="keep"), _run(tmp_path, "c", limit=10)]
    columns, _ = table([read_results(r) for r in runs])
    labels = {column.removesuffix(" n") for column in columns if column.endswith(" n") and "redraw" not in column}
    assert labels == {
        "sample/test minilm limit=None text_prep=strip",
        "sample/test minilm limit=None text_prep=keep",
        "sample/test minilm limit=10 text_prep=strip",
    }


def test_identical_runs_are_one_column_and_a_line_says_which_run_is_shown(tmp_path):
    first, second = _run(tmp_path, "run_a"), _run(tmp_path, "run_b", shift=3)
    runs, lines = shown_runs([read_results(second), read_results(first)], [str(second), str(first)])
    assert len(runs) == 1 and lines == [f"{second} measures the same as {first} (sample/test minilm): {first} is shown"]
    assert _cells([first, second]) == _cells([second, first]) == _cells([first])
    result = CliRunner().invoke(cli, ["leaderboard", str(second), str(first), "--out", str(tmp_path / "board")])
    assert result.exit_code == 0, result.output
    assert f"{first} is shown" in result.output
    assert f"{first} is shown" in (tmp_path / "board" / "leaderboard.md").read_text()


def test_results_written_before_directions_were_data_read_as_today(tmp_path):
    """A results.json of an old run folder (rows keyed ``captioner``, metrics under ``c2d``/``d2c``) gives the
    same leaderboard as the same figures written today (``system``, ``kind``, direction names)."""
    old = _results()
    new = copy.deepcopy(old)
    new["rows"] = [
        {"system": r.pop("captioner"), "kind": "captioner", **{k: v for k, v in r.items() if k not in ("c2d", "d2c")},
         "caption->description": r["c2d"], "description->caption": r["d2c"]}
        for r in new["rows"]
    ]  # fmt: skip
    for name, results in (("old", old), ("new", new)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        write_leaderboard([tmp_path / name], tmp_path / name)
    for page in ("leaderboard.md", "leaderboard.csv"):
        assert (tmp_path / "old" / page).read_text() == (tmp_path / "new" / page).read_text()
    assert "| reference | captioner | 40 |" in (tmp_path / "old" / "leaderboard.md").read_text()


def test_runs_of_one_identity_with_different_systems_are_merged_not_hidden():
    from pancap_retrieval.leaderboard import merge_runs

    def run(system, kind, value, reported=None):
        results = copy.deepcopy(_results())
        results["rows"] = [{"system": system, "kind": kind, "n": 40, "caption->description": {"R@1": value}}]
        results.pop("reconstruction")
        if reported:
            results["reported"] = reported
        return results

    mate = {"MATE": {"r_at_1": 0.629, "kind": "retriever", "reported_only": True}}
    a, b, c = run("pancapchain", "captioner", 0.6), run("clip", "retriever", 0.2, mate), run("clip", "retriever", 0.3)
    merged, lines = merge_runs([("a", a), ("b", b), ("c", c)])
    assert [row["system"] for row in merged["rows"]] == ["pancapchain", "clip"]
    assert merged["rows"][1]["caption->description"]["R@1"] == 0.2 and merged["reported"] == mate
    assert lines == ["c measures the same as b (sample/test minilm): b is shown"]  # b's clip row is the one shown
    _, rows = table([a, b])
    assert {"pancapchain", "clip", "MATE"} <= {row[0] for row in rows}


def test_runs_of_one_identity_without_retrieval_rows_are_merged_by_their_reconstructions():
    from pancap_retrieval.leaderboard import merge_runs

    def redraws(captioner, cosine):
        results = copy.deepcopy(_results())
        results["rows"] = []
        results.pop("pancapscore", None)
        results["reconstruction"]["captioners"] = {captioner: {"scores": {"n_pairs": 40, "cosine": {"mean": cosine}}}}
        return results

    merged, lines = merge_runs([("a", redraws("pancapchain", 0.5)), ("b", redraws("llava", 0.4)),
                                ("c", redraws("llava", 0.3))])  # fmt: skip
    assert set(merged["reconstruction"]["captioners"]) == {"pancapchain", "llava"}
    assert merged["reconstruction"]["captioners"]["llava"]["scores"]["cosine"]["mean"] == 0.4
    assert lines == ["c measures the same as b (sample/test minilm): b is shown"]


def test_runs_of_one_identity_on_other_dataset_rows_are_not_merged():
    from pancap_retrieval.leaderboard import merge_runs

    def run(system, digest):
        results = copy.deepcopy(_results())
        results.pop("reconstruction")
        results["dataset"]["rows_sha256"] = digest
        results["rows"] = [{"system": system, "kind": "captioner", "n": 40, "caption->description": {"R@1": 0.5}}]
        return results

    merged, lines = merge_runs([("a", run("pancapchain", "d1")), ("b", run("llava", "d1")), ("c", run("blip", "d2"))])
    assert [row["system"] for row in merged["rows"]] == ["pancapchain", "llava"]
    assert lines == ["c measures the same as a (sample/test minilm) on other dataset rows (rows_sha256 differs): a is shown"]
