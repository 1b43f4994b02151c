"""The phrasing that introduces a box, and the caption with every box and that phrasing taken out.

A cue is read backwards from a box, within its sentence. The forms, with what stays of them in the plain text:

- ``X's bounding box is [[..]]`` -> ``X``; ``the bounding box of X is [[..]]`` -> ``X``;
- ``X, with its/a/the bounding box (of|at) [[..]]`` -> ``X``; ``(bounding box: [[..]])`` and ``([[..]])`` vanish;
- ``Its/Her bounding box is [[..]]`` and ``It is located at [[..]]`` vanish whole (the entity is named before);
- ``X (is|, and) positioned/located/situated at [[..]]``, ``X is at [[..]]``, ``at the position [[..]]``,
  ``with (bounding box) coordinates [[..]]``, ``, occupying [[..]]`` -> ``X``;
- boxes in a row (``[[..]], [[..]] and [[..]]``) go with the words that join them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pancap_retrieval.captions.groups import BOX_WORD
from pancap_retrieval.captions.phrases import CONJUNCTIONS, PREPOSITIONS

_TAIL = r"(?:\s+(?:approximately|roughly|about|around))?\s*[:=]?\s*$"
_BE = r"(?:\s+(?:is|are|was|were|at|of|as))*"
_WHERE = r"(?:coordinates|location|position)"
_FORMS: list[tuple[str, re.Pattern[str]]] = [
    (
        "of",
        re.compile(
            rf"\b(?:the\s+)?(?:{BOX_WORD}(?:\s+coordinates)?|{_WHERE})\s+(?:of|for)\s+(?P<entity>[^.;:!?\n\[\]()<>]{{1,60}}?)"
            r"\s*(?:\b(?:is|are|was|were)\b(?:\s+(?:at|of))?|[:=])\s*$",
            re.IGNORECASE,
        ),
    ),
    (
        "possessive",
        re.compile(
            rf"(?<=\w)(?:'s|’s|'|’)\s*(?:{BOX_WORD}(?:\s+coordinates)?|{_WHERE}){_BE}{_TAIL}", re.IGNORECASE
        ),
    ),
    (
        "pronoun",
        re.compile(
            rf"(?:,\s*)?(?:\b(?:and|with|while)\s+)?\b(?:its|their|thier|his|her|whose)\s+"
            rf"(?:{BOX_WORD}(?:\s+coordinates)?|{_WHERE}){_BE}{_TAIL}"
            r"|\b(?:it|they|he|she)\s+(?:is|are|was|were)\s+(?:positioned|located|situated|placed|found|seen|visible)"
            rf"\s+(?:at|in|within){_TAIL}",
            re.IGNORECASE,
        ),
    ),
    (
        "box",
        re.compile(
            rf"(?:,\s*)?(?:\b(?:with|has|have|having|and|occupying|within|inside|in|at|of|by)\s+)?(?:\b(?:the|a|an)\s+)?"
            rf"{BOX_WORD}(?:\s+coordinates)?{_BE}{_TAIL}",
            re.IGNORECASE,
        ),
    ),
    (
        "located",
        re.compile(
            r"(?:,\s*)?(?:\band\s+)?(?:\b(?:which|that|who)\s+)?(?:\b(?:is|are|was|were|be|being|been|can|could|may|"
            r"might|also)\s+)*\b(?:positioned|located|situated|placed|found|centered|centred|seen|visible|shown|"
            r"standing|sitting|lying|depicted)\s+(?:at|in|within|around|inside|on)"
            rf"(?:\s+(?:the\s+)?(?:position|coordinates|location|region|area)s?)?(?:\s+of)?{_TAIL}",
            re.IGNORECASE,
        ),
    ),
    (
        "coordinates",
        re.compile(
            rf"(?:,\s*)?(?:\b(?:with|at|of|has|having)\s+)?(?:\b(?:the|its|their)\s+)?\bcoordinates?(?:\s+(?:of|at|are|is))?{_TAIL}",
            re.IGNORECASE,
        ),
    ),
    (
        "position",
        re.compile(
            rf"(?:,\s*)?\b(?:(?:is|are)\s+)?(?:at|in)\s+(?:the\s+)?(?:position|location|region)s?(?:\s+of)?{_TAIL}",
            re.IGNORECASE,
        ),
    ),
    (
        "occupying",
        re.compile(
            rf",\s*(?:occupying|spanning|covering|filling)(?:\s+(?:the\s+)?(?:area|region|space))?(?:\s+of)?{_TAIL}",
            re.IGNORECASE,
        ),
    ),
    ("at", re.compile(rf"(?:,\s*)?\b(?:(?:is|are)\s+)?(?:at|within|from){_TAIL}", re.IGNORECASE)),
]
_WINDOW = 160
# Every cue form ends with one of these words or signs; a box after anything else has no cue.
_CUE_END = re.compile(
    r"(?:\b(?:at|in|on|within|around|inside|from|of|is|are|was|were|as|box|boxes|bbox|bboxes|coordinates?|"
    r"positions?|locations?|regions?|areas?|space|approximately|roughly|about|occupying|spanning|covering|filling)"
    r"|[:=])\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Cue:
    """The words that introduce one box: the spans they occupy and, for ``the bounding box of X``, X's span."""

    form: str
    start: int
    spans: tuple[tuple[int, int], ...]
    entity: tuple[int, int] | None = None


def find_cue(text: str, lo: int, start: int) -> Cue | None:
    """The cue that ends right before a box at ``start`` (not reaching back before ``lo``), if any."""
    lo = max(lo, start - _WINDOW)
    if not _CUE_END.search(text, lo, start):
        return None
    best: tuple[int, int, str, re.Match[str]] | None = None
    for order, (form, pattern) in enumerate(_FORMS):
        match = pattern.search(text, lo, start)
        if match and (best is None or (match.start(), order) < best[:2]):
            best = (match.start(), order, form, match)
    if best is None:
        return None
    begin, _, form, match = best
    if form == "of":
        entity = match.span("entity")
        return Cue(form, begin, ((begin, entity[0]), (entity[1], start)), entity)
    return Cue(form, begin, ((begin, start),))


# ---------------------------------------------------------------------------------------------- stripping

_KEEP_COMMA_BEFORE = CONJUNCTIONS | PREPOSITIONS | {"next", "then"}
_PAREN = re.compile(r"\s*\(([^()]*)\)")


def strip_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without ``spans`` (boxes and their cues), tidied into fluent text.

    Whole parentheticals that held only a box and its cue go; of the two commas around a removed aside one is
    kept before a conjunction or preposition (``a dog, next to a tree``) and none before a verb
    (``The woman stands``); a sentence that lost its first word is capitalised again.
    """
    removed = _merge(spans)
    removed = _merge(removed + _parentheticals(text, removed))
    removed = _merge(removed + _aside_commas(text, removed) + _dangling(text, removed))
    pieces, cursor = [], 0
    for a, b in removed:
        pieces.append(text[cursor:a])
        if text[a].isupper() and _at_sentence_start(text, a):
            pieces.append("\x02")  # capitalise what follows
        cursor = b
    pieces.append(text[cursor:])
    out = re.sub(r"\x02([\s*_`\"'“(]*)(\w)", lambda m: m.group(1) + _upper(m.group(2)), "".join(pieces))
    return _tidy(out.replace("\x02", ""))


def _upper(char: str) -> str:
    upper = char.upper()
    return upper if len(upper) == 1 else char


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(span for span in spans if span[1] > span[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _at_sentence_start(text: str, index: int) -> bool:
    before = re.sub(r"[*_`#>\s\-\"“(]+$", "", text[max(0, index - 40) : index])
    return not before or before[-1] in ".!?:\n"


def _parentheticals(text: str, removed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parentheses left holding nothing, or only the name of what a removed box cue inside them named."""
    out = []
    for match in _PAREN.finditer(text):
        inner = [(max(a, match.start(1)), min(b, match.end(1))) for a, b in removed]
        inner = [(a, b) for a, b in inner if b > a]
        if not inner:
            continue
        gone = "".join(text[a:b] for a, b in inner)
        left, cursor = [], match.start(1)
        for a, b in inner:
            left.append(text[cursor:a])
            cursor = b
        left.append(text[cursor : match.end(1)])
        rest = "".join(left)
        if not re.search(r"\w", rest) or (
            re.search(r"box|coordinates|located|positioned", gone) and len(rest.split()) <= 6
        ):
            out.append(match.span())
    return out


def _dangling(text: str, removed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The colon or dash of ``- dog: [[..]]`` and ``**Cat** - located at [[..]]`` when the box ended the line."""
    out = []
    for a, b in removed:
        if re.match(r"[ \t]*(?:\n|$)", text[b:]):
            lead = re.search(r"(?:[ \t]+[-–—]+|[ \t]*:)[ \t]*$", text[max(0, a - 8) : a])
            if lead:
                out.append((a - len(lead.group(0)), a))
    return out


def _aside_commas(text: str, removed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The second comma of ``X, positioned at [[..]], stands``: dropped unless a conjunction or preposition follows."""
    out = []
    for a, b in removed:
        if not text[a:b].lstrip().startswith(","):
            continue
        after = re.match(r"\s*,\s*([^\W\d_][\w'’]*)", text[b:])
        if after and after.group(1).lower() not in _KEEP_COMMA_BEFORE:
            comma = b + after.group(0).index(",")
            out.append((comma, comma + 1))
    return out


def _tidy(out: str) -> str:
    out = re.sub(r"\(\s*\)", "", out)
    out = re.sub(r"([.!?])[ \t]+\.(?!\.)", r"\1", out)
    out = re.sub(r"[ \t]+([,.;:!?)])", r"\1", out)
    out = re.sub(r"([,;])(?:\s*[,;])+", r"\1", out)
    out = re.sub(r"[,;:]\s*([.!?])", r"\1", out)
    out = re.sub(r"(^|\n)[ \t]*[,.;:]+[ \t]*", r"\1", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r" *\n *", "\n", out)
    return out.strip()


__all__ = ["Cue", "find_cue", "strip_spans"]
