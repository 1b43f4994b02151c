"""Which entity a box grounds: the noun phrase a caption names it with, read from the words around the box.

Captions ground a box in many phrasings: ``X [[..]]``, ``X is positioned at the left side of the image [[..]]``,
``X's bounding box is [[..]]``, ``the bounding box of X is [[..]]``, ``X, with its bounding box of [[..]]``,
``Her bounding box is [[..]]`` (the entity named before), ``**Boy 1** ([[..]])``, ``In the corner [[..]] lies X``.
The reader works on words with a small closed-class lexicon (determiners, pronouns, prepositions, auxiliaries,
common verbs and adverbs) and a few rules, so it needs no model and gives the same answer on every install:

1. read back from the box (or from the cue before it) to the nearest noun phrase: its head is the last word, its
   left edge a determiner, and ``N1 of N2`` is one phrase (``the main part of the church``);
2. skip phrases that say *where* rather than *what*: a locative prepositional phrase whose head is a place word
   (``at the left side of the image``, ``in the top right corner``), ``without X``, a predicate adjective
   (``is large``), a prepositional phrase cut off by a comma (``The woman on the left, positioned at``);
3. a pronoun (``It``, ``Her bounding box``) is the subject of the nearest earlier sentence that names one;
4. with nothing before the box in its sentence, read forward (``In the upper right part [[..]] lies a creature``).

:func:`head_noun` gives a phrase's head noun; in ``N1 of N2`` it is N2's when N1 is a part or quantity word
(``a piece of debris`` -> ``debris``, ``one of his shoes`` -> ``shoes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

JOIN = "\x01join"  # the box belongs to the entity of the box before it

DETERMINERS = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "some", "several", "many", "few", "each", "every", "both", "another", "any", "no", "all", "either", "neither", "my", "your", "his", "her", "its", "our", "their", "thier", "whose", "such"]
)
NUMERALS = frozenset(
    ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "twenty", "dozen"]
)
PRONOUNS = frozenset(["it", "he", "she", "they", "him", "them", "itself", "himself", "herself", "themselves"])
PREPOSITIONS = frozenset(
    ["at", "in", "on", "of", "to", "from", "with", "without", "within", "inside", "into", "onto", "over", "under", "beneath", "underneath", "below", "above", "behind", "beside", "besides", "between", "among", "amid", "amidst", "around", "near", "by", "along", "across", "against", "through", "toward", "towards", "upon", "off", "via", "about", "beyond", "like", "past", "per", "throughout", "atop", "alongside", "outside", "for", "during", "except"]
)
# Prepositions whose object says where something is (a box after "in the top right corner" is not the corner's).
LOCATIVE = frozenset(
    ["at", "in", "on", "to", "from", "within", "inside", "into", "onto", "over", "under", "beneath", "underneath", "below", "above", "behind", "beside", "between", "among", "around", "near", "by", "along", "across", "toward", "towards", "upon", "atop", "throughout", "alongside", "outside"]
)
CONJUNCTIONS = frozenset(
    ["and", "or", "but", "nor", "yet", "so", "while", "whereas", "although", "though", "because", "if", "than", "as", "where", "when", "which", "who", "whom", "what", "whereby", "whether"]
)
COPULAS = frozenset(
    ["is", "are", "was", "were", "be", "been", "being", "am", "appears", "appear", "seems", "seem", "looks", "look", "remains", "remain", "becomes", "become"]
)
AUXILIARIES = frozenset(["has", "have", "had", "do", "does", "did", "can", "could", "may", "might", "must", "shall", "should", "will", "would"])
ADVERBS = frozenset(
    ["also", "very", "too", "quite", "rather", "just", "only", "still", "even", "almost", "nearly", "mostly", "mainly", "partly", "partially", "slightly", "approximately", "roughly", "about", "somewhat", "fairly", "here", "there", "then", "now", "further", "furthermore", "additionally", "lastly", "finally", "specifically", "moreover", "however", "not", "never", "always", "often", "sometimes", "perhaps", "possibly", "probably", "likely", "clearly", "directly", "centrally", "vertically", "horizontally", "diagonally", "together", "apart", "away", "back", "up", "down", "out", "forward", "upward", "upwards", "downward", "downwards", "inward", "outward", "overall", "respectively", "instead", "altogether"]
)
# -ly words that are nouns, not adverbs.
LY_NOUNS = frozenset(
    ["family", "belly", "lily", "jelly", "fly", "butterfly", "dragonfly", "firefly", "ally", "rally", "assembly", "supply", "anomaly", "monopoly", "bully", "gully", "holly", "folly", "doily", "reply", "ply", "jolly", "melancholy", "trolly"]
)
# Verb forms that do not end a noun phrase (inflected forms common in image descriptions).
VERB_FORMS = frozenset(
    ["sits", "wears", "holds", "appears", "seems", "lies", "hangs", "rests", "depicts", "consists", "occupies", "spans", "extends", "stretches", "leans", "emerges", "protrudes", "surrounds", "overlooks", "contains", "includes", "shows", "reveals", "captures", "stands", "walks", "runs", "swims", "flows", "grows", "floats", "rises", "points", "moves", "sitting", "standing", "lying", "wearing", "holding", "showing", "depicting", "containing", "including", "consisting", "featuring", "occupying", "spanning", "covering", "looking", "facing", "carrying", "riding", "walking", "running", "playing", "hanging", "resting", "leaning", "reaching", "stretching", "extending", "surrounding", "supporting", "displaying", "reading", "smiling", "posing", "flying", "floating", "growing", "perched", "located", "positioned", "situated", "placed", "found", "seen", "visible", "shown", "depicted", "centered", "centred", "attached", "mounted", "made", "covered", "filled", "dressed", "adorned", "decorated", "painted", "printed", "written", "labeled", "labelled", "marked", "lit", "partially", "invisible", "present", "prominent", "noticeable", "discernible", "evident", "apparent"]
)
# Heads of phrases that say where rather than what.
PLACE_WORDS = frozenset(
    ["left", "right", "top", "bottom", "middle", "center", "centre", "side", "sides", "corner", "corners", "edge", "edges", "foreground", "background", "midground", "half", "halves", "quadrant", "region", "front", "rear", "distance", "frame", "image", "picture", "photo", "photograph", "scene", "view", "position", "location", "spot", "apex", "tip", "upper", "lower", "higher", "lowest", "highest", "leftmost", "rightmost", "topmost", "bottommost", "further", "farther", "closer", "nearer", "inner", "outer"]
)
FRAME_WORDS = frozenset(["image", "picture", "photo", "photograph", "scene", "frame", "view", "shot"])
POSITION_ADJECTIVES = frozenset(
    ["left", "right", "top", "bottom", "upper", "lower", "middle", "central", "center", "centre", "front", "back", "rear", "far", "near", "inner", "outer"]
)
PLACE_IF_POSITIONED = frozenset(["part", "portion", "section", "area", "areas", "parts", "portions", "sections"])
OCCUPY_VERBS = frozenset(
    ["occupies", "occupy", "occupying", "covers", "cover", "covering", "spans", "span", "spanning", "fills", "fill", "filling", "takes", "taking"]
)
META_HEADS = frozenset(["image", "picture", "photo", "photograph", "scene", "view", "illustration", "drawing", "painting"])
# In "N1 of N2" the head is N2's when N1 is one of these (parts, groups, amounts).
PARTITIVES = frozenset(
    ["part", "parts", "portion", "portions", "piece", "pieces", "pair", "pairs", "group", "groups", "cluster", "clusters", "bunch", "bunches", "set", "sets", "row", "rows", "line", "lines", "column", "columns", "stack", "stacks", "pile", "piles", "collection", "number", "lot", "lots", "couple", "handful", "series", "array", "variety", "range", "patch", "patches", "section", "sections", "segment", "segments", "strip", "strips", "slice", "slices", "chunk", "chunks", "bit", "bits", "clump", "clumps", "mass", "expanse", "stretch", "swath", "crowd", "herd", "flock", "team", "kind", "kinds", "type", "types", "sort", "sorts", "rest", "majority", "remainder", "most", "all", "some", "many", "several", "each", "both", "none", "any", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "few", "half", "layer", "layers"]
)
_OCCUPYING = frozenset(["occupies", "occupying", "covers", "covering", "spans", "spanning", "fills", "filling", "takes", "taking"])
_ADJECTIVE_ENDINGS = ("ed", "ous", "ful", "ive", "ic", "al", "ish", "like", "less", "y")
COMMON_ADJECTIVES = frozenset(
    ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "gray", "silver", "golden", "gold", "beige", "dark", "light", "bright", "pale", "deep", "small", "large", "big", "tall", "short", "long", "wide", "narrow", "thick", "thin", "old", "young", "new", "round", "square", "flat", "smooth", "rough", "soft", "hard", "wooden", "metal", "plastic", "tiny", "huge", "vast", "little", "clear"]
)

_TOKEN = re.compile(r"\x00+|[^\W_](?:[\w'’\-.]*[^\W_])?['’]?|[,;:()\"“”]")
_SENTENCE_END = re.compile(r"[.!?](?=[\s\"”*)\x00]|$)|\n|;")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower().rstrip("'’")

    @property
    def is_box(self) -> bool:
        return self.text.startswith("\x00")

    @property
    def is_word(self) -> bool:
        return not self.is_box and (self.text[0].isalnum())

    @property
    def is_number(self) -> bool:
        return self.text[0].isdigit()


def sentence_start(masked: str, pos: int) -> int:
    """Index where the sentence holding ``pos`` starts (after ``.``/``!``/``?``/``;`` or a line break)."""
    start = 0
    for match in _SENTENCE_END.finditer(masked, 0, pos):
        start = match.end()
    return start


def sentence_end(masked: str, pos: int) -> int:
    match = _SENTENCE_END.search(masked, pos)
    return match.start() if match else len(masked)


def tokens(masked: str, lo: int, hi: int) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(masked, lo, hi)]


def _closed(low: str) -> bool:
    return low in DETERMINERS or low in PREPOSITIONS or low in CONJUNCTIONS or low in COPULAS or (
        low in AUXILIARIES or low in PRONOUNS or low in {"there", "here", "not", "to"}
    )


def _adverb(low: str) -> bool:
    return low in ADVERBS or (low.endswith("ly") and len(low) > 4 and low not in LY_NOUNS)


def _participle(low: str) -> bool:
    return low.endswith("ed") and len(low) > 4 and not low.endswith("eed")


def can_be_head(token: Token) -> bool:
    """Whether ``token`` can end a noun phrase."""
    if not token.is_word or token.is_number:
        return False
    low = token.low
    return not (
        _closed(low) or _adverb(low) or low in VERB_FORMS or _participle(low) or low in NUMERALS or low in _OCCUPYING
    )


def _modifier(token: Token) -> bool:
    if not token.is_word:
        return False
    low = token.low
    if token.is_number:
        return True
    return not (_closed(low) or _adverb(low) or (low in VERB_FORMS and not low.endswith(("ing", "ed"))))


def _determiner(low: str) -> bool:
    return low in DETERMINERS or low in NUMERALS or low.isdigit()


def _adjective_like(low: str) -> bool:
    return low in COMMON_ADJECTIVES or low.endswith(_ADJECTIVE_ENDINGS)


def _quantifier(token: Token) -> bool:
    return token.low in NUMERALS or token.low in {"some", "many", "several", "each", "all", "both", "most", "none"}


def np_backward(toks: list[Token], i: int) -> tuple[int, int] | None:
    """The noun phrase ending just before ``toks[i]``, as a token range ``(start, end)``, or None."""
    end = i
    if end >= 2 and toks[end - 1].is_number and can_be_head(toks[end - 2]):  # "Boy 1", "person 2"
        head = end - 2
    elif end >= 1 and can_be_head(toks[end - 1]):
        head = end - 1
    else:
        return None
    start = head
    closed_by_determiner = False
    while start > 0 and end - start < 8:
        word = toks[start - 1]
        if word.is_word and _determiner(word.low):
            start -= 1
            closed_by_determiner = True
            break
        if word.text == "," and start >= 2 and _adjective_like(toks[start - 2].low) and _modifier(toks[start - 2]):
            start -= 1  # "a dark, woven placemat": the comma between two adjectives
            continue
        if not _modifier(word):
            break
        start -= 1
    if not closed_by_determiner:  # without a determiner a participle or verb form is not inside the phrase
        while start < head and not can_be_head(toks[start]) and not _adjective_like(toks[start].low):
            start += 1
        while start < head and toks[start].text == ",":
            start += 1
    return _with_of(toks, start, end)


def _with_of(toks: list[Token], start: int, end: int) -> tuple[int, int]:
    """Extend a phrase leftwards over ``N1 of``: ``the church`` -> ``the main part of the church``."""
    while start >= 2 and toks[start - 1].low == "of":
        left = toks[start - 2]
        if _quantifier(left):
            start -= 2
            if start > 0 and _determiner(toks[start - 1].low):
                start -= 1
            continue
        outer = np_backward(toks, start - 1)
        if outer is None:
            break
        start = outer[0]
    return start, end


def np_forward(toks: list[Token], k: int) -> tuple[int, int] | None:
    """The noun phrase starting at ``toks[k]``, or None."""
    j = k
    if j < len(toks) and toks[j].is_word and _quantifier(toks[j]) and j + 1 < len(toks) and toks[j + 1].low == "of":
        rest = np_forward(toks, j + 2 + (j + 2 < len(toks) and _determiner(toks[j + 2].low)))
        return (k, rest[1]) if rest else None
    if j < len(toks) and toks[j].is_word and _determiner(toks[j].low):
        j += 1
    last_head = None
    while j < len(toks) and j - k < 9:
        word = toks[j]
        comma_between_adjectives = word.text == "," and last_head is not None and _adjective_like(toks[j - 1].low)
        if comma_between_adjectives and j + 1 < len(toks) and _modifier(toks[j + 1]):
            j += 1
            continue
        if not _modifier(word) or (word.low in VERB_FORMS):
            break
        if can_be_head(word) or (word.is_number and last_head is not None):
            last_head = j
        j += 1
    if last_head is None:
        return None
    end = last_head + 1
    if end + 1 < len(toks) and toks[end].low == "of":
        rest = np_forward(toks, end + 1)
        if rest is not None:
            end = rest[1]
    return k, end


def phrase_words(toks: list[Token], span: tuple[int, int]) -> list[str]:
    return [t.low for t in toks[span[0] : span[1]] if t.is_word]


def is_place(words: list[str], has_determiner: bool) -> bool:
    """Whether a phrase names a place in the picture rather than a thing (``the left side of the image``)."""
    if not words:
        return False
    first = words[: words.index("of")] if "of" in words else words
    rest = words[len(first) + 1 :]
    if not first:
        return False
    head = first[-1]
    if head in PLACE_WORDS or (rest and rest[-1] in FRAME_WORDS and head not in PARTITIVES - PLACE_IF_POSITIONED):
        return True
    positioned = any(w in POSITION_ADJECTIVES for w in first[:-1])
    return head in PLACE_IF_POSITIONED and (positioned or (bool(rest) and rest[-1] in FRAME_WORDS))


def head_noun(phrase: str) -> str:
    """The head noun of a phrase, lower case.

    >>> [head_noun(p) for p in ["the second flower", "A small piece of debris", "One of his shoes", "**Boy 1**"]]
    ['flower', 'debris', 'shoes', 'boy']
    """
    words = [t.low for t in tokens(phrase, 0, len(phrase)) if t.is_word]
    while words:
        first = words[: words.index("of")] if "of" in words else words
        rest = words[len(first) + 1 :]
        while len(first) > 1 and first[-1].isdigit():
            first = first[:-1]
        head = first[-1] if first else ""
        if rest and head in PARTITIVES:
            words = rest
            continue
        return re.sub(r"['’]s?$", "", head)
    return ""


__all__ = [
    "JOIN",
    "Token",
    "can_be_head",
    "head_noun",
    "is_place",
    "np_backward",
    "np_forward",
    "phrase_words",
    "sentence_end",
    "sentence_start",
    "tokens",
]


# ---------------------------------------------------------------------------------------------- naming

AREA_WORDS = PLACE_IF_POSITIONED | {"space", "majority", "most", "whole", "entirety"}


def clause_subject(toks: list[Token], lo: int, hi: int) -> tuple[int, int] | None:
    """The subject noun phrase of the clause ``toks[lo:hi]``; leading adverbs, place phrases and ``There is``
    are skipped, and ``The image shows X`` gives X. None when the subject is a pronoun or the clause is inverted."""
    k = lo
    while k < hi:
        token = toks[k]
        if not token.is_word or (token.is_number and k == lo) or (_adverb(token.low) and token.low != "there"):
            k += 1
            continue
        if token.low in PREPOSITIONS:
            span = np_forward(toks, k + 1)
            if span is None:
                return None
            k = span[1]
            continue
        if token.low == "there" and k + 1 < hi and toks[k + 1].low in COPULAS:
            return _after_verbs(toks, k + 2, hi)
        span = np_forward(toks, k)
        if span is None or span[1] > hi:
            return None
        if head_noun(" ".join(phrase_words(toks, span))) in META_HEADS:
            return _after_verbs(toks, span[1], hi)
        return span
    return None


def _after_verbs(toks: list[Token], k: int, hi: int) -> tuple[int, int] | None:
    """The first noun phrase after the verbs, adverbs and ``of`` at ``toks[k]``."""
    while k < hi and toks[k].is_word and not can_be_head(toks[k]) and not _determiner(toks[k].low):
        k += 1
    span = np_forward(toks, k) if k < hi else None
    return span if span is not None and span[1] <= hi else None


def _text(text: str, toks: list[Token], span: tuple[int, int]) -> str:
    raw = text[toks[span[0]].start : toks[span[1] - 1].end]
    return re.sub(r"\s+", " ", re.sub(r"[*_`]+", "", raw)).strip(" '’,")


def _predicate(toks: list[Token], s: int) -> bool:
    """Whether the phrase at ``toks[s]`` follows a copula (adverbs between allowed): ``is large``, ``is a cube``."""
    k = s - 1
    while k >= 0 and toks[k].is_word and _adverb(toks[k].low):
        k -= 1
    return k >= 0 and toks[k].low in COPULAS


def _coordinated_object(toks: list[Token], s: int) -> bool:
    """Whether the phrase at ``toks[s]`` is the second half of a locative object: ``behind the woman and X``."""
    if s < 2 or toks[s - 1].low not in ("and", "or"):
        return False
    first = np_backward(toks, s - 1)
    return first is not None and first[0] > 0 and toks[first[0] - 1].low in LOCATIVE


def name_before(text: str, masked: str, end: int) -> str:
    """The phrase of the entity a box (or its cue) at ``end`` grounds, read backwards within its sentence.

    Returns :data:`JOIN` when the nearest thing before is another box, ``""`` when nothing names it."""
    toks = tokens(masked, sentence_start(masked, end), end)
    i, comma = len(toks), False
    while i > 0:
        token = toks[i - 1]
        if token.is_box:
            return JOIN
        if not token.is_word:
            comma = comma or token.text in ",:("
            i -= 1
            continue
        if token.low in PRONOUNS:
            if i >= 2 and toks[i - 2].low in PREPOSITIONS:
                i -= 2
                continue
            return resolve_pronoun(text, masked, token.start)
        span = np_backward(toks, i)
        if span is None:
            i -= 1
            continue
        s = span[0]
        words = phrase_words(toks, span)
        has_det = _determiner(toks[s].low)
        before = toks[s - 1].low if s > 0 and toks[s - 1].is_word else ""
        place = is_place(words[1:] if has_det else words, has_det)
        if (before in LOCATIVE and (place or comma)) or before == "without" or (comma and _coordinated_object(toks, s)):
            i = s - 1
            continue
        if (place and not has_det) or (before in OCCUPY_VERBS and (place or head_noun(" ".join(words)) in AREA_WORDS)):
            i = s
            continue
        if _predicate(toks, s):
            if not has_det:
                i = s
                continue
            subject = clause_subject(toks, 0, s)
            if subject is not None:
                return _text(text, toks, subject)
        return _text(text, toks, span)
    return ""


def name_after(text: str, masked: str, start: int) -> str:
    """The first noun phrase after a box in its sentence that is not another box's (``[[..]] lies a creature``)."""
    toks = tokens(masked, start, sentence_end(masked, start))
    k = 0
    while k < min(len(toks), 16):
        token = toks[k]
        if not token.is_word:
            k += 1
            continue
        if token.low in PREPOSITIONS:
            span = np_forward(toks, k + 1)
            k = span[1] if span else k + 1
            continue
        span = np_forward(toks, k)
        if span is None:
            k += 1
            continue
        if span[1] < len(toks) and toks[span[1]].is_box:
            k = span[1] + 1
            continue
        return _text(text, toks, span)
    return ""


def resolve_pronoun(text: str, masked: str, pos: int, sentences: int = 6) -> str:
    """What a pronoun at ``pos`` stands for: the subject of the nearest earlier sentence that names one."""
    end = sentence_start(masked, pos)
    for _ in range(sentences):
        if end <= 0:
            break
        start = sentence_start(masked, max(0, end - 1))
        toks = tokens(masked, start, end)
        subject = clause_subject(toks, 0, len(toks))
        if subject is not None:
            return _text(text, toks, subject)
        end = start
    return ""


def name_entity(text: str, masked: str, cue_start: int, group_end: int) -> str:
    """The entity phrase of a box whose cue starts at ``cue_start``: before it, else after it (or JOIN)."""
    name = name_before(text, masked, cue_start)
    return name if name else name_after(text, masked, group_end)


__all__ += ["clause_subject", "name_after", "name_before", "name_entity", "resolve_pronoun"]
