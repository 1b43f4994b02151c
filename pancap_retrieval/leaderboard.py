"""Leaderboards from result files: one table across runs as Markdown, CSV and a sortable HTML page, and a
recall@k plot with error bars.

Every table names its columns with the words of :data:`RETRIEVAL_METRICS` and :data:`RECONSTRUCTION_METRICS`
(the gallery and the README use the same words). Recall, MRR and box rates are in percent everywhere: the Markdown
and HTML say so above the table, the CSV in its column names. A value with a bootstrap interval is shown as
``61.9 [59.8, 64.0]``; the CSV gives the interval's ends in columns of their own. Each table has its ``n``.
A cell a run did not measure stays empty: rows are never averaged over what happens to be there.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import key, write_if_changed
from pancap_retrieval.directions import (
    CAPTION_TO_DESCRIPTION,
    DESCRIPTION_TO_CAPTION,
    DESCRIPTION_TO_IMAGE,
    DIRECTIONS,
    IMAGE_TO_DESCRIPTION,
    Direction,
    direction,
)
from pancap_retrieval.results import normalise_row, read_results

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Metric:
    """A column: its words, where its value is, whether it is a fraction shown in percent, whether results carry
    a bootstrap interval for it (``<name>_ci`` beside the value), and what it means (the HTML header's tooltip)."""

    label: str
    path: tuple[str, ...]
    percent: bool = False
    ci: bool = False
    help: str = ""


_RANK_HELP = {
    "R@1": "share of queries whose match is ranked first",
    "R@5": "share of queries whose match is in the top 5",
    "R@10": "share of queries whose match is in the top 10",
    "MRR": "mean of 1 / rank of the match",
    "median_rank": "median rank of the match (1 is best)",
}
RETRIEVAL_METRICS = tuple(
    Metric(
        f"{d.label} {m.replace('_', ' ')}", (d.name, m), percent=m != "median_rank", ci=True,
        help=f"{d.title}: {_RANK_HELP[m]}",
    )
    for d in DIRECTIONS
    for m in ("R@1", "R@5", "R@10", "MRR", "median_rank")
)
# Paths into a captioner's ``scores`` in reconstruction.json. The box rates count the caption's boxes whose phrase
# names a COCO class ("boxes checked"), found by the detector at IoU >= 0.5.
REDRAW_N = Metric("redraw n", ("n_pairs",), help="redraws scored")
REDRAW_COSINE = Metric(
    "redraw cosine", ("cosine", "mean"), help="mean Inception-feature cosine of each redraw with its original"
)
REDRAW_R1 = Metric(
    "redraw R@1", ("retrieval", "R@1"), percent=True, ci=True,
    help="each original found from its redraw among all the originals, ranked first",
)
BOXES_FOUND_IN_ORIGINAL = Metric(
    "boxes found in original", ("adherence", "original", "success_rate"), True,
    help="share of the checked boxes the detector finds in the original (IoU >= 0.5): are the boxes right?",
)
BOXES_REFOUND_IN_REDRAW = Metric(
    "boxes re-found in redraw", ("adherence", "redraw", "success_rate"), True,
    help="share of the checked boxes the detector finds again in the redraw: did the redrawer draw them?",
)
RECONSTRUCTION_METRICS = (
    REDRAW_N,
    REDRAW_COSINE,
    REDRAW_R1,
    Metric("shuffled R@1", ("shuffled", "R@1"), percent=True, help="redraw R@1 with the pairs shifted by one: the floor"),
    Metric("FID", ("fid", "value"), help="Frechet Inception distance of redraws to originals (lower is better; large-sample statistic)"),
    Metric("boxes checked", ("adherence", "original", "instances"), help="caption boxes whose phrase names a COCO class"),
    BOXES_FOUND_IN_ORIGINAL,
    BOXES_REFOUND_IN_REDRAW,
)
# Paths into a captioner's summary under ``pancapscore`` in results.json (pancap_retrieval.pancapscore.run_scores).
PANCAPSCORE_METRICS = (
    *(
        Metric(f"PancapScore {dim} F1", ("f1", dim), percent=True, help=f"PancapScore's {dim} F1 (mean of per-image F1s)")
        for dim in ("tag", "location", "attribute", "relation", "global")
    ),
    Metric("PancapScore", ("overall",), help="tag + location + attribute + relation + 0.1 x global, x 100 (max 410)"),
    Metric(
        "PancapScore tag+location", ("partial",),
        help="tag + location F1, x 100 (max 200): the rule judge's score, which computes no other dimension",
    ),
)
N = Metric("n", ("n",), help="captions scored in retrieval")
# The published R@1 of a row's main direction, from the suite's ``reported:`` (results' ``reported``).
REPORTED = Metric(
    "reported R@1", ("R@1",), percent=True,
    help="the published R@1 of the row's main direction (the paper's table), as the suite states it: not measured here",
)
# The row's R@1 minus the best row's, each in its main direction, on the same images (pancap_retrieval.pairs).
VS_BEST = Metric(
    "vs best", ("difference",), percent=True, ci=True,
    help="R@1 minus the best row's R@1 (main directions: caption -> description, image -> description), with its "
    "paired bootstrap interval; – for the best row",
)
ALL_METRICS = (REPORTED, N, *RETRIEVAL_METRICS, VS_BEST, *RECONSTRUCTION_METRICS, *PANCAPSCORE_METRICS)
# What a row is: a captioner read through a text embedder, an image-text retriever, or a published figure alone.
KINDS = ("captioner", "retriever", "reported")
# Below this many scored captions a row's figures are marked: intervals are wide and recall coarse.
N_FLOOR = 20
# A row that scored less than this share of the dataset's images is marked (no description, no or failed caption).
COVERAGE_FLOOR = 0.95
# Footnote marks and what they say, shown under the Markdown and HTML tables.
FOOTNOTES = {
    "*": f"fewer than {N_FLOOR} captions scored: the intervals are wide and each image moves R@k by over 5 points",
    "†": f"under {COVERAGE_FLOOR:.0%} of the dataset's images scored (no description, no caption or a failed "
    "caption): see `skipped` in results.json",
    "–": "R@k with k at least the gallery size is 100% by definition, so it is not shown",
    "‡": "true by construction: the detector captioner's boxes are the boxes the detector finds in the original",
    "§": "sketch redraws draw labelled boxes, not the scene: redraw R@1 sits at the shuffled floor",
}
UNITS_NOTE = (
    "Recall, MRR and box rates in percent; [low, high] is the {level} bootstrap interval; "
    "n is the number of captions scored, redraw n the number of redraws; an empty cell was not measured."
)


@dataclass(frozen=True)
class Cell:
    """One measured value (a fraction when ``percent``), its interval if it has one, and a footnote mark
    (:data:`FOOTNOTES`) when the number means less than it seems."""

    value: float | int
    ci: tuple[float, float] | None = None
    percent: bool = False
    mark: str = ""

    def number(self, value: float | int | None = None) -> float | int:
        """The value (or ``value``) in the unit shown: percent for fractions."""
        value = self.value if value is None else value
        return 100.0 * value if self.percent else value

    def _show(self, value: float | int) -> str:
        number = self.number(value)
        return f"{number:.{1 if self.percent else 3}f}" if isinstance(number, float) else str(number)

    def value_text(self) -> str:
        """The value as shown: one decimal for percent, three for other floats; then its footnote mark."""
        return self._show(self.value) + self.mark

    def ci_text(self) -> str:
        """``[59.8, 64.0]``, or empty without an interval."""
        return f"[{self._show(self.ci[0])}, {self._show(self.ci[1])}]" if self.ci else ""

    def text(self) -> str:
        """``61.9 [59.8, 64.0]``."""
        return f"{self.value_text()} {self.ci_text()}".strip()


@dataclass(frozen=True)
class Best:
    """The "vs best" cell of the best row itself: shown as ``–`` (no footnote: the column's help says so)."""

    def text(self) -> str:
        return "–"

    def value_text(self) -> str:
        return "–"

    def ci_text(self) -> str:
        return ""


@dataclass(frozen=True)
class Undefined:
    """A cell whose value holds by definition (R@k with k >= the gallery): shown as ``–``, never as a number."""

    mark: str = "–"

    def text(self) -> str:
        return self.mark

    def value_text(self) -> str:
        return self.mark

    def ci_text(self) -> str:
        return ""


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def cell(data: Any, metric: Metric) -> Cell | None:
    """The cell of ``metric`` in ``data`` (a retrieval row or a captioner's scores), with ``<name>_ci`` beside it."""
    value = _lookup(data, metric.path)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    ci = _lookup(data, (*metric.path[:-1], f"{metric.path[-1]}_ci"))
    interval = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    return Cell(value, interval, metric.percent)


def run_label(results: dict[str, Any]) -> str:
    dataset = results.get("dataset", {})
    label = f"{dataset.get('name', '?')}/{dataset.get('split') or '-'}"
    embedder = results.get("embedder", {}).get("name")
    return f"{label} {embedder}" if embedder else label


# What a run measured: two runs that differ in any of these are two sets of columns. Retriever options join here.
IDENTITY = ("dataset", "split", "limit", "embedder", "text_prep", "long_text", "redrawer")
_IN_LABEL = ("dataset", "split", "embedder")  # already in run_label


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's rows in today's words, whatever format wrote them (:func:`~pancap_retrieval.results.normalise_row`)."""
    return [normalise_row(row) for row in results.get("rows", [])]


def run_identity(results: dict[str, Any]) -> dict[str, Any]:
    """The :data:`IDENTITY` of a run's results (None for what it does not record).

    >>> run_identity({"dataset": {"name": "sample", "split": "test"}, "embedder": {"name": "minilm", "long_text": "chunk"}})
    {'dataset': 'sample', 'split': 'test', 'limit': None, 'embedder': 'minilm', 'text_prep': None, 'long_text': 'chunk', 'redrawer': None}
    """
    dataset, embedder = results.get("dataset") or {}, results.get("embedder") or {}
    text_prep = _lookup(results, ("retrieval", "text_prep"))
    if text_prep is None:  # results that do not record it: the mode each row records
        modes = {_lookup(row, ("text_prep", "mode")) for row in _rows(results)} - {None}
        text_prep = ",".join(sorted(modes)) or None
    return {
        "dataset": dataset.get("name"),
        "split": dataset.get("split"),
        "limit": dataset.get("limit"),
        "embedder": embedder.get("name"),
        "text_prep": text_prep,
        "long_text": embedder.get("long_text"),
        "redrawer": _lookup(results, ("reconstruction", "redrawer", "name")),
    }


def shown_runs(
    results_list: list[dict[str, Any]], names: list[str] | None = None
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The runs a table shows, whatever order they were named in: one per :func:`run_identity`, in identity order,
    each with its label (the run's label plus ``field=value`` for every other field in which the shown runs
    differ); and one line per run whose rows are not all shown, saying which run's are.

    Runs of one identity are one column group (:func:`merge_runs`): the first by name (or by content when unnamed)
    is shown, and the rows of systems it lacks are added from the others, so that a captioner run and a retriever
    run of the same dataset make one table.
    """
    if names is None:  # unnamed runs are told apart by their content, so that their order does not matter
        names = [json.dumps(results, sort_keys=True, default=str) for results in results_list]
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, results in zip(names, results_list):
        groups.setdefault(repr(list(run_identity(results).values())), []).append((str(name), results))
    shown, lines = [], []
    for identity in sorted(groups):
        merged, merge_lines = merge_runs(sorted(groups[identity], key=lambda member: member[0]))
        shown.append(merged)
        lines += merge_lines
    identities = [run_identity(r) for r in shown]
    differing = [f for f in IDENTITY if f not in _IN_LABEL and len({repr(i[f]) for i in identities}) > 1]
    labels = [run_label(r) + "".join(f" {f}={i[f]}" for f in differing) for r, i in zip(shown, identities)]
    return list(zip(labels, shown)), lines


def merge_runs(members: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], list[str]]:
    """One run of ``members`` (runs of one identity, ``(name, results)``, the one to show first): the first's
    results with the rows (and their reconstruction and PancapScore entries) of every system only a later member
    has; a line for each member with a system the shown rows already had, naming whose rows are shown. With
    several members, ``vs best`` is worked out again over the merged rows
    (:func:`pancap_retrieval.pairs.vs_best_across`)."""
    name, first = members[0]
    if len(members) == 1:
        return first, []
    merged = json.loads(json.dumps(first, default=str))
    merged["rows"] = _rows(first)
    sources = dict.fromkeys(_measured(first), name)
    lines = []
    from pancap_retrieval.pairs import dataset_rows, vs_best_across

    for other, results in members[1:]:
        if None not in (digest := dataset_rows(first), dataset_rows(results)) and digest != dataset_rows(results):
            lines.append(f"{other} measures the same as {name} ({run_label(first)}) on other dataset rows "
                         f"(rows_sha256 differs): {name} is shown")  # fmt: skip
            continue
        systems = _measured(results)
        overlap = [system for system in systems if system in sources]
        shown = " and ".join(dict.fromkeys(sources[system] for system in overlap))  # whose rows of those are shown
        for system in systems:
            if system not in sources:
                merged["rows"] += [row for row in _rows(results) if row["system"] == system]
                sources[system] = other
                _copy_entries(results, merged, system)
        for system, entry in (results.get("reported") or {}).items():  # published figures of the suite
            merged.setdefault("reported", {}).setdefault(system, entry)
        if overlap and len(overlap) == len(systems):
            said = f"{shown} is shown" if " and " not in shown else "their rows are shown"
            lines.append(f"{other} measures the same as {shown} ({run_label(first)}): {said}")
        elif overlap:
            lines.append(f"{other} measures the same as {shown} ({run_label(first)}) for {', '.join(overlap)}: "
                         f"the rows of {shown} are shown for those, its other rows are added")  # fmt: skip
    if set(sources.values()) != {name}:  # rows were added: the best is the best of them all, or not known
        merged.pop("vs_best", None)
        if best := vs_best_across([(n, r) for n, r in members if n in sources.values()], sources):
            merged["vs_best"] = best
    merged[MERGED_FROM] = sources
    return merged, lines


MERGED_FROM = "merged_from"  # in a merged run: system -> the run its row comes from


def _measured(results: dict[str, Any]) -> list[str]:
    """The systems a run measured, in order: its rows, then those with only reconstruction or PancapScore."""
    systems = [row["system"] for row in _rows(results)]
    systems += list((results.get("reconstruction") or {}).get("captioners") or {})
    systems += list(results.get("pancapscore") or {})
    return list(dict.fromkeys(systems))


def _copy_entries(source: dict[str, Any], target: dict[str, Any], system: str) -> None:
    """The reconstruction, PancapScore and reported entries of ``system`` in ``source`` copied into ``target``."""
    for path in (("reconstruction", "captioners"), ("pancapscore",), ("reported",)):
        entry = _lookup(source, (*path, system))
        if entry is not None:
            holder = target
            for part in path:
                holder = holder.setdefault(part, {})
            holder[system] = entry


def table(results_list: list[dict[str, Any]], names: list[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows (system and its kind first, then :class:`Cell`, :class:`Undefined`, :class:`Best` or None)
    over several runs.

    Runs that measured the same thing are shown once (:func:`shown_runs`). With several runs every column is
    prefixed with the run's label (dataset/split embedder, and what else tells the runs apart). Columns come in
    the order of the metric lists, whatever the order of the captioners: a reconstruction metric that no
    captioner of a run has is left out. Cells whose number means less than it seems carry a footnote mark.
    """
    runs = shown_runs(results_list, names)[0]
    columns: list[str] = []
    cells: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for label, results in runs:
        kinds.update({name: kind for name, kind in _kinds(results).items() if name not in kinds})
        prefix = f"{label} " if len(runs) > 1 else ""
        run_cells = _run_cells(results)
        present = {metric for by_metric in run_cells.values() for metric in by_metric}
        order = [metric for metric in ALL_METRICS if metric in present]
        columns += [prefix + metric.label for metric in order]
        for captioner, by_metric in run_cells.items():
            line = cells.setdefault(captioner, {})
            line.update({prefix + metric.label: value for metric, value in by_metric.items()})
    rows = [[system, kinds.get(system, "captioner")] + [line.get(c) for c in columns] for system, line in cells.items()]
    return ["system", "kind", *columns], rows


def _kinds(results: dict[str, Any]) -> dict[str, str]:
    """system -> kind of a run's rows (a reported-only row is ``reported``; an entry with reconstruction or
    PancapScore alone is a captioner)."""
    out = {row["system"]: row.get("kind", "captioner") for row in _rows(results)}
    for name, entry in (results.get("reported") or {}).items():
        out.setdefault(name, "reported" if entry.get("reported_only") else entry.get("kind", "captioner"))
    return out


def _run_cells(results: dict[str, Any]) -> dict[str, dict[Metric, Any]]:
    """captioner -> metric -> cell of one run; every retrieval column of a row even when empty, and the
    reconstruction metrics each captioner has."""
    out: dict[str, dict[Metric, Any]] = {}
    for row in _rows(results):
        n = row.get("n")
        marks = ("*" if isinstance(n, int) and n < N_FLOOR else "") + (
            "†" if isinstance(row.get("coverage"), (int, float)) and row["coverage"] < COVERAGE_FLOOR else ""
        )
        line = out.setdefault(row["system"], {N: Cell(n, mark=marks) if isinstance(n, int) else None})
        for metric in RETRIEVAL_METRICS:
            if metric.path[0] in row:  # the directions the row was measured in
                line[metric] = _retrieval_cell(row, metric)
    for name, entry in (results.get("reported") or {}).items():
        line = out.setdefault(name, {})
        if (value := cell(entry, REPORTED)) is not None:
            line[REPORTED] = value
    for name, entry in (results.get("vs_best") or {}).items():
        if name in out:
            out[name][VS_BEST] = Best() if entry.get("difference") is None else cell(entry, VS_BEST)
    reconstruction = results.get("reconstruction") or {}
    sketch = _lookup(reconstruction, ("redrawer", "name")) == "sketch"
    for captioner, entry in reconstruction.get("captioners", {}).items():
        line = out.setdefault(captioner, {})
        for metric in RECONSTRUCTION_METRICS:
            value = cell(entry.get("scores"), metric)
            if value is None:
                continue
            if (metric is BOXES_FOUND_IN_ORIGINAL and captioner == "detector") or (metric is REDRAW_R1 and sketch):
                value = replace(value, mark="‡" if metric is BOXES_FOUND_IN_ORIGINAL else "§")
            line[metric] = value
    for captioner, summary in (results.get("pancapscore") or {}).items():
        line = out.setdefault(captioner, {})
        line.update({m: value for m in PANCAPSCORE_METRICS if (value := cell(summary, m)) is not None})
    return out


def _retrieval_cell(row: dict[str, Any], metric: Metric) -> Cell | Undefined | None:
    """The row's cell of a retrieval metric; R@k with k at least the gallery size is :class:`Undefined`."""
    value = cell(row, metric)
    direction, name = metric.path
    gallery = _lookup(row, (direction, "gallery_size")) or row.get("n")
    if value is not None and name.startswith("R@") and isinstance(gallery, int) and int(name[2:]) >= gallery:
        return Undefined()
    return value


def footnotes(rows: list[list[Any]]) -> list[str]:
    """The :data:`FOOTNOTES` lines of the marks the table's cells carry, in the order of the marks."""
    used = {ch for row in rows for value in row[1:] if isinstance(value, (Cell, Undefined)) for ch in value.text()}
    return [f"{mark} {text}" for mark, text in FOOTNOTES.items() if mark in used]


def caveats(results_list: list[dict[str, Any]]) -> list[str]:
    """One warning per row whose figures mean less than they seem: too few captions, too few images scored."""
    lines = []
    for results in results_list:
        for row in _rows(results):
            n, coverage = row.get("n"), row.get("coverage")
            where = f"{row['system']} ({run_label(results)})"
            if isinstance(n, int) and n < N_FLOOR:
                lines.append(f"{where}: only {n} captions scored (under {N_FLOOR}): its figures are marked *")
            if isinstance(coverage, (int, float)) and coverage < COVERAGE_FLOOR:
                skipped = {k: v for k, v in (row.get("skipped") or {}).items() if v}
                why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in skipped.items()) or "no reason recorded"
                lines.append(f"{where}: {coverage:.0%} of the images scored ({why}): marked †")
    return lines


def column_metric(column: str) -> Metric | None:
    """The metric a column of :func:`table` shows (its label, maybe after a run's label).

    >>> column_metric("sample/test minilm c2d R@1").percent, column_metric("redraw n").label
    (True, 'redraw n')
    """
    found = [
        metric
        for metric in ALL_METRICS
        if column == metric.label or column.endswith(f" {metric.label}")
    ]
    return max(found, key=lambda metric: len(metric.label), default=None)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (Cell, Undefined, Best)):
        return value.text()
    return str(value)


def markdown(columns: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table of :func:`table`'s columns and rows.

    >>> print(markdown(["captioner", "c2d R@1"], [["reference", Cell(1.0, (1.0, 1.0), True)], ["detector", None]]))
    | captioner | c2d R@1 |
    |---|---|
    | reference | 100.0 [100.0, 100.0] |
    | detector |  |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_text(v) for v in row) + " |")
    return "\n".join(lines)


def csv_table(columns: list[str], rows: list[list[Any]], level: str = "95%") -> tuple[list[str], list[list[Any]]]:
    """The table as CSV columns and rows: units in the column names (``c2d R@1 (%)``), interval ends as columns.

    >>> csv_table(["captioner", "c2d R@1"], [["reference", Cell(0.5, (0.25, 0.75), True)]])
    (['captioner', 'c2d R@1 (%)', 'c2d R@1 95% CI low (%)', 'c2d R@1 95% CI high (%)'], [['reference', 50.0, 25.0, 75.0]])
    """
    out_columns = [columns[0]]
    getters: list[tuple[int, int | None]] = []
    for i, column in enumerate(columns[1:], start=1):
        metric = column_metric(column)
        unit = " (%)" if metric is not None and metric.percent else ""
        out_columns.append(f"{column}{unit}")
        getters.append((i, None))
        if metric is not None and metric.ci:
            out_columns += [f"{column} {level} CI low{unit}", f"{column} {level} CI high{unit}"]
            getters += [(i, 0), (i, 1)]

    def value(row: list[Any], i: int, end: int | None) -> Any:
        entry = row[i]
        if isinstance(entry, str) and end is None:  # the kind
            return entry
        if not isinstance(entry, Cell) or (end is not None and entry.ci is None):
            return ""
        number = entry.number(entry.value if end is None else entry.ci[end])
        return round(number, 6) if isinstance(number, float) else number

    return out_columns, [[row[0]] + [value(row, i, end) for i, end in getters] for row in rows]


def confidence_level(results_list: list[dict[str, Any]]) -> str:
    """The confidence level of the runs' bootstrap intervals, as ``95%`` (the default when none is recorded)."""
    for results in results_list:
        for row in _rows(results):
            for d in DIRECTIONS:
                confidence = _lookup(row, (d.name, "bootstrap", "confidence"))
                if isinstance(confidence, (int, float)):
                    return f"{100 * confidence:g}%"
    return "95%"


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A run's results with, under ``vs_best``, each row's R@1 difference to the best row's from its ranks files
    (:func:`pancap_retrieval.pairs.vs_best`; none for a folder without them)."""
    from pancap_retrieval.pairs import vs_best

    results = read_results(run_dir)
    path = Path(run_dir)
    if path.suffix != ".json" and (best := vs_best(path, results)):
        results["vs_best"] = best
    return results


def write_leaderboard(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``.csv``, ``.html`` and (for one run) ``recall_at_k.png`` and the run's paired
    comparisons ``pairs.md`` and ``pairs.csv`` (:mod:`pancap_retrieval.pairs`), each atomically and only when its
    content changed."""
    read = [read_run(d) for d in run_dirs]
    runs, left_out = shown_runs(read, [str(d) for d in run_dirs])
    results_list = [results for _, results in runs]
    columns, rows = table(results_list)
    out_dir = Path(out_dir)
    title = ", ".join(label for label, _ in runs)
    note = UNITS_NOTE.format(level=confidence_level(results_list))
    shown = "".join(f"{line}.\n\n" for line in left_out)
    notes = footnotes(rows)
    for line in caveats(results_list):
        log.warning("%s", line)
    below = "".join(f"\n{line}\n" for line in notes)
    paths = {
        "markdown": write_if_changed(
            out_dir / "leaderboard.md",
            f"# pancap leaderboard: {title}\n\n{note}\n\n{shown}{markdown(columns, rows)}\n{below}",
        )
    }
    buffer = io.StringIO(newline="")
    csv_columns, csv_rows = csv_table(columns, rows, confidence_level(results_list))
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns)
    writer.writerows(csv_rows)
    paths["csv"] = write_if_changed(out_dir / "leaderboard.csv", buffer.getvalue())
    plot = None
    if len(results_list) == 1:
        paths["plot"] = plot_recall(results_list[0], out_dir / "recall_at_k.png")
        plot = paths["plot"].read_bytes()
    paths.update(_write_pairs(list(zip(run_dirs, read)), runs, out_dir))
    paths["html"] = write_if_changed(
        out_dir / "leaderboard.html", html_page(title, note, columns, rows, plot, notes)
    )
    return paths


def _write_pairs(
    read: list[tuple[str | Path, dict[str, Any]]], runs: list[tuple[str, dict[str, Any]]], out_dir: Path
) -> dict[str, Path]:
    """The paired comparisons of one run folder, or of the shown runs of several over the same dataset rows
    (:func:`pancap_retrieval.pairs.across_runs`); nothing for results files given alone (no ranks beside them)."""
    from pancap_retrieval.pairs import across_runs, write_pair_files, write_pairs

    folders = {str(d): (d, results) for d, results in read if Path(d).suffix != ".json"}
    if len(read) == 1:
        return write_pairs(*folders[str(read[0][0])], out_dir) if folders else {}
    shown = []  # (column label, run folder, the rows of that folder the table shows)
    for label, results in runs:
        sources = results.get(MERGED_FROM) or {
            row["system"]: str(d) for d, r in read if r is results for row in _rows(r)
        }  # fmt: skip
        for name in dict.fromkeys(sources.values()):
            if name in folders:
                folder, own = folders[name]
                kept = [row for row in _rows(own) if sources.get(row["system"]) == name]
                shown.append((label, folder, {**own, "rows": kept}))
    return write_pair_files(across_runs(shown), out_dir) if shown else {}


def html_page(
    title: str, note: str, columns: list[str], rows: list[list[Any]], plot_png: bytes | None, notes: list[str] = ()
) -> str:
    """The leaderboard as one self-contained HTML page (styles, script and plot inline): sortable by column,
    each header's meaning as its tooltip, the captioner column kept in view, a legend (units, footnotes) and a
    toggle per group of columns."""
    from pancap_retrieval.pages import render

    headers = [{"label": columns[0], "help": "the system each row measures", "group": ""}]
    lead = 2 if columns[1:2] == ["kind"] else 1
    if lead == 2:
        headers.append({
            "label": "kind", "group": "",
            "help": "captioner (its caption against the descriptions), retriever (the image against the "
            "descriptions) or reported (a published figure alone, not measured here)",
        })  # fmt: skip
    for column in columns[lead:]:
        metric = column_metric(column)
        headers.append({
            "label": column,
            "help": metric.help if metric else "",
            "group": column_group(column, metric),
        })  # fmt: skip
    body = [
        [{"text": v, "ci": "", "sort": v} for v in row[:lead]]
        + [
            {"text": v.value_text(), "ci": v.ci_text(), "sort": _sort_value(v)} if v is not None
            else {"text": "", "ci": "", "sort": ""}
            for v in row[lead:]
        ]
        for row in rows
    ]
    groups = list(dict.fromkeys(h["group"] for h in headers[lead:]))
    metrics = dict.fromkeys(column_metric(c) for c in columns[lead:])
    glossary = [(m.label, m.help) for m in metrics if m is not None and m.help]
    plot = base64.b64encode(plot_png).decode("ascii") if plot_png else None
    return render(
        "leaderboard.html.j2", ("pancap_retrieval",), title=title, note=note, headers=headers, rows=body,
        plot=plot, notes=notes, groups=groups, glossary=glossary,
    )  # fmt: skip


def column_group(column: str, metric: Metric | None) -> str:
    """The group a column is shown and hidden with in the HTML page: its run's label and what it measures.

    >>> column_group("sample/test minilm c2d R@5", column_metric("c2d R@5"))
    'sample/test minilm caption -> description'
    """
    if metric is None:
        return column
    prefix = column[: len(column) - len(metric.label)]
    if metric in RETRIEVAL_METRICS:
        return prefix + direction(metric.path[0]).title
    if metric in PANCAPSCORE_METRICS:
        return prefix + "PancapScore"
    return prefix + ("retrieval" if metric is N else "reconstruction")


def _sort_value(value: Cell | Undefined | Best) -> str:
    if isinstance(value, Best):
        return "0.0"
    return "" if isinstance(value, Undefined) else repr(value.number())


# The two panels of the recall figure: what ranks the descriptions, and what the descriptions rank. A caption row
# (caption->description) and an image-text retriever (image->description) share a panel, as in the paper's table.
PANELS = (
    (CAPTION_TO_DESCRIPTION, IMAGE_TO_DESCRIPTION),
    (DESCRIPTION_TO_CAPTION, DESCRIPTION_TO_IMAGE),
)
PLOT_KS = (1, 5, 10)


def _plotted(row: dict[str, Any], panel: tuple[Direction, ...]) -> list[Cell] | None:
    """The R@1/5/10 cells of the first direction of ``panel`` the row has them all for."""
    for shown in panel:
        cells = [cell(row, Metric(f"R@{k}", (shown.name, f"R@{k}"), percent=True)) for k in PLOT_KS]
        if all(c is not None for c in cells):
            return cells  # type: ignore[return-value]
    return None


def _panel_title(rows: list[dict[str, Any]], panel: tuple[Direction, ...]) -> str:
    """``caption -> description``, or ``caption or image -> description`` when both kinds of row are drawn."""
    shown = [d for d in panel if any(_plotted(row, (d,)) is not None for row in rows)] or [panel[0]]
    if len(shown) == 1:
        return shown[0].title
    if panel[0].gallery == panel[1].gallery:
        return f"{' or '.join(d.query for d in shown)} -> {panel[0].gallery}"
    return f"{panel[0].query} -> {' or '.join(d.gallery for d in shown)}"


def recall_figure(results: dict[str, Any]) -> Any:
    """Recall@k (k = 1, 5, 10) per row with its bootstrap interval as error bars, in two panels: what ranks the
    descriptions (caption->description, image->description) and what the descriptions rank (the way back).

    Series are shifted a little along k so that their error bars do not hide each other.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    rows = _rows(results)
    for ax, panel in zip(axes, PANELS):
        for i, row in enumerate(rows):
            cells = _plotted(row, panel)
            if cells is None:
                continue
            values = [c.number() for c in cells]
            low = [v - (c.number(c.ci[0]) if c.ci else v) for v, c in zip(values, cells)]
            high = [(c.number(c.ci[1]) if c.ci else v) - v for v, c in zip(values, cells)]
            shift = 0.12 * (i - (len(rows) - 1) / 2)
            ax.errorbar(
                [k + shift for k in PLOT_KS], values, yerr=[low, high], marker="o", capsize=3, color=f"C{i % 10}",
                label=f"{row['system']} (n={row.get('n', '?')})",
            )  # fmt: skip
        ax.set_title(_panel_title(rows, panel))
        ax.set_xlabel("k")
        ax.set_xticks(PLOT_KS)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall@k (%)")
    axes[0].set_ylim(0, 102)
    legend: dict[str, Any] = {}  # one entry per row, whichever panel it is drawn in
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(4, len(legend)), fontsize=8)
    what = "Retrieval" if any(_plotted(row, PANELS[0][1:]) for row in rows) else "Text-to-text retrieval"
    fig.suptitle(f"{what}: {run_label(results)} (error bars: {confidence_level([results])} bootstrap interval)")
    fig.tight_layout(rect=(0, 0.08 if legend else 0, 1, 1))
    return fig


# Bumped when the figure is drawn differently, so that a rerun draws it again.
FIGURE_VERSION = 2
FIGURE_KEY = "pancap-key"  # the PNG text chunk that holds the key of what the figure shows


def _figure_key(results: dict[str, Any]) -> str:
    """The key of everything :func:`recall_figure` reads: a PNG with this key needs no drawing again."""
    shown = []
    for row in _rows(results):
        panels = [_plotted(row, panel) for panel in PANELS]
        drawn = [None if cells is None else [(c.value, c.ci) for c in cells] for cells in panels]
        shown.append((row.get("system"), row.get("n"), drawn))
    return key(FIGURE_VERSION, shown, run_label(results), confidence_level([results]))


def plot_recall(results: dict[str, Any], path: Path) -> Path:
    """Write :func:`recall_figure` as a PNG, atomically; a PNG already drawn from the same numbers is kept (their
    key sits in its ``pancap-key`` text chunk)."""
    figure_key = _figure_key(results)
    if path.is_file():
        from PIL import Image

        try:
            with Image.open(path) as existing:
                if getattr(existing, "text", {}).get(FIGURE_KEY) == figure_key:
                    return path
        except (OSError, ValueError, SyntaxError):
            pass  # a cut or foreign file: drawn again
    buffer = io.BytesIO()
    recall_figure(results).savefig(buffer, format="png", dpi=120, metadata={FIGURE_KEY: figure_key})
    return write_if_changed(path, buffer.getvalue())
