"""Paired comparisons between the rows of a run: ``pairs.md``, ``pairs.csv`` and the leaderboard's "vs best".

Two rows are compared when they queried from the image side against the same descriptions: a captioner row's
``caption->description`` (the image's caption is the query) and a retriever row's ``image->description`` (the image
itself is). Each row's per-image ranks come from its ranks file (``retrieval/NAME.ranks.json``), aligned by image
id; rows scored on different images are not compared. The arithmetic is :func:`~pancap_retrieval.retrieval.paired.
paired_comparison`: the R@1 difference (first row minus second) with its paired bootstrap interval, and the exact
McNemar p-value on the images one row ranks first and the other does not.
"""

from __future__ import annotations

import csv
import io
from itertools import combinations
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import read_json, write_if_changed
from pancap_retrieval.directions import CAPTION_TO_DESCRIPTION, IMAGE_TO_DESCRIPTION, Direction, of
from pancap_retrieval.results import normalise_row
from pancap_retrieval.runs import MANIFEST_FILE, RETRIEVAL_DIR, ranks_file

PAIRS_MD = "pairs.md"
PAIRS_CSV = "pairs.csv"
# The direction a row of each kind is compared in: queries from the image side, descriptions as the gallery.
MAIN_DIRECTION: dict[str, Direction] = {"captioner": CAPTION_TO_DESCRIPTION, "retriever": IMAGE_TO_DESCRIPTION}
CSV_COLUMNS = (
    "a", "b", "direction a", "direction b", "n", "R@1 a (%)", "R@1 b (%)", "difference (%)",
    "difference {level} CI low (%)", "difference {level} CI high (%)", "a only", "b only", "McNemar p",
)  # fmt: skip


def main_direction(row: dict[str, Any]) -> Direction | None:
    """The direction a row is compared in (``caption->description`` for a captioner, ``image->description`` for a
    retriever), or None for a row of another kind.

    >>> main_direction({"system": "clip", "kind": "retriever"}).name
    'image->description'
    """
    return MAIN_DIRECTION.get(normalise_row(row).get("kind", "captioner"))


def row_ranks(run_dir: str | Path, results: dict[str, Any]) -> dict[str, tuple[Direction, dict[str, int]]]:
    """system -> (its main direction, image id -> rank) for every row of ``results`` whose ranks file in
    ``run_dir`` holds that direction."""
    out = {}
    for row in results.get("rows", []):
        row = normalise_row(row)
        d = main_direction(row)
        if d is None:
            continue
        ranks = read_json(ranks_file(Path(run_dir) / RETRIEVAL_DIR, row["system"]))
        by_id = of(ranks, d) if isinstance(ranks, dict) else None
        if isinstance(by_id, dict) and by_id:
            out[row["system"]] = (d, {str(k): int(v) for k, v in by_id.items()})
    return out


def _options(run_dir: str | Path, results: dict[str, Any]) -> dict[str, Any]:
    """The run's bootstrap resamples (results) and seed (its manifest); 1000 and 0 when not recorded."""
    n = (results.get("retrieval") or {}).get("bootstrap_samples")
    seed = (read_json(Path(run_dir) / MANIFEST_FILE) or {}).get("seed", 0)
    return {"n_bootstrap": n if isinstance(n, int) and n > 0 else 1000, "seed": seed if isinstance(seed, int) else 0}


def compare(
    ranks: dict[str, tuple[Direction, dict[str, int]]], a: str, b: str, *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any] | None:
    """The paired comparison of rows ``a`` and ``b`` (a minus b), or None when they were scored on different
    images."""
    from pancap_retrieval.retrieval.paired import paired_comparison

    (da, ra), (db, rb) = ranks[a], ranks[b]
    if set(ra) != set(rb):
        return None
    out = paired_comparison(ra, rb, k=1, n_bootstrap=n_bootstrap, seed=seed)
    return {"a": a, "b": b, "direction_a": da.name, "direction_b": db.name, **out}


def run_pairs(run_dir: str | Path, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every two comparable rows of a run, in row order (seeded with the run's bootstrap settings)."""
    ranks = row_ranks(run_dir, results)
    options = _options(run_dir, results)
    pairs = (compare(ranks, a, b, **options) for a, b in combinations(list(ranks), 2))
    return [p for p in pairs if p is not None]


def dataset_rows(results: dict[str, Any]) -> str | None:
    """The digest of a run's dataset rows (image bytes and descriptions; ``rows_sha256``), None when not recorded:
    rows of two runs are compared only when it is the same."""
    digest = (results.get("dataset") or {}).get("rows_sha256")
    return digest if isinstance(digest, str) and digest else None


def across_runs(runs: list[tuple[str, str | Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every two comparable rows of several runs (``(label, run folder, results)``) over the same dataset rows
    (:func:`dataset_rows`), within a run and across runs: a row is named by its system, or ``system @ label`` when
    more than one run has a row of that name. Seeded with the first run's bootstrap settings."""
    groups: dict[str, list[tuple[str, str | Path, dict[str, Any]]]] = {}
    for run in runs:
        if (digest := dataset_rows(run[2])) is not None:
            groups.setdefault(digest, []).append(run)
    pairs: list[dict[str, Any]] = []
    for group in groups.values():
        per_run = [(label, row_ranks(run_dir, results)) for label, run_dir, results in group]
        count: dict[str, int] = {}
        for _, ranks in per_run:
            for system in ranks:
                count[system] = count.get(system, 0) + 1
        named = {
            system if count[system] == 1 else f"{system} @ {label}": found
            for label, ranks in per_run
            for system, found in ranks.items()
        }
        options = _options(group[0][1], group[0][2])
        found = (compare(named, a, b, **options) for a, b in combinations(list(named), 2))
        pairs += [p for p in found if p is not None]
    return pairs


def vs_best(run_dir: str | Path, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """system -> its R@1 difference to the best row's (highest R@1 in its main direction; the first on a tie),
    as ``{"difference", "difference_ci", "best"}``: the best row itself has ``difference`` None."""
    return _vs_best(row_ranks(run_dir, results), _options(run_dir, results))


def vs_best_across(runs: list[tuple[str | Path, dict[str, Any]]], sources: dict[str, str]) -> dict[str, Any]:
    """:func:`vs_best` over the rows of several run folders of one dataset (the same :func:`dataset_rows`), each
    system's ranks read from the run ``sources`` names for it; nothing when the runs' rows differ or a run is not
    a folder."""
    if len({dataset_rows(results) for _, results in runs}) != 1 or dataset_rows(runs[0][1]) is None:
        return {}
    if any(not Path(run_dir).is_dir() for run_dir, _ in runs):
        return {}
    ranks: dict[str, tuple[Direction, dict[str, int]]] = {}
    for run_dir, results in runs:
        found = row_ranks(run_dir, results)
        ranks.update({system: found[system] for system in found if sources.get(system) == str(run_dir)})
    return _vs_best(ranks, _options(runs[0][0], runs[0][1]))


def _vs_best(ranks: dict[str, tuple[Direction, dict[str, int]]], options: dict[str, Any]) -> dict[str, Any]:
    if not ranks:
        return {}
    r1 = {name: sum(r == 1 for r in by_id.values()) / len(by_id) for name, (_, by_id) in ranks.items()}
    best = max(r1, key=lambda name: r1[name])
    out: dict[str, dict[str, Any]] = {best: {"best": best, "difference": None}}
    for name in ranks:
        if name != best and (pair := compare(ranks, name, best, **options)) is not None:
            out[name] = {"best": best, "difference": pair["difference"], "difference_ci": pair["difference_ci"]}
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def pairs_markdown(pairs: list[dict[str, Any]], level: str = "95%") -> str:
    """The pairs as a Markdown page: one line per pair, R@1 in percent."""
    lines = [
        "# Paired comparisons",
        "",
        "Every two rows scored on the same images, each in its main direction (a captioner's caption -> "
        "description, a retriever's image -> description). R@1 in percent; the difference is a minus b with its "
        f"paired bootstrap {level} interval; a only / b only count the images one row ranks first and the other "
        "does not; p is the exact McNemar p-value.",
        "",
        f"| a | b | n | R@1 a | R@1 b | a - b [{level}] | a only | b only | McNemar p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        low, high = p["difference_ci"]
        lines.append(
            f"| {p['a']} | {p['b']} | {p['n']} | {_pct(p['R@1_a'])} | {_pct(p['R@1_b'])} | "
            f"{_pct(p['difference'])} [{_pct(low)}, {_pct(high)}] | {p['a_only']} | {p['b_only']} | "
            f"{_p(p['mcnemar_p'])} |"
        )
    if not pairs:
        lines.append("| no two rows were scored on the same images |  |  |  |  |  |  |  |  |")
    return "\n".join(lines) + "\n"


def pairs_csv(pairs: list[dict[str, Any]], level: str = "95%") -> str:
    """The pairs as CSV: percent columns unrounded to 6 decimals, the interval's ends in columns of their own."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.format(level=level) for c in CSV_COLUMNS])
    for p in pairs:
        writer.writerow([
            p["a"], p["b"], p["direction_a"], p["direction_b"], p["n"],
            *(round(100 * p[k], 6) for k in ("R@1_a", "R@1_b", "difference")),
            *(round(100 * v, 6) for v in p["difference_ci"]), p["a_only"], p["b_only"], p["mcnemar_p"],
        ])  # fmt: skip
    return buffer.getvalue()


def write_pairs(run_dir: str | Path, results: dict[str, Any], out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``pairs.md`` and ``pairs.csv`` of one run (into ``out_dir``, the run folder by default)."""
    out = Path(out_dir if out_dir is not None else run_dir)
    return write_pair_files(run_pairs(run_dir, results), out)


def write_pair_files(pairs: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """``pairs.md`` and ``pairs.csv`` of ``pairs`` in folder ``out``, each only when its content changed."""
    return {
        "pairs_markdown": write_if_changed(out / PAIRS_MD, pairs_markdown(pairs)),
        "pairs_csv": write_if_changed(out / PAIRS_CSV, pairs_csv(pairs)),
    }


__all__ = [
    "MAIN_DIRECTION", "PAIRS_CSV", "PAIRS_MD", "across_runs", "compare", "dataset_rows", "main_direction",
    "pairs_csv", "pairs_markdown", "row_ranks", "run_pairs", "vs_best", "vs_best_across", "write_pair_files",
    "write_pairs",
]  # fmt: skip
