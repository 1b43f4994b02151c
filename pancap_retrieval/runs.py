"""The vocabulary of a run folder, below every stage: file names, the run summary, how a run treats its folder.

A run folder holds ``captions/`` (one store per captioner), ``retrieval/`` (per system its row, ranks and top-10
files), ``results.json``, ``manifest.json``, ``suite.json``, ``run_summary.json``, ``leaderboard.*``; with
reconstruction also ``originals/``, ``images/`` and ``reconstruction.json``. Every stage and reader names these
files through this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import default_cache_dir, write_error

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
MANIFEST_FILE = "manifest.json"
SUITE_FILE = "suite.json"
RUN_SUMMARY_FILE = "run_summary.json"
RETRIEVAL_DIR = "retrieval"


def row_file(stage_dir: Path, name: str) -> Path:
    """The keyed retrieval row of system ``name`` in a run's ``retrieval/`` folder."""
    return Path(stage_dir) / f"{name}.json"


def ranks_file(stage_dir: Path, name: str) -> Path:
    """Per direction, each query id's rank of its positive (the gallery and ``pancap export`` read it)."""
    return Path(stage_dir) / f"{name}.ranks.json"


def top_file(stage_dir: Path, name: str) -> Path:
    """Per direction, each query id's top-10 gallery ids from the search backend."""
    return Path(stage_dir) / f"{name}.top10.json"


def retrieval_dirs(run_dir: Path) -> list[Path]:
    """The ``retrieval/`` folders of a run: its own, then one per embedder's sub-folder, in name order."""
    run_dir = Path(run_dir)
    return [run_dir / RETRIEVAL_DIR, *sorted(run_dir.glob(f"*/{RETRIEVAL_DIR}"))]


@dataclass(frozen=True)
class RunOptions:
    """How a run treats what is already in its folder."""

    retry_failed: bool = False
    overwrite: bool = False


@dataclass
class RunSummary:
    """What each stage did (done, reused, failed) and how long it took; printed at the end of a run."""

    stages: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time one stage; its start is announced on stderr so a long stage is never silent."""
        entry: dict[str, Any] = {"stage": name}
        log.info("%s ...", name)
        started = time.perf_counter()
        try:
            yield entry
        finally:
            entry["seconds"] = round(time.perf_counter() - started, 2)
            self.stages.append(entry)

    def lines(self) -> list[str]:
        return summary_lines({"stages": self.stages})


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The lines a person reads at the end of a run: per stage its time and what was done, reused, failed."""
    out = ["stage                              seconds  what"]
    for entry in summary.get("stages", []):
        counts = ", ".join(
            f"{k} {entry[k]}"
            for k in ("done", "reused", "failed", "skipped", "repaired")
            if entry.get(k) is not None and (k != "repaired" or entry[k])
        )
        line = f"{entry['stage']:<34} {entry['seconds']:>8.1f} s  {counts}"
        if entry.get("note"):
            line += f"  ({entry['note']})"
        out.append(line.rstrip())
    failed = {name: n for name, n in summary.get("failed_captions", {}).items() if n}
    if failed:
        out.append(
            "failed captions: " + ", ".join(f"{name} {n}" for name, n in failed.items())
            + " (reasons in captions/*.jsonl; rerun with --retry-failed to try them again)"
        )
    return out


def make_run_dir(out: Path) -> bool:
    """Create ``out``; True when this call created it (so a failed run can remove it again)."""
    try:
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        return created
    except OSError as exc:
        raise write_error(out, exc) from None


__all__ = [
    "MANIFEST_FILE",
    "RESULTS_FILE",
    "RETRIEVAL_DIR",
    "RUN_SUMMARY_FILE",
    "SUITE_FILE",
    "RunOptions",
    "RunSummary",
    "default_cache_dir",
    "make_run_dir",
    "ranks_file",
    "retrieval_dirs",
    "row_file",
    "summary_lines",
    "top_file",
]
