"""Registries by name with lazy string import paths, so listing never imports torch."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from pancap_retrieval.errors import RegistryError


class Registry:
    """Maps short names to ``"module.path:attribute"`` strings, imported on first use.

    >>> r = Registry("thing", {"json": "json:dumps"})
    >>> r.get("json")([1])
    '[1]'
    >>> r.get("yaml")
    Traceback (most recent call last):
    ...
    pancap_retrieval.errors.RegistryError: unknown thing 'yaml'; known: json
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, str] = dict(entries or {})

    def register(self, name: str, target: str) -> None:
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def target(self, name: str) -> str:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        module_name, _, attribute = self.target(name).partition(":")
        return getattr(importlib.import_module(module_name), attribute)
