"""Where the boxes are in a caption: bracketed number lists in a box context, read token by token.

A number list is a box group only in a box context for its dialect:

- ASMv2 ``<box>[[..]]</box>`` tags (the closing parts may be missing when a caption was cut off);
- double brackets ``[[..]]`` (any depth: ``[[[..]]]`` is one group), the form of ``norm`` and of ASMv2 stage
  outputs;
- a single ``[x1, y1, x2, y2]`` list after a box cue (``positioned at``, ``located at``, ``bounding box``,
  ``bbox``, ``coordinates``, ...), or right after another group (``at [..], [..] and [..]``), or anywhere when the
  caller names the ``pixel`` dialect and the four numbers are a valid box of the image.

Numbers are decimal, scientific (``2e-1``) or ``nan``/``inf`` (read, then rejected as coordinates). A group is
scanned bracket by bracket, so it ends exactly where its brackets close, or, cut off, where prose resumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?(?![A-Za-z0-9_])"
_NON_FINITE = r"[-+]?(?:nan|inf(?:inity)?)(?![A-Za-z0-9_])"
_TOKEN = re.compile(rf"(?P<space>\s+)|(?P<punct>[\[\],])|(?P<number>{_NUMBER}|(?i:{_NON_FINITE}))")
_BOX_OPEN = re.compile(r"<box>\s*(?=\[)", re.IGNORECASE)
_BOX_CLOSE = re.compile(r"\s*</box>", re.IGNORECASE)

# "bounding box" (and its common misspellings), "bbox", and "(box:"
BOX_WORD = r"(?:b(?:ou?n?d\w{0,4}[\s-]*box(?:es)?|box(?:es)?)|(?<=\()box(?=\s*[:=]))"
# Cues strong enough to make a single [x1, y1, x2, y2] list a pixel box.
PIXEL_CUE = re.compile(
    r"(?:\b(?:positioned|located|situated|placed|found|centered|centred|seen|visible|shown|standing|sitting|lying)"
    r"\s+(?:at|in|within|around|inside|on)"
    rf"|\b{BOX_WORD}(?:\s+coordinates)?(?:\s+(?:is|are|of|at|as|=))?"
    rf"|\b{BOX_WORD}\s+(?:of|for)\s+[^.;:!?\n\[\]()<>]{{1,60}}?\s+(?:is|are)"
    r"|\bcoordinates?(?:\s+(?:is|are|of|at))?"
    r"|\b(?:at|in)\s+(?:the\s+)?(?:position|location|region)s?(?:\s+of)?"
    r"|\b(?:occupying|spanning|covering)(?:\s+(?:the\s+)?(?:area|region))?)"
    r"\s*[:=]?\s*\(?\s*$",
    re.IGNORECASE,
)
_JOINER = re.compile(r"[\s,;]*(?:(?:and|or|&)[\s,;]*)?", re.IGNORECASE)


@dataclass
class RawGroup:
    """One bracketed run of number lists: its span, the lists as number strings, and how it was closed."""

    start: int
    end: int
    kind: str  # "asmv2" (a <box> tag), "double" ([[..]]) or "single" ([..])
    lists: list[list[str]]
    closed: bool
    stray: int = 0  # numbers outside any innermost list, e.g. "[[1, 2, 3, 4], 5]"
    candidate: bool = False  # a cue-less [..] in the pixel dialect: a box only if its numbers are one


def _scan_lists(text: str, pos: int) -> tuple[int, list[list[str]], bool, int, int]:
    """Read bracket tokens from ``pos`` (at a ``[``): (end, innermost lists, closed?, stray numbers, depth)."""
    depth = max_depth = stray = 0
    lists: list[list[str]] = []
    current: list[str] | None = None
    end = pos
    closed = False
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            break
        token, pos = match.group(0), match.end()
        if match.lastgroup == "space":
            continue
        if token == "[":
            depth += 1
            max_depth = max(max_depth, depth)
            current = []
        elif token == "]":
            if current is not None:
                lists.append(current)
                current = None
            depth -= 1
            if depth == 0:
                end, closed = pos, True
                break
        elif token != ",":
            if current is None:
                stray += 1
            else:
                current.append(token)
        end = pos
    if not closed and current:
        lists.append(current)
    return end, lists, closed, stray, max_depth


def _follows_group(text: str, pos: int, previous_end: int | None) -> bool:
    if previous_end is None:
        return False
    match = _JOINER.fullmatch(text, previous_end, pos)
    return match is not None


def find_groups(text: str, pixel_named: bool = False) -> list[RawGroup]:
    """Every box group of ``text`` in order (see the module docstring for what counts as one).

    A single list without a cue is returned as a candidate (``kind="single"``, ``closed``) only when
    ``pixel_named``; the caller keeps it as a box only if its numbers are a valid box.

    >>> [(g.kind, g.lists) for g in find_groups("a dog [[0.1, 2e-1, 0.3, 0.4]] and the [1, 2, 3, 4] steps")]
    [('double', [['0.1', '2e-1', '0.3', '0.4']])]
    >>> [(g.kind, g.lists) for g in find_groups("a dog, positioned at [1, 2, 3, 4]")]
    [('single', [['1', '2', '3', '4']])]
    """
    groups: list[RawGroup] = []
    pos = 0
    previous_end: int | None = None
    while True:
        found = text.find("[", pos)
        tag = _BOX_OPEN.search(text, pos, found + 1) if found >= 0 else None
        if tag is not None:
            start, open_at, kind = tag.start(), tag.end(), "asmv2"
        elif found >= 0:
            start, open_at = found, found
            kind = "double" if text.startswith("[[", found) else "single"
        else:
            break
        end, lists, closed, stray, depth = _scan_lists(text, open_at)
        if kind == "single" and depth > 1:
            kind = "double"
        if kind == "asmv2" and closed:
            close = _BOX_CLOSE.match(text, end)
            end = close.end() if close else end
        candidate = False
        if kind == "single":
            keep = _single_is_group(text, start, lists, stray, previous_end)
            candidate = not keep and pixel_named and closed and len(lists) == 1 and len(lists[0]) == 4
            keep = keep or candidate
        else:  # "[[" with no number in it is a box only when closed or cut off at the end of the text
            keep = closed or any(lists) or stray > 0 or not text[end:].strip()
        if not keep:
            pos = start + 1
            continue
        groups.append(RawGroup(start, end, kind, lists, closed, stray, candidate))
        previous_end = end
        pos = max(end, start + 1)
    return groups


def _single_is_group(
    text: str, start: int, lists: list[list[str]], stray: int, previous_end: int | None
) -> bool:
    """A single ``[..]`` list of numbers is a group after a box cue or right after another group."""
    if not lists or stray or not any(lists[0]):
        return False
    return bool(PIXEL_CUE.search(text, max(0, start - 80), start)) or _follows_group(
        text, start, previous_end
    )


__all__ = ["PIXEL_CUE", "RawGroup", "find_groups"]
