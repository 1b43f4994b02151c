"""Where PancapScore's two sides come from, by name: a run's captioner (its store, without the hashed path) and the
shipped SA-Pancap references (``sapancap:val`` / ``sapancap:test``), besides any captions file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pancap_retrieval.artifacts import file_name, read_json
from pancap_retrieval.captions.store import manifest_path
from pancap_retrieval.errors import PancapError

# A reference named like a dataset: the ground-truth captions that ship in the package, with the dialect they are
# written in (fractions of the unpadded image).
SHIPPED_REFERENCES = {"sapancap": "norm"}


@dataclass(frozen=True)
class Side:
    """One side of a PancapScore comparison: its captions file, the box dialect it declares (None: the file's own
    store manifest, else auto), and the dataset its images come from (None: the images its records name)."""

    path: Path
    dialect: str | None = None
    dataset: str | None = None
    split: str | None = None


def reference_side(ref: str | Path) -> Side:
    """``sapancap:test`` (or ``sapancap:val``, or ``sapancap`` for its default split) as the shipped file; any other
    value as a captions file.

    >>> side = reference_side("sapancap:test")
    >>> side.path.name, side.dialect
    ('sapancap_test_gtcaption.json', 'norm')
    """
    kind, sep, split = str(ref).partition(":")
    if kind in SHIPPED_REFERENCES and not Path(str(ref)).exists():
        from pancap_retrieval.data.sapancap import DEFAULT_SPLIT, caption_file

        return Side(caption_file(split if sep else DEFAULT_SPLIT), SHIPPED_REFERENCES[kind])
    return Side(Path(ref))


def run_side(run_dir: str | Path, captioner: str) -> Side:
    """The store of ``captioner`` in the run folder ``run_dir``, with the dataset and split its manifest names
    (so the images' sizes can be read), found by name: no hashed store path to type."""
    run_dir = Path(run_dir)
    stores = sorted((run_dir / "captions").glob(f"{file_name(captioner)}__*.jsonl"))
    if not stores:
        known = sorted({p.name.split("__")[0] for p in (run_dir / "captions").glob("*__*.jsonl")})
        raise PancapError(
            f"no captions of {captioner!r} in {run_dir}; its captioners: {', '.join(known) or 'none'}"
        )
    if len(stores) > 1:
        raise PancapError(
            f"{run_dir} holds captions of {captioner!r} for several datasets ({', '.join(p.name for p in stores)}): "
            "pass the store as --pred"
        )
    manifest = read_json(manifest_path(stores[0])) or {}
    return Side(stores[0], None, manifest.get("dataset"), manifest.get("split"))
