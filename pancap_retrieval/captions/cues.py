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

from pancap_retrieval.captions.groups import _BB

_TAIL = r"(?:\s+(?:approximately|roughly|about|around))?\s*[:=]?\s*$"
_BE = r"(?:\s+(?:is|are|was|were|at|of|as))*"
_FORMS: list[tuple[str, re.Pattern[str]]] = [
    (
        "of",
        re.compile(
            rf"\b(?:the\s+)?{_BB}(?:\s+coordinates)?\s+(?:of|for)\s+(?P<entity>[^.;:!?\n\[\]()<>]{{1,60}}?)"
            r"\s*(?:\b(?:is|are|was|were)\b(?:\s+(?:at|of))?|[:=])\s*$",
            re.IGNORECASE,
        ),
    ),
    ("possessive", re.compile(rf"(?<=\w)(?:'s|’s|'|’)\s*{_BB}(?:\s+coordinates)?{_BE}{_TAIL}", re.IGNORECASE)),
    (
        "pronoun",
        re.compile(
            rf"(?:,\s*)?(?:\b(?:and|with|while)\s+)?\b(?:its|their|thier|his|her)\s+{_BB}(?:\s+coordinates)?{_BE}{_TAIL}"
            r"|\b(?:it|they|he|she)\s+(?:is|are|was|were)\s+(?:positioned|located|situated|placed|found|seen|visible)"
            rf"\s+(?:at|in|within){_TAIL}",
            re.IGNORECASE,
        ),
    ),
    (
        "box",
        re.compile(
            rf"(?:,\s*)?(?:\b(?:with|has|have|having|and|occupying|within|inside|in|at|of|by)\s+)?(?:\b(?:the|a|an)\s+)?"
            rf"{_BB}(?:\s+coordinates)?{_BE}{_TAIL}",
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

_KEEP_COMMA_BEFORE = frozenset(
    ["and", "or", "but", "nor", "yet", "so", "while", "whereas", "which", "who", "where", "when", "as", "with", "without", "near", "next", "beside", "behind", "above", "below", "under", "over", "in", "on", "at", "to", "from", "by", "along", "across", "around", "between", "among", "against", "toward", "towards", "then"]
)
_PAREN = re.compile(r"\s*\(([^()]*)\)")


def strip_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without ``spans`` (boxes and their cues), tidied into fluent text.

    Whole parentheticals that held only a box and its cue go; of the two commas around a removed aside one is
    kept before a conjunction or preposition (``a dog, next to a tree``) and none before a verb
    (``The woman stands``); a sentence that lost its first word is capitalised again.
    """
    removed = bytearray(len(text))
    for a, b in spans:
        removed[a:b] = b"\x01" * (b - a)
    _remove_parentheticals(text, removed)
    _remove_aside_commas(text, removed)
    out: list[str] = []
    capitalise = False
    for index, char in enumerate(text):
        if removed[index]:
            if index == 0 or not removed[index - 1]:
                capitalise = capitalise or (char.isupper() and _at_sentence_start(text, index))
            continue
        if capitalise and char.isalpha():
            char = char.upper()
            capitalise = False
        elif capitalise and not char.isspace() and char not in "*_`\"'“(":
            capitalise = False
        out.append(char)
    return _tidy("".join(out))


def _at_sentence_start(text: str, index: int) -> bool:
    before = re.sub(r"[*_`#>\s\-\"“(]+$", "", text[:index])
    return not before or before[-1] in ".!?:\n"


def _remove_parentheticals(text: str, removed: bytearray) -> None:
    for match in _PAREN.finditer(text):
        inner = range(match.start(1), match.end(1))
        if not any(removed[i] for i in inner):
            continue
        left = "".join(text[i] for i in inner if not removed[i])
        cue_inside = re.search(r"box|coordinates|located|positioned", "".join(text[i] for i in inner if removed[i]))
        if not re.search(r"\w", left) or (cue_inside and len(left.split()) <= 6):
            removed[match.start() : match.end()] = b"\x01" * (match.end() - match.start())


def _remove_aside_commas(text: str, removed: bytearray) -> None:
    index = 0
    while index < len(text):
        if not removed[index]:
            index += 1
            continue
        end = index
        while end < len(text) and removed[end]:
            end += 1
        if text[index:end].lstrip().startswith(","):
            after = re.match(r"\s*,\s*([^\W\d_][\w'’]*)", text[end:])
            if after and after.group(1).lower() not in _KEEP_COMMA_BEFORE:
                comma = end + after.group(0).index(",")
                removed[comma] = 1
        index = end


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
