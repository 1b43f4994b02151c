"""Leaderboards from result files: one table across runs (Markdown, CSV) and a recall@k plot.

A cell a run did not measure stays empty: rows are never averaged over what happens to be there.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pancap_retrieval.results import read_results

RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "MRR")
DIRECTIONS = ("c2d", "d2c")
# Reconstruction columns: (column, path into a captioner's ``scores``).
RECONSTRUCTION_METRICS = (
    ("redraw cosine", ("cosine", "mean")),
    ("redraw R@1", ("retrieval", "R@1")),
    ("shuffled R@1", ("shuffled", "R@1")),
    ("FID", ("fid", "value")),
    ("layout success rate", ("adherence", "redraw", "success_rate")),
    ("caption box success rate", ("adherence", "original", "success_rate")),
)


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def run_label(results: dict[str, Any]) -> str:
    dataset = results.get("dataset", {})
    label = f"{dataset.get('name', '?')}/{dataset.get('split') or '-'}"
    embedder = results.get("embedder", {}).get("name")
    return f"{label} {embedder}" if embedder else label


def table(results_list: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows (captioner first) over several runs; values are raw fractions or None."""
    columns: list[str] = []
    cells: dict[str, dict[str, Any]] = {}
    many = len(results_list) > 1
    for results in results_list:
        prefix = f"{run_label(results)} " if many else ""
        for row in results.get("rows", []):
            captioner = row["captioner"]
            line = cells.setdefault(captioner, {})
            for column, value in [(f"{prefix}n", row.get("n"))] + [
                (f"{prefix}{d} {m}", row.get(d, {}).get(m)) for d in DIRECTIONS for m in RETRIEVAL_METRICS
            ]:
                if column not in columns:
                    columns.append(column)
                line[column] = value
        for captioner, entry in (results.get("reconstruction") or {}).get("captioners", {}).items():
            line = cells.setdefault(captioner, {})
            for metric, path in RECONSTRUCTION_METRICS:
                value = _lookup(entry.get("scores"), path)
                if value is not None:
                    column = f"{prefix}{metric}"
                    if column not in columns:
                        columns.append(column)
                    line[column] = value
    rows = [[captioner] + [line.get(c) for c in columns] for captioner, line in cells.items()]
    return ["captioner", *columns], rows


def _format(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and ("R@" in column or "MRR" in column or "rate" in column):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(columns: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; recall, MRR and rates in percent.

    >>> print(markdown(["captioner", "c2d R@1"], [["reference", 1.0], ["detector", None]]))
    | captioner | c2d R@1 |
    |---|---|
    | reference | 100.0 |
    | detector |  |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(c, v) for c, v in zip(columns, row)) + " |")
    return "\n".join(lines)


def write_leaderboard(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``leaderboard.csv`` and ``recall_at_k.png`` for one or more runs."""
    results_list = [read_results(d) for d in run_dirs]
    columns, rows = table(results_list)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / "leaderboard.md"
    title = ", ".join(run_label(r) for r in results_list)
    md_path.write_text(
        f"# pancap leaderboard: {title}\n\nRecall and MRR in percent.\n\n{markdown(columns, rows)}\n"
    )
    csv_path = out_dir / "leaderboard.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    paths = {"markdown": md_path, "csv": csv_path}
    if len(results_list) == 1:
        paths["plot"] = plot_recall(results_list[0], out_dir / "recall_at_k.png")
    return paths


def plot_recall(results: dict[str, Any], path: Path) -> Path:
    """Recall@k curves (k = 1, 5, 10) per captioner, one panel per direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [1, 5, 10]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, direction in zip(axes, DIRECTIONS):
        for row in results.get("rows", []):
            values = [row.get(direction, {}).get(f"R@{k}") for k in ks]
            if all(v is not None for v in values):
                ax.plot(ks, [100 * v for v in values], marker="o", label=row["captioner"])
        ax.set_title({"c2d": "caption -> description", "d2c": "description -> caption"}[direction])
        ax.set_xlabel("k")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall@k (%)")
    axes[0].set_ylim(0, 102)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Text-to-text retrieval: {run_label(results)}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
