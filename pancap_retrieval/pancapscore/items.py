"""The items a judge extracts from one caption, grouped into PancapScore's five dimensions.

A caption becomes a :class:`CaptionItems`: entity instances (a semantic tag and at most one box each: the
*tag* and *location* dimensions), and statements about them (*attribute*: one entity, *relation*: two
entities, *global*: none). Each statement carries the yes/no question pair the metric asks of the other
caption: the first question's correct answer is "yes", the second's is "no".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pancap_retrieval.captions.boxes import Box

DIMENSIONS = ("tag", "location", "attribute", "relation", "global")
STATEMENT_KINDS = ("attribute", "relation", "global")
# overall = tag + location + attribute + relation + 0.1 x global, on F1 in percent (maximum 410)
WEIGHTS = {"tag": 1.0, "location": 1.0, "attribute": 1.0, "relation": 1.0, "global": 0.1}
MAX_OVERALL = round(100 * sum(WEIGHTS.values()), 6)  # 410.0

StatementKind = Literal["attribute", "relation", "global"]
_ENTITY_REF = re.compile(r"\bentity\s+(\d+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class EntityItem:
    """One entity instance: its id within the caption, its semantic tag and its box (None when not given)."""

    id: int
    tag: str
    box: Box | None = None
    part: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tag": self.tag,
            "box": self.box.as_list(4) if self.box is not None else None,
            "part": self.part,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EntityItem:
        box = data.get("box")
        return cls(
            int(data["id"]), str(data["tag"]), Box(*box) if box else None, bool(data.get("part", False))
        )


@dataclass(frozen=True)
class Statement:
    """An attribute, relation or global statement with its question pair (yes-answer first, no-answer second)."""

    kind: StatementKind
    text: str
    entities: tuple[int, ...] = ()
    yes_question: str = ""
    no_question: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "entities": list(self.entities),
            "yes_question": self.yes_question,
            "no_question": self.no_question,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Statement:
        return cls(
            data["kind"],
            str(data["text"]),
            tuple(int(e) for e in data.get("entities", ())),
            str(data.get("yes_question", "")),
            str(data.get("no_question", "")),
        )


@dataclass
class CaptionItems:
    """Everything a judge extracted from one caption.

    ``statements_extracted`` is False when the judge does not extract attributes, relations and global
    state (the ``rule`` judge): those dimensions are then *not computed*, never scored as zero.
    ``invalid`` counts extracted pieces dropped as unusable (unparsable lines, unknown entity ids, bad boxes);
    ``failed`` is set when nothing usable came back at all.
    """

    entities: list[EntityItem] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    statements_extracted: bool = True
    invalid: int = 0
    failed: str | None = None

    def of_kind(self, kind: str) -> list[Statement]:
        return [s for s in self.statements if s.kind == kind]

    @property
    def located(self) -> list[EntityItem]:
        return [e for e in self.entities if e.box is not None]

    def entity(self, entity_id: int) -> EntityItem | None:
        return next((e for e in self.entities if e.id == entity_id), None)

    def counts(self) -> dict[str, int]:
        return {
            "tag": len(self.entities),
            "location": len(self.located),
            **{kind: len(self.of_kind(kind)) for kind in STATEMENT_KINDS},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": [e.to_dict() for e in self.entities],
            "statements": [s.to_dict() for s in self.statements],
            "statements_extracted": self.statements_extracted,
            "invalid": self.invalid,
            "failed": self.failed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionItems:
        return cls(
            [EntityItem.from_dict(e) for e in data.get("entities", [])],
            [Statement.from_dict(s) for s in data.get("statements", [])],
            bool(data.get("statements_extracted", True)),
            int(data.get("invalid", 0)),
            data.get("failed"),
        )


def remap_entities(text: str, mapping: dict[int, int], fallback: dict[int, str] | None = None) -> str:
    """Rewrite ``entity N`` references of one caption's ids into another caption's ids.

    An id without a counterpart is written as its tag (``fallback``), so the question stays readable.

    >>> remap_entities("Is entity 1 above entity 12?", {1: 3, 12: 4})
    'Is entity 3 above entity 4?'
    >>> remap_entities("Is entity 2 red?", {}, {2: "the car"})
    'Is the car red?'
    """

    def swap(match: re.Match[str]) -> str:
        source = int(match.group(1))
        if source in mapping:
            return f"entity {mapping[source]}"
        if fallback and source in fallback:
            return fallback[source]
        return match.group(0)

    return _ENTITY_REF.sub(swap, text)


def overall_score(f1: dict[str, float | None]) -> float | None:
    """PancapScore overall from per-dimension F1 in [0, 1]: 100 x (tag + location + attribute + relation
    + 0.1 x global); None when any dimension was not computed.

    >>> round(overall_score({"tag": 0.5756, "location": 0.3034, "attribute": 0.4478, "relation": 0.3461, "global": 0.8459}), 2)
    175.75
    """
    if any(f1.get(dim) is None for dim in DIMENSIONS):
        return None
    return 100 * sum(WEIGHTS[dim] * float(f1[dim]) for dim in DIMENSIONS)  # type: ignore[arg-type]


def partial_score(f1: dict[str, float | None], dims: tuple[str, ...] = ("tag", "location")) -> float | None:
    """100 x the sum of the named dimensions' F1 (their weights applied); a labelled partial figure.

    >>> partial_score({"tag": 1.0, "location": 0.5})
    150.0
    """
    if any(f1.get(dim) is None for dim in dims):
        return None
    return 100 * sum(WEIGHTS[dim] * float(f1[dim]) for dim in dims)  # type: ignore[arg-type]


__all__ = [
    "DIMENSIONS",
    "MAX_OVERALL",
    "STATEMENT_KINDS",
    "WEIGHTS",
    "CaptionItems",
    "EntityItem",
    "Statement",
    "overall_score",
    "partial_score",
    "remap_entities",
]
