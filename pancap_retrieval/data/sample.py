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

from pancap_retrieval.data.meta import DatasetMeta
from pancap_retrieval.data.records import Row, build_dataset, check_limit, choose_split, first_n
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

META = DatasetMeta(
    name="sample",
    loader="pancap_retrieval.data.sample:load_sample",
    help="20 real photos shipped inside scikit-image, scikit-learn and matplotlib, "
    "each with a hand-written DOCCI-style description; the offline default",
    usage="`sample` (20 photos from installed packages, offline)",
    spec="sample",
    source="installed packages (no download); descriptions in pancap_retrieval/data/sample/sample.json",
    splits=("test",),
    default_split="test",
    no_arg_source="installed packages",
)
SPLIT = META.default_split or ""


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
    chosen = choose_split(META.name, split, META.splits, SPLIT)
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
