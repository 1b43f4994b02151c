"""The offline sample: 20 real photos that ship inside scikit-image, scikit-learn and matplotlib.

No image is stored in pancap. ``sample/sample.json`` names, for each photo, the package and the file inside it
(and the public accessor that returns the same pixels), its provenance and licence, and a hand-written
DOCCI-style description. The photos are read from the installed packages at run time; a photo whose package or
file is missing is skipped with a warning that counts and names it. The only split is ``test``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.data.records import Row, build_dataset, check_limit, choose_split, first_n
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

SPLIT = "test"


@cache
def sample_entries() -> tuple[dict[str, Any], ...]:
    """The entries of ``sample/sample.json`` in file order: example_id, source, provenance, licence, description."""
    text = (
        resources.files("pancap_retrieval.data").joinpath("sample", "sample.json").read_text(encoding="utf-8")
    )
    return tuple(json.loads(text)["examples"])


def package_file(package: str, relative: str) -> Path | None:
    """The path of ``relative`` inside the installed top-level ``package``, without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    return None


def load_sample(
    arg: str | None = None, split: str | None = None, limit: int | None = None
) -> datasets.Dataset:
    """The sample photos with their descriptions, sorted by example_id; the only split is ``test``."""
    if arg:
        raise DatasetError(f"sample takes no argument, got sample:{arg}")
    check_limit(limit)
    chosen = choose_split("sample", split, [SPLIT], SPLIT)
    rows, missing = [], []
    for entry in sample_entries():
        source = entry["source"]
        path = package_file(source["package"], source["file"])
        if path is None:
            missing.append(f"{entry['example_id']} ({source['package']}/{source['file']})")
            continue
        rows.append(Row(entry["example_id"], str(path), entry["description"], chosen))
    if missing:
        log.warning(
            "sample: %d photo(s) not found in the installed packages, skipped: %s",
            len(missing),
            ", ".join(missing),
        )
    if not rows:
        raise DatasetError(
            "sample: none of the sample photos is installed (scikit-image, scikit-learn, matplotlib)"
        )
    return build_dataset(first_n(rows, limit), what="sample")
