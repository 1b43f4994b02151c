"""The panoptic caption model: parse every box dialect into entities, format back, strip for retrieval.

A caption is text with *box groups* in it: bracketed runs of boxes in a box context (:mod:`.groups`: ``<box>``
tags, ``[[..]]``, a pixel ``[x1, y1, x2, y2]`` after a cue). Each group belongs to the noun phrase the caption
names it with (:mod:`.phrases`); a group with nothing of its own before it (``two cameras [[..]] and [[..]]``)
adds its boxes to the previous entity. The plain text drops every group with the phrasing that introduces it
(:mod:`.cues`). Malformed or truncated groups are removed whole, counted and reported in ``warnings``;
out-of-range boxes are clamped and flagged.

:func:`parse_caption` is the parser (text, phrases and boxes as written); :func:`read_boxes` is how every consumer
of a caption's boxes reads them (layouts, redraws, re-detection, PancapScore, ``pancap captions parse``): in the
caption's dialect, on the image's size, and never on a guessed frame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pancap_retrieval.captions.boxes import (
    DIALECTS,
    RANGE_TOLERANCE,
    SIZED_DIALECTS,
    Box,
    format_box_group,
    read_quad,
)
from pancap_retrieval.captions.cues import Cue, find_cue, strip_spans
from pancap_retrieval.captions.groups import RawGroup, find_groups
from pancap_retrieval.captions.phrases import JOIN, name_before, name_entity, resolve_pronoun, sentence_start
from pancap_retrieval.errors import ImageSizeError


@dataclass
class Entity:
    """A phrase and the boxes that ground it."""

    phrase: str
    boxes: list[Box] = field(default_factory=list)

    def to_dict(self, ndigits: int = 4) -> dict[str, Any]:
        return {"phrase": self.phrase, "boxes": [b.as_list(ndigits) for b in self.boxes]}


@dataclass
class BoxGroup:
    """One bracketed run of boxes in the caption text, with the span it occupies."""

    start: int
    end: int
    raw: str
    dialect: str
    boxes: list[Box]
    entity: int | None  # index into PanopticCaption.entities, None when the group held no valid box


@dataclass
class PanopticCaption:
    """A parsed caption. ``plain_text`` is the fluent text with every box and its phrasing removed."""

    text: str
    entities: list[Entity]
    groups: list[BoxGroup]
    plain_text: str
    warnings: list[str]
    malformed: int = 0
    clamped: int = 0
    dialect: str | None = None
    needs_size: bool = False  # some box is in a dialect read on the image's size, and no size was given

    @property
    def boxes(self) -> list[Box]:
        return [b for e in self.entities for b in e.boxes]

    @property
    def n_boxes(self) -> int:
        return sum(len(e.boxes) for e in self.entities)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": [e.to_dict() for e in self.entities],
            "n_boxes": self.n_boxes,
            "plain_text": self.plain_text,
            "dialect": self.dialect,
            "malformed": self.malformed,
            "clamped": self.clamped,
            "warnings": list(self.warnings),
        }


def _group_dialect(values: list[float], kind: str, dialect: str, has_size: bool, decimal: bool) -> str:
    if dialect != "auto":
        return dialect
    if kind == "asmv2":
        return "asmv2"
    if all(v <= 1.0 for v in values) or (decimal and max(values, default=0) <= 1 + RANGE_TOLERANCE):
        return "norm"  # fractions, a little out of range at worst (clamped later)
    # [[..]] above 1 without a size is read on the 0..1000 scale; a single [..] quad is pixels
    return "pixel" if has_size or kind == "single" else "asmv2"


@dataclass
class _Read:
    """One group read: its dialect, valid boxes and what was wrong with the rest."""

    raw: RawGroup
    dialect: str
    boxes: list[Box]
    malformed: int
    clamped: int
    warnings: list[str]


def _read_group(
    text: str, raw: RawGroup, dialect: str, width: int | None, height: int | None
) -> _Read | None:
    """The boxes of one group; None for a cue-less pixel candidate whose numbers are not a box (it is text)."""
    body = text[raw.start : raw.end]
    finite = [v for numbers in raw.lists for v in map(float, numbers) if math.isfinite(v)]
    decimal = bool(re.search(r"[.eE]", body))
    group_dialect = _group_dialect(
        finite, raw.kind, dialect, width is not None and height is not None, decimal
    )
    boxes: list[Box] = []
    warnings: list[str] = []
    malformed = raw.stray + (0 if raw.lists else 1)
    clamped = 0
    for numbers in raw.lists:
        box, why, was_clamped = read_quad(numbers, group_dialect, width, height)
        if box is None:
            if raw.candidate:
                return None
            malformed += 1
            warnings.append(f"malformed box at char {raw.start} ({why}): {body.strip()[:40]!r}")
            continue
        if was_clamped:
            clamped += 1
            warnings.append(f"box at char {raw.start} out of range {numbers}, clamped")
        boxes.append(box)
    if raw.stray or not raw.lists:
        warnings.append(f"malformed box at char {raw.start}: {body.strip()[:40]!r}")
    if not raw.closed:
        warnings.append(f"truncated box at char {raw.start}: {body.strip()[:40]!r}")
    return _Read(raw, group_dialect, boxes, malformed, clamped, warnings)


def _mask(text: str, reads: list[_Read]) -> str:
    """``text`` with every group replaced by NUL characters of the same length (positions are kept)."""
    pieces, cursor = [], 0
    for read in reads:
        pieces += [text[cursor : read.raw.start], "\x00" * (read.raw.end - read.raw.start)]
        cursor = read.raw.end
    return "".join(pieces) + text[cursor:]


def _name(text: str, masked: str, cue: Cue | None, raw: RawGroup) -> str:
    """The phrase of the entity a group grounds (or :data:`JOIN`)."""
    if cue is not None and cue.entity is not None:  # "the bounding box of X is [[..]]"
        inner = text[cue.entity[0] : cue.entity[1]]
        return name_before(inner, inner, len(inner)) or resolve_pronoun(text, masked, cue.start)
    if cue is not None and cue.form == "pronoun":
        lead = text[sentence_start(masked, cue.start) : cue.start]
        if not re.search(r"[^\W_]", lead):  # "Her bounding box is [[..]]": the entity named before
            return resolve_pronoun(text, masked, cue.start)
    return name_entity(text, masked, cue.start if cue is not None else raw.start, raw.end)


def parse_caption(
    text: str, dialect: str = "auto", width: int | None = None, height: int | None = None
) -> PanopticCaption:
    """Parse ``text`` into entities with normalised boxes.

    >>> c = parse_caption("A dog [[0.1, 0.2, 0.5, 0.9]] sits by two cups [[0, 0, 0.2, 0.2]] and [[0.3, 0, 0.5, 0.2]].")
    >>> [(e.phrase, len(e.boxes)) for e in c.entities]
    [('A dog', 1), ('two cups', 2)]
    >>> c.plain_text
    'A dog sits by two cups.'
    """
    if dialect not in ("auto", *DIALECTS):
        raise ValueError(f"unknown box dialect {dialect!r}; known: auto, {', '.join(DIALECTS)}")
    reads = [
        read
        for raw in find_groups(text, pixel_named=dialect == "pixel")
        if (read := _read_group(text, raw, dialect, width, height)) is not None
    ]
    masked = _mask(text, reads)
    entities: list[Entity] = []
    groups: list[BoxGroup] = []
    spans: list[tuple[int, int]] = []
    warnings: list[str] = []
    previous_end = 0
    for read in reads:
        raw = read.raw
        warnings += read.warnings
        cue = find_cue(text, previous_end, raw.start)
        spans += [*(cue.spans if cue else ()), (raw.start, raw.end)]
        if groups and re.fullmatch(r"[\s,;]*(?:(?:and|or|&)[\s,;]*)?", text[previous_end : raw.start], re.I):
            spans.append((previous_end, raw.start))
        entity_index = _add_entity(
            entities, read, _name(text, masked, cue, raw) if read.boxes else "", warnings
        )
        groups.append(
            BoxGroup(raw.start, raw.end, text[raw.start : raw.end], read.dialect, read.boxes, entity_index)
        )
        previous_end = raw.end
    seen_dialects = {read.dialect for read in reads if read.boxes}
    needs_size = (width is None or height is None) and any(read.dialect in SIZED_DIALECTS for read in reads)
    if needs_size:
        warnings.append(
            "boxes read without the image size are not places on the image (asmv2: fractions of the padded square)"
        )
    caption_dialect = seen_dialects.pop() if len(seen_dialects) == 1 else ("mixed" if seen_dialects else None)
    return PanopticCaption(
        text=text,
        entities=entities,
        groups=groups,
        plain_text=strip_spans(text, spans),
        warnings=warnings,
        malformed=sum(read.malformed for read in reads),
        clamped=sum(read.clamped for read in reads),
        dialect=caption_dialect,
        needs_size=needs_size,
    )


def read_boxes(
    text: str,
    dialect: str = "auto",
    image_size: tuple[int, int] | None = None,
    *,
    fix: str = "give the image's width and height",
) -> PanopticCaption:
    """The caption's entities with boxes as fractions of the (unpadded) image of ``image_size`` (width, height).

    The one way a consumer reads a caption's boxes. ``dialect`` is the caption's (its captioner's or dataset's,
    ``auto`` to tell each box by its form); ``asmv2`` is de-padded from the centred square here. A caption whose
    boxes need the size (``asmv2``, ``pixel``) when none is given is an :class:`~pancap_retrieval.errors.ImageSizeError`
    ending with ``fix``, never a box on a guessed frame.

    >>> read_boxes("the photo <box>[[0, 167, 1000, 833]]</box>", "asmv2", (451, 300)).boxes[0].as_list(2)
    [0.0, 0.0, 1.0, 1.0]
    >>> read_boxes("the photo <box>[[0, 167, 1000, 833]]</box>")
    Traceback (most recent call last):
    ...
    pancap_retrieval.errors.ImageSizeError: asmv2 boxes are read on the image's size, which is not known: give the image's width and height
    """
    width, height = image_size if image_size is not None else (None, None)
    if image_size is not None and not (width > 0 and height > 0):
        raise ImageSizeError(f"image size {width}x{height} is not a size: {fix}")
    if image_size is None and dialect in SIZED_DIALECTS:
        raise ImageSizeError(f"{dialect} boxes are read on the image's size, which is not known: {fix}")
    parsed = parse_caption(text, dialect, width, height)
    if parsed.needs_size:
        sized = sorted({g.dialect for g in parsed.groups if g.dialect in SIZED_DIALECTS})
        raise ImageSizeError(f"{' and '.join(sized)} boxes are read on the image's size, which is not known: {fix}")
    return parsed


def _add_entity(entities: list[Entity], read: _Read, name: str, warnings: list[str]) -> int | None:
    """Add the group's boxes to a new entity named ``name``, or to the last one when ``name`` is JOIN."""
    if not read.boxes:
        return None
    if name == JOIN and entities:
        entities[-1].boxes.extend(read.boxes)
        return len(entities) - 1
    if name in ("", JOIN):
        name = ""
        warnings.append(f"box at char {read.raw.start} has no phrase before it")
    entities.append(Entity(name, list(read.boxes)))
    return len(entities) - 1


def strip_boxes(text: str) -> str:
    """The caption as fluent plain text: boxes and the phrasing around them removed.

    >>> strip_boxes("A Starbucks napkin (bounding box: [[0.5, 0.3, 0.8, 0.5]]) lies on a table, positioned at [[0, 0.5, 1, 1]].")
    'A Starbucks napkin lies on a table.'
    >>> strip_boxes("Above it is the second flower, and the second flower's bounding box is [[0.15, 0.0, 0.53, 0.52]].")
    'Above it is the second flower, and the second flower.'
    """
    return parse_caption(text).plain_text


def format_caption(
    caption: PanopticCaption,
    dialect: str,
    width: int | None = None,
    height: int | None = None,
    ndigits: int = 3,
) -> str:
    """Write ``caption`` back with every valid box group in ``dialect``; malformed groups stay as they were."""
    pieces, cursor = [], 0
    for group in caption.groups:
        pieces.append(caption.text[cursor : group.start])
        if group.boxes:
            lead = group.raw[: len(group.raw) - len(group.raw.lstrip())]
            tail = group.raw[len(group.raw.rstrip()) :]
            pieces.append(lead + format_box_group(group.boxes, dialect, width, height, ndigits) + tail)
        else:
            pieces.append(group.raw)
        cursor = group.end
    pieces.append(caption.text[cursor:])
    return "".join(pieces)


def format_entities(
    entities: list[Entity], dialect: str = "asmv2", width: int | None = None, height: int | None = None
) -> str:
    """Entities as a tag list, the form of PancapChain's stage outputs: ``dog <box>[[..]]</box>, cat <box>..``.

    >>> format_entities([Entity("dog", [Box(0.1, 0.2, 0.3, 0.4)])], "norm")
    'dog [[0.1, 0.2, 0.3, 0.4]]'
    """
    return ", ".join(f"{e.phrase} {format_box_group(e.boxes, dialect, width, height)}" for e in entities)


def caption_from_dict(data: dict[str, Any]) -> list[Entity]:
    """Entities back from :meth:`PanopticCaption.to_dict` or a stored stage output."""
    return [Entity(e["phrase"], [Box(*b) for b in e["boxes"]]) for e in data["entities"]]


__all__ = [
    "BoxGroup",
    "Entity",
    "PanopticCaption",
    "caption_from_dict",
    "format_caption",
    "format_entities",
    "parse_caption",
    "read_boxes",
    "strip_boxes",
]
