"""Retrieval directions as data, named by what is matched: queries of one kind against a gallery of another.

Every row, ranks file, leaderboard column and gallery number names its direction through this module. ``label``
is the short column word (``c2d``); results written before directions were data key their metrics by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Direction:
    """Queries of kind ``query`` ranked against a gallery of kind ``gallery``."""

    query: str
    gallery: str
    label: str

    @property
    def name(self) -> str:
        """``caption->description``: the key of the direction's metrics in a results row and its ranks file."""
        return f"{self.query}->{self.gallery}"

    @property
    def title(self) -> str:
        """``caption -> description``: how a page or a plot names it."""
        return f"{self.query} -> {self.gallery}"


CAPTION_TO_DESCRIPTION = Direction("caption", "description", "c2d")
DESCRIPTION_TO_CAPTION = Direction("description", "caption", "d2c")
IMAGE_TO_DESCRIPTION = Direction("image", "description", "i2d")
DESCRIPTION_TO_IMAGE = Direction("description", "image", "d2i")
REDRAW_TO_ORIGINAL = Direction("redraw", "original", "r2o")

# In leaderboard column order.
DIRECTIONS: tuple[Direction, ...] = (
    CAPTION_TO_DESCRIPTION,
    DESCRIPTION_TO_CAPTION,
    IMAGE_TO_DESCRIPTION,
    DESCRIPTION_TO_IMAGE,
)
_ALL = {d.name: d for d in (*DIRECTIONS, REDRAW_TO_ORIGINAL)}


def direction(name: str) -> Direction:
    """The direction called ``name`` (``caption->description``).

    >>> direction("image->description").label
    'i2d'
    """
    try:
        return _ALL[name]
    except KeyError:
        raise KeyError(f"unknown direction {name!r}; known: {', '.join(_ALL)}") from None


def between(query: str, gallery: str) -> tuple[Direction, Direction]:
    """The two directions of a retriever whose queries are ``query`` items and whose gallery is ``gallery`` items:
    forward and back.

    >>> [d.name for d in between("caption", "description")]
    ['caption->description', 'description->caption']
    """
    return direction(f"{query}->{gallery}"), direction(f"{gallery}->{query}")


def of(mapping: Mapping[str, Any], d: Direction, default: Any = None) -> Any:
    """``mapping``'s entry for direction ``d``, under its name or, as written before, its label."""
    if d.name in mapping:
        return mapping[d.name]
    return mapping.get(d.label, default)


__all__ = [
    "CAPTION_TO_DESCRIPTION",
    "DESCRIPTION_TO_CAPTION",
    "DESCRIPTION_TO_IMAGE",
    "DIRECTIONS",
    "IMAGE_TO_DESCRIPTION",
    "REDRAW_TO_ORIGINAL",
    "Direction",
    "between",
    "direction",
    "of",
]
