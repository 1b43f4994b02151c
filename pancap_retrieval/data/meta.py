"""What pancap knows of a dataset before loading it: one :class:`DatasetMeta` per kind, and the registry of them.

Each loader module holds the record of its dataset (``META = DatasetMeta(...)``) and reads its splits, default split
and environment variable from it; the registry (:data:`pancap_retrieval.data.DATASETS`) names each record by
``"module:ATTRIBUTE"`` and imports it only when asked, so listing, the ``--dataset`` help and the spec resolver are
generated from the records. A new dataset is one module (its loader and its record) plus one registry line::

    DATASETS.add("toy", "mypackage.toy:META")   # or DATASETS.add(META) with the record itself

Loader modules import nothing heavy at module level (datasets, PIL, torch only inside functions), so reading
records stays fast and torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass

from pancap_retrieval.errors import RegistryError
from pancap_retrieval.registry import Entry, Registry


@dataclass(frozen=True)
class DatasetMeta:
    """One dataset kind: its loader, what it is, its splits and where its data comes from.

    ``loader`` is ``"module:function"``, called as ``function(arg, split=..., limit=..., **options)``. ``usage`` is
    its part of the ``--dataset`` help; ``spec`` the forms of its spec in short (``docci:DIR | docci:OWNER/MIRROR``).
    ``splits`` empty means the set's own splits (``splits_note`` says which). ``env`` names the variable that holds
    the data folder when the spec has no argument; ``revisioned`` says that the argument can name a Hub repository
    pinned with ``@REVISION``; ``hub_options`` that it takes the ``hf:`` options (config, columns, images,
    definition). ``descriptions_optional`` is for sets whose images may come without descriptions, and
    ``missing_descriptions`` (``"module:function"`` of the spec's argument) says how to add them. ``dialect`` is
    the box dialect its descriptions are written in (:mod:`pancap_retrieval.captions.boxes`).
    """

    name: str
    loader: str
    help: str
    usage: str
    spec: str
    source: str
    splits: tuple[str, ...] = ()
    default_split: str | None = None
    splits_note: str = ""
    env: str | None = None
    revisioned: bool = False
    hub_options: bool = False
    descriptions_optional: bool = False
    missing_descriptions: str | None = None
    dialect: str = "auto"
    no_arg_source: str | None = None

    def __post_init__(self) -> None:
        if ":" not in self.loader:
            raise ValueError(f"dataset {self.name!r}: loader must be 'module:function', got {self.loader!r}")
        if self.default_split is not None and self.splits and self.default_split not in self.splits:
            raise ValueError(f"dataset {self.name!r}: default split {self.default_split!r} is not in {self.splits}")

    def split_names(self) -> list[str]:
        """The splits as ``pancap list datasets`` shows them."""
        return list(self.splits) or ([self.splits_note] if self.splits_note else [])

    def split_default(self) -> str:
        """The default split in words, for the ``--split`` help."""
        return self.default_split or "the set's own"


def resolve(target: str) -> object:
    """The object a ``"module:attribute"`` target names, imported now."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class DatasetRegistry(Registry):
    """Dataset kinds by name -> :class:`DatasetMeta`, each given as the record or as ``"module:ATTRIBUTE"``
    (imported on first use); the registry's entries (loader target and help line) are read from the records."""

    def __init__(self, records: dict[str, str | DatasetMeta] | None = None) -> None:
        super().__init__("dataset")
        self._records: dict[str, str | DatasetMeta] = {}
        for name, record in (records or {}).items():
            self.add(name, record)

    def add(self, name_or_meta: str | DatasetMeta, record: str | DatasetMeta | None = None) -> None:
        """Register a dataset: ``add(meta)``, or ``add(name, "module:ATTRIBUTE")`` read when first needed."""
        if isinstance(name_or_meta, DatasetMeta):
            name_or_meta, record = name_or_meta.name, name_or_meta
        if record is None:
            raise RegistryError(f"dataset {name_or_meta!r}: give its DatasetMeta or 'module:ATTRIBUTE'")
        self._records[name_or_meta] = record

    def register(self, name: str, entry: Entry) -> None:
        raise RegistryError(f"dataset {name!r}: register a DatasetMeta with DATASETS.add, not an Entry")

    def remove(self, name: str) -> None:
        """Forget a registered dataset (one added for a test)."""
        self._records.pop(name, None)

    def meta(self, name: str) -> DatasetMeta:
        """The record of dataset ``name``; an unknown name is a :class:`RegistryError` listing the known ones."""
        if name not in self._records:
            raise RegistryError(f"unknown dataset {name!r}; known: {', '.join(self.names())}")
        record = self._records[name]
        if isinstance(record, str):
            record = resolve(record)
            if not isinstance(record, DatasetMeta) or record.name != name:
                raise RegistryError(f"dataset {name!r}: {self._records[name]} is not its DatasetMeta")
            self._records[name] = record
        return record

    def metas(self) -> list[DatasetMeta]:
        """Every record, sorted by name."""
        return [self.meta(name) for name in self.names()]

    def names(self) -> list[str]:
        return sorted(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entry(self, name: str) -> Entry:
        meta = self.meta(name)
        return Entry(meta.loader, meta.help)

    def describe(self) -> list[tuple[str, str]]:
        return [(meta.name, meta.help) for meta in self.metas()]


__all__ = ["DatasetMeta", "DatasetRegistry", "resolve"]
