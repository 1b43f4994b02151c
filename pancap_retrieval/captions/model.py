"""The panoptic caption model: parse every box dialect into entities, format back, strip for retrieval.

A caption is text with *box groups* in it. A box group is one bracketed run of boxes (``[[..]]``,
``<box>[[..], [..]]</box>``, or pixel ``[x1, y1, x2, y2]``) and belongs to the phrase before it; a group with no
phrase of its own before it (``two cameras [[..]] and [[..]]``) adds its boxes to the previous entity.
Malformed or truncated groups are counted and reported in ``warnings``; out-of-range boxes are clamped and flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pancap_retrieval.captions.boxes import DIALECTS, Box, format_box_group, to_normalised

_NUMBER = r"-?\d+(?:\.\d+)?"
# A group: <box>[[..]]</box> (the closing parts may be missing when truncated), a [[..]] run, or a single
# [n, n, n, n] quad (pixel dialect). Content is restricted to numbers, commas, brackets and spaces, so a group
# truncated mid-way ends where the prose resumes.
_GROUP = re.compile(
    r"<box>\s*\[\[[\d.,\s\[\]\-]*?(?:\]\]\s*</box>|(?=<box>)|(?=[^\d.,\s\[\]\-])|$)(?:\s*</box>)?"
    r"|\[\[[\d.,\s\[\]\-]*?(?:\]\]|(?=[^\d.,\s\[\]\-])|$)"
    rf"|\[\s*{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\](?!\])"
)
_QUAD_SPLIT = re.compile(r"\]\s*,\s*\[")

# Words that end a noun phrase when read backwards from a box (verbs, prepositions, conjunctions).
_BREAK_WORDS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "has",
        "have",
        "had",
        "with",
        "and",
        "or",
        "but",
        "in",
        "on",
        "at",
        "by",
        "from",
        "to",
        "into",
        "onto",
        "over",
        "under",
        "near",
        "behind",
        "above",
        "below",
        "beside",
        "besides",
        "between",
        "of",
        "as",
        "there",
        "here",
        "which",
        "that",
        "who",
        "whose",
        "it",
        "its",
        "consists",
        "consisting",
        "including",
        "includes",
        "include",
        "wearing",
        "holding",
        "showing",
        "shows",
        "show",
        "depicts",
        "depicting",
        "see",
        "seen",
        "visible",
        "located",
        "positioned",
        "situated",
        "placed",
        "found",
        "contains",
        "containing",
        "features",
        "featuring",
        "where",
        "while",
        "also",
        "while",
        "such",
        "like",
        "than",
        "then",
        "this",
        "these",
        "those",
        "image",
        "picture",
        "photo",
    ]
)
# The phrasing that introduces a box, removed together with it when boxes are stripped.
_INTRO = (
    r"(?:,?\s*(?:(?:which|that)\s+(?:is|are)\s+)?(?:positioned|located|situated|placed|found|spanning)\s+"
    r"(?:at|in|within|around)?"
    r"|,?\s*(?:with\s+)?(?:(?:its|their|the|a)\s+)?(?:[\w']+\s+)?bounding\s+box(?:es)?(?:\s+coordinates)?(?:\s+(?:is|are|being|of|at))?\s*:?"
    r"|\s*(?:within|inside|in)\s+the\s+(?:bounding\s+)?box"
    r"|\s*at\s+(?:the\s+)?coordinates"
    r"|\s*\bat\b)?\s*"
)


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


def _group_dialect(raw: str, values: list[list[float]], dialect: str, has_size: bool) -> str:
    if dialect != "auto":
        return dialect
    if raw.startswith("<box>"):
        return "asmv2"
    flat = [v for quad in values for v in quad]
    if all(v <= 1.0 for v in flat) or ("." in raw and max(flat, default=0) <= 2.0):
        return "norm"  # fractions, a little out of range at worst (clamped later)
    # [[..]] above 1 without a size is read on the 0..1000 scale; a single [..] quad is pixels
    return "pixel" if has_size or not raw.startswith("[[") else "asmv2"


def _quads(raw: str) -> tuple[list[list[float]], int, bool]:
    """The number lists of a group: (complete quads, malformed items, closed?)."""
    body = raw.removeprefix("<box>").removesuffix("</box>").strip()
    closed = body.endswith("]]") or (not body.startswith("[[") and body.endswith("]"))
    body = body.strip("[] \n\t")
    quads, malformed = [], 0
    for part in _QUAD_SPLIT.split(body) if body else []:
        numbers = [p.strip() for p in part.strip("[] ").split(",")]
        try:
            values = [float(n) for n in numbers]
        except ValueError:
            malformed += 1
            continue
        if len(values) == 4:
            quads.append(values)
        else:
            malformed += 1
    if not body:
        malformed += 1
    return quads, malformed, closed


def _clean_phrase(prefix: str) -> str:
    """The noun phrase at the end of ``prefix``: the words a box grounds."""
    text = re.sub(_INTRO + r"$", "", prefix, flags=re.IGNORECASE).rstrip(" \t\n(:,-")
    clause = re.split(r"[.;:!?\n()\[\]\"]|,\s", text)[-1]
    phrase = _noun_run(reversed(_words(clause)))[::-1]
    if not phrase:  # "The Shell logo is located at [[..]]": the subject of the sentence
        sentence = re.split(r"[.;!?\n]", text)[-1]
        phrase = _noun_run(iter(_words(sentence)), skip_leading=True)
    return " ".join(phrase).strip(" ,")


def _words(text: str) -> list[str]:
    words = [w.strip("*-_`'\"•()[]:,") for w in text.split()]
    return [w for w in words if w]


def _noun_run(words, skip_leading: bool = False) -> list[str]:
    """Words up to the first break word (at most 8); leading break words skipped when asked."""
    run: list[str] = []
    for word in words:
        if word.lower() in _BREAK_WORDS:
            if skip_leading and not run:
                continue
            break
        run.append(word)
        if len(run) >= 8:
            break
    return run


def _joins_previous(prefix: str) -> bool:
    """True when the text since the previous group only links boxes of the same phrase (``and``, ``,``)."""
    return re.fullmatch(r"[\s,;]*(?:and|or|&)?[\s,;]*", prefix, flags=re.IGNORECASE) is not None


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
    has_size = width is not None and height is not None
    entities: list[Entity] = []
    groups: list[BoxGroup] = []
    warnings: list[str] = []
    malformed = clamped = 0
    seen_dialects: set[str] = set()
    previous_end = 0
    for match in _GROUP.finditer(text):
        raw = match.group(0)
        quads, bad, closed = _quads(raw)
        if not closed:
            warnings.append(f"truncated box at char {match.start()}: {raw.strip()[:40]!r}")
        if bad:
            malformed += bad
            warnings.append(f"malformed box at char {match.start()}: {raw.strip()[:40]!r}")
        group_dialect = _group_dialect(raw, quads, dialect, has_size)
        boxes: list[Box] = []
        for quad in quads:
            try:
                values = to_normalised(quad, group_dialect, width, height)
            except ValueError as exc:
                malformed += 1
                warnings.append(f"box at char {match.start()} not normalised: {exc}")
                continue
            fixed = [min(1.0, max(0.0, v)) for v in values]
            if any(abs(a - b) > 1e-9 for a, b in zip(fixed, values)):
                clamped += 1
                warnings.append(f"box at char {match.start()} out of range {quad}, clamped")
            x1, y1, x2, y2 = fixed
            if x2 < x1 or y2 < y1:
                warnings.append(f"box at char {match.start()} has its corners swapped, reordered")
                x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            boxes.append(Box(x1, y1, x2, y2))
        entity_index: int | None = None
        if boxes:
            seen_dialects.add(group_dialect)
            prefix = text[previous_end : match.start()]
            if entities and groups and _joins_previous(prefix):
                entity_index = len(entities) - 1
                entities[entity_index].boxes.extend(boxes)
            else:
                phrase = _clean_phrase(prefix)
                if not phrase:
                    warnings.append(f"box at char {match.start()} has no phrase before it")
                entities.append(Entity(phrase, list(boxes)))
                entity_index = len(entities) - 1
        groups.append(BoxGroup(match.start(), match.end(), raw, group_dialect, boxes, entity_index))
        previous_end = match.end()
    if has_size is False and "asmv2" in seen_dialects:
        warnings.append("asmv2 boxes read without the image size: the image was taken as square")
    caption_dialect = seen_dialects.pop() if len(seen_dialects) == 1 else ("mixed" if seen_dialects else None)
    return PanopticCaption(
        text=text,
        entities=entities,
        groups=groups,
        plain_text=_strip(text, groups),
        warnings=warnings,
        malformed=malformed,
        clamped=clamped,
        dialect=caption_dialect,
    )


_SENTINEL = "\x00"


def _strip(text: str, groups: list[BoxGroup]) -> str:
    pieces, cursor = [], 0
    for group in groups:
        pieces.append(text[cursor : group.start])
        pieces.append(_SENTINEL)
        cursor = group.end
    pieces.append(text[cursor:])
    out = "".join(pieces)
    run = rf"{_SENTINEL}(?:\s*(?:,|and|or|&)?\s*{_SENTINEL})*"
    # "(bounding box: [[..]] and [[..]])" and "([[..]])" vanish whole; then the phrasing that introduces a box.
    out = re.sub(rf"\s*\(\s*(?:[^()\n{_SENTINEL}]{{0,40}}?:\s*)?{run}\s*\)", "", out)
    out = re.sub(_INTRO + run, "", out, flags=re.IGNORECASE)
    out = out.replace(_SENTINEL, "")
    out = re.sub(r"\(\s*\)", "", out)
    out = re.sub(r"[ \t]+([,.;:!?)])", r"\1", out)
    out = re.sub(r"([,;])(?:\s*[,;])+", r"\1", out)
    out = re.sub(r",\s*\.", ".", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r" *\n *", "\n", out)
    return out.strip()


def strip_boxes(text: str) -> str:
    """The caption as fluent plain text: boxes and the phrasing around them removed.

    >>> strip_boxes("A Starbucks napkin (bounding box: [[0.5, 0.3, 0.8, 0.5]]) lies on a table, positioned at [[0, 0.5, 1, 1]].")
    'A Starbucks napkin lies on a table.'
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
    "strip_boxes",
]
