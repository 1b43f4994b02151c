"""The result and manifest schema shared by every stage, and the helpers that write them.

``results.json`` of a run folder::

    {"dataset": {"name", "split", "limit", "n"}, "embedder": {...},
     "rows": [{"system": NAME, "kind": "captioner" | "retriever", "n": N, "skipped": {...},
               "caption->description": {"R@1": x, ..., "R@1_ci": [lo, hi]}, "description->caption": {...}}],
     "reconstruction": {captioner: {...}} (when the suite redraws), "manifest": {...}}

A row is keyed by its system (a captioner read through a text embedder, or a retriever) and holds the metrics of
each direction it was measured in, under the direction's name (:mod:`pancap_retrieval.directions`). Rows written
before directions were data (``captioner``, ``c2d``, ``d2c``) read as the same rows (:func:`normalise_row`).
Recall values are fractions in [0, 1].
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pancap_retrieval.directions import DIRECTIONS
from pancap_retrieval.errors import PancapError

RESULTS_FILE = "results.json"
PACKAGES = (
    "pancap",
    "torch",
    "transformers",
    "sentence-transformers",
    "faiss-cpu",
    "faiss-gpu",
    "datasets",
    "diffusers",
    "onnxruntime",
    "accelerate",
    "numpy",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the pancap checkout in use, when it is one."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def base_manifest(**fields: Any) -> dict[str, Any]:
    """Versions, platform, git commit and time, plus the stage's own fields (models, dataset, seeds...)."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
        **fields,
    }


# What `pancap reconstruct` writes without retrieval: a run folder with redraw scores and no retrieval rows.
RECONSTRUCTION_FILE = "reconstruction.json"


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The results of any run folder pancap writes (``results.json``; a ``pancap reconstruct`` folder's
    ``reconstruction.json`` as results with no retrieval rows), or of a results file named directly."""
    path = Path(run_dir)
    path = path if path.suffix == ".json" else path / RESULTS_FILE
    if not path.is_file() and (path.parent / RECONSTRUCTION_FILE).is_file():
        from pancap_retrieval.artifacts import read_json

        reconstruction = read_json(path.parent / RECONSTRUCTION_FILE)
        if not isinstance(reconstruction, dict):
            raise PancapError(f"{path.parent / RECONSTRUCTION_FILE}: not a JSON object; run the stage again")
        dataset = reconstruction.get("dataset") or {"name": path.parent.name}
        return {"dataset": dataset, "rows": [], "reconstruction": reconstruction}
    if not path.is_file():
        raise PancapError(
            f"no {RESULTS_FILE} or {RECONSTRUCTION_FILE} in {path.parent}: not a pancap run folder"
        )
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PancapError(f"{path}: not valid JSON ({exc.msg})") from None
    if isinstance(results, dict) and isinstance(results.get("rows"), list):
        results["rows"] = [normalise_row(row) for row in results["rows"]]
    return results


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """A results row in today's words: ``system`` and ``kind``, metrics under direction names. A row written
    before (``captioner``, ``c2d``, ``d2c``) is a captioner's row.

    >>> normalise_row({"captioner": "a", "n": 2, "c2d": {"R@1": 0.5}})
    {'n': 2, 'system': 'a', 'kind': 'captioner', 'caption->description': {'R@1': 0.5}}
    """
    if "system" in row:
        return row
    out = {k: v for k, v in row.items() if k != "captioner" and k not in {d.label for d in DIRECTIONS}}
    out.update(system=row.get("captioner"), kind="captioner")
    out.update({d.name: row[d.label] for d in DIRECTIONS if d.label in row})
    return out
