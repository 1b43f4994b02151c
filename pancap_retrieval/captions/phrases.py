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


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DETERMINERS = _words(
    "a an the this that these those some several many few each every both another any no all either "
    "neither my your his her its our their thier whose such"
)
NUMERALS = _words(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen twenty dozen"
)
PRONOUNS = _words("it he she they him them itself himself herself themselves")
PREPOSITIONS = _words(
    "at in on of to from with without within inside into onto over under beneath underneath below above "
    "behind beside besides between among amid amidst around near by along across against through toward "
    "towards upon off via about beyond like past per throughout atop alongside outside for during except"
)
# Prepositions whose object says where something is (a box after "in the top right corner" is not the corner's).
LOCATIVE = _words(
    "at in on to from within inside into onto over under beneath underneath below above behind beside "
    "between among around near by along across toward towards upon atop throughout alongside outside"
)
CONJUNCTIONS = _words(
    "and or but nor yet so while whereas although though because if than as where when which who whom "
    "what whereby whether"
)
COPULAS = _words(
    "is are was were be been being am appears appear seems seem looks look remains remain becomes become"
)
AUXILIARIES = _words("has have had do does did can could may might must shall should will would")
ADVERBS = _words(
    "also very too quite rather just only still even almost nearly mostly mainly partly partially "
    "slightly approximately roughly about somewhat fairly here there then now further furthermore "
    "additionally lastly finally specifically moreover however not never always often sometimes perhaps "
    "possibly probably likely clearly directly centrally vertically horizontally diagonally together "
    "apart away back up down out forward upward upwards downward downwards inward outward overall "
    "respectively instead altogether"
)
# -ly words that are nouns, not adverbs.
LY_NOUNS = _words(
    "family belly lily jelly fly butterfly dragonfly firefly ally rally assembly supply anomaly monopoly "
    "bully gully holly folly doily reply ply jolly melancholy trolly"
)
# Verb forms that do not end a noun phrase (inflected forms common in image descriptions).
VERB_FORMS = _words(
    "used sits wears holds appears seems lies hangs rests depicts consists occupies spans extends "
    "stretches leans emerges protrudes surrounds overlooks contains includes shows reveals captures "
    "stands walks runs swims flows grows floats rises points moves sitting standing lying wearing holding "
    "showing depicting containing including consisting featuring occupying spanning covering looking "
    "facing carrying riding walking running playing hanging resting leaning reaching stretching extending "
    "surrounding supporting displaying reading smiling posing flying floating growing perched located "
    "positioned situated placed found seen shown depicted centered centred attached mounted made covered "
    "filled dressed adorned decorated painted printed written labeled labelled marked lit extend appear "
    "seem sit hang grow occupy contain include depict consist emerge protrude surround overlook lean "
    "float reach remain understood known grown drawn worn held built hung torn broken taken given"
)
# Words that modify a noun but never head a phrase (predicative adjectives, comparisons, "most").
NOT_HEADS = _words(
    "partially invisible present prominent noticeable discernible evident apparent visible closest "
    "nearest farthest furthest next most least more adjacent ahead away"
)
# Nouns in -ing (a word in -ing before a preposition or a determiner is otherwise read as a verb).
ING_NOUNS = _words(
    "building buildings painting clothing railing ceiling awning opening marking carving drawing siding "
    "lighting bedding icing frosting topping wedding evening morning sibling pudding stuffing filling "
    "covering housing fencing paving coating flooring landing crossing seating lettering engraving casing "
    "writing handwriting stocking legging earring ring string wing king thing sling swing spring"
)
# Heads of phrases that say where rather than what.
PLACE_WORDS = _words(
    "left right top bottom middle center centre side sides corner corners edge edges foreground "
    "background midground half halves quadrant region front rear distance frame image picture photo "
    "photograph scene view position location spot apex tip upper lower higher lowest highest leftmost "
    "rightmost topmost bottommost further farther closer nearer inner outer"
)
FRAME_WORDS = _words("image picture photo photograph scene frame view shot")
POSITION_ADJECTIVES = _words(
    "left right top bottom upper lower middle central center centre front back rear far near inner outer"
)
PLACE_IF_POSITIONED = _words("part portion section area areas parts portions sections")
OCCUPY_VERBS = _words(
    "occupies occupy occupying covers cover covering spans span spanning fills fill filling takes taking"
)
META_HEADS = _words("image picture photo photograph scene view illustration drawing painting")
# In "N1 of N2" the head is N2's when N1 is one of these (parts, groups, amounts).
PARTITIVES = _words(
    "instance instances example examples copy copies grouping part parts portion portions piece pieces "
    "pair pairs group groups cluster clusters bunch bunches set sets row rows line lines column columns "
    "stack stacks pile piles collection number lot lots couple handful series array variety range patch "
    "patches section sections segment segments strip strips slice slices chunk chunks bit bits clump "
    "clumps mass expanse stretch swath crowd herd flock team kind kinds type types sort sorts rest "
    "majority remainder most all some many several each both none any one two three four five six seven "
    "eight nine ten few half layer layers"
)
_CLOSING_QUOTES = frozenset('"”')
_OPENING_QUOTES = frozenset('"“')
# Subjects that only announce the entity: "The most prominent element is a kart [[..]]" grounds the kart.
ATTRIBUTE_HEADS = _words("color colour colors colours shape size pattern texture tone shade hue finish style")
GENERIC_HEADS = _words(
    "element elements entity entities object objects feature features thing things item items subject "
    "focus component components image picture photo scene"
)
ONE_WORDS = _words("one ones another other others")
_OCCUPYING = _words("occupies occupying covers covering spans spanning fills filling takes taking")
_ADJECTIVE_ENDINGS = ("ed", "ous", "ful", "ive", "ic", "al", "ish", "like", "less", "y")
COMMON_ADJECTIVES = _words(
    "slender slim curved straight shiny red orange yellow green blue purple pink brown black white grey "
    "gray silver golden gold beige dark light bright pale deep small large big tall short long wide "
    "narrow thick thin old young new round square flat smooth rough soft hard wooden metal plastic tiny "
    "huge vast little clear"
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
    return (
        low in DETERMINERS
        or low in PREPOSITIONS
        or low in CONJUNCTIONS
        or low in COPULAS
        or (low in AUXILIARIES or low in PRONOUNS or low in {"there", "here", "not", "to"})
    )


def _adverb(low: str) -> bool:
    return (
        low in ADVERBS
        or (low.endswith("ly") and len(low) > 4 and low not in LY_NOUNS)
        or low.endswith(("wards", "ways"))
        or low in ("farther", "further", "away", "ahead", "apart")
    )


def _participle(low: str) -> bool:
    return low.endswith("ed") and len(low) > 4 and not low.endswith("eed")


def can_be_head(token: Token) -> bool:
    """Whether ``token`` can end a noun phrase."""
    if not token.is_word or token.is_number:
        return False
    low = token.low
    return not (
        _closed(low)
        or _adverb(low)
        or low in VERB_FORMS
        or low in NOT_HEADS
        or _participle(low)
        or low in NUMERALS
        or low in _OCCUPYING
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
    return token.low in NUMERALS or token.low in {
        "some",
        "many",
        "several",
        "each",
        "all",
        "both",
        "most",
        "none",
    }


def _noun_after_article(toks: list[Token], k: int) -> bool:
    """``the can``, ``a will``: an auxiliary right after an article is a noun."""
    return k > 0 and toks[k].low in AUXILIARIES and toks[k - 1].low in ("a", "an", "the")


def _determiner_ahead(toks: list[Token], k: int) -> bool:
    """Whether the comma ``toks[k]`` follows an adjective, with only modifiers and commas between it and a
    determiner to its left: ``a dark, woven placemat``."""
    if k < 1 or not _adjective_like(toks[k - 1].low):
        return False
    for j in range(k - 1, max(-1, k - 8), -1):
        if toks[j].is_word and _determiner(toks[j].low):
            return j < k - 1
        if toks[j].text != "," and not _modifier(toks[j]):
            return False
    return False


def _verb_ing(toks: list[Token], k: int) -> bool:
    """``pointing towards``, ``wearing a``: a word in -ing followed by a preposition or determiner is a verb."""
    low = toks[k].low
    if not low.endswith("ing") or low in ING_NOUNS or k + 1 >= len(toks):
        return False
    following = toks[k + 1].low
    return (following in PREPOSITIONS and following != "of") or following in DETERMINERS or _adverb(following)


def _clause_verb(toks: list[Token], k: int) -> bool:
    """``a symbol representing payment``: a word in -ing right after a noun starts a clause, not a modifier."""
    low = toks[k].low
    return low.endswith("ing") and low not in ING_NOUNS and k > 0 and can_be_head(toks[k - 1])


def np_backward(toks: list[Token], i: int) -> tuple[int, int] | None:
    """The noun phrase ending just before ``toks[i]``, as a token range ``(start, end)``, or None."""
    end = i
    if end >= 2 and toks[end - 1].is_number and can_be_head(toks[end - 2]):  # "Boy 1", "person 2"
        head = end - 2
    elif end >= 1 and (
        (can_be_head(toks[end - 1]) and not _verb_ing(toks, end - 1)) or _noun_after_article(toks, end - 1)
    ):
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
        if word.text == "," and _determiner_ahead(toks, start - 1):
            start -= 1  # "a long, slender, pointed bottom": commas between the adjectives of one phrase
            continue
        if not _modifier(word) or _clause_verb(toks, start - 1):
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


def _verb_s(toks: list[Token], j: int, last_head: int | None) -> bool:
    """``A woman waves.``, ``a man walks along``: a word in -s after a singular noun, before a stop, is a verb."""
    low = toks[j].low
    if last_head is None or not low.endswith("s") or low.endswith("ss") or toks[last_head].low.endswith("s"):
        return False
    if j + 1 >= len(toks) or not toks[j + 1].is_word:
        return True
    following = toks[j + 1].low
    return (
        following in PREPOSITIONS
        or following in DETERMINERS
        or _adverb(following)
        or following in CONJUNCTIONS
    )


def np_forward(toks: list[Token], k: int) -> tuple[int, int] | None:
    """The noun phrase starting at ``toks[k]``, or None."""
    j = k
    if (
        j < len(toks)
        and toks[j].is_word
        and _quantifier(toks[j])
        and j + 1 < len(toks)
        and toks[j + 1].low == "of"
    ):
        rest = np_forward(toks, j + 2 + (j + 2 < len(toks) and _determiner(toks[j + 2].low)))
        return (k, rest[1]) if rest else None
    if j < len(toks) and toks[j].is_word and _determiner(toks[j].low):
        j += 1
    last_head = None
    while j < len(toks) and j - k < 9:
        word = toks[j]
        comma_between_adjectives = (
            word.text == "," and last_head is not None and _adjective_like(toks[j - 1].low)
        )
        if comma_between_adjectives and j + 1 < len(toks) and _modifier(toks[j + 1]):
            j += 1
            continue
        if not _modifier(word) or (word.low in VERB_FORMS) or _verb_s(toks, j, last_head):
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


def is_place(words: list[str]) -> bool:
    """Whether a phrase names a place in the picture rather than a thing (``the left side of the image``)."""
    if not words:
        return False
    first = words[: words.index("of")] if "of" in words else words
    rest = words[len(first) + 1 :]
    if not first:
        return False
    head = first[-1]
    parts = head.split("-")
    if len(parts) > 1 and all(
        p in PLACE_WORDS or p in POSITION_ADJECTIVES or p in ("mid", "point") for p in parts
    ):
        return True
    if head in PLACE_WORDS or (
        rest and rest[-1] in FRAME_WORDS and head not in PARTITIVES - PLACE_IF_POSITIONED
    ):
        return True
    positioned = any(w in POSITION_ADJECTIVES for w in first[:-1])
    return head in PLACE_IF_POSITIONED and (positioned or (bool(rest) and rest[-1] in FRAME_WORDS))


# Words that start what follows a head noun: a prepositional phrase ("a man in a red hat"), a participle
# ("a man holding a dog") or a relative clause ("the cup that holds pens"). "of" is handled by PARTITIVES.
_POSTMODIFIERS = (PREPOSITIONS - {"of"}) | VERB_FORMS | _words("that which who whose where")


def _postmodifier_at(words: list[str], k: int) -> bool:
    """Whether ``words[k]`` starts a postmodifier: after a word that can end a noun phrase (not a determiner,
    adverb or adjective: "a painted wall", "a brightly lit room", "a red painted door" go on)."""
    before, word = words[k - 1], words[k]
    if _determiner(before) or _adverb(before) or before in COMMON_ADJECTIVES or before in PREPOSITIONS:
        return False
    if word in _POSTMODIFIERS:
        return True
    following = words[k + 1] if k + 1 < len(words) else ""
    ends_clause = not following or _determiner(following) or following in PREPOSITIONS
    return word.endswith("ing") and len(word) > 4 and word not in ING_NOUNS and ends_clause


def head_words(phrase: str) -> list[str]:
    """The words of a noun phrase up to and including its head, lower case: what follows the head is cut off,
    and in ``N1 of N2`` the words are N2's when N1 is a part or quantity word.

    >>> [head_words(p) for p in ["a man in a red hat", "A small piece of debris", "the hot dog stand"]]
    [['a', 'man'], ['debris'], ['the', 'hot', 'dog', 'stand']]
    """
    unquoted = re.sub(r"\"[^\"]*\"|“[^”]*”", " ", phrase)
    words = [t.low for t in tokens(unquoted, 0, len(unquoted)) if t.is_word]
    while words:
        cut = next((k for k in range(1, len(words)) if _postmodifier_at(words, k)), len(words))
        words = words[:cut]
        first = words[: words.index("of")] if "of" in words else words
        rest = words[len(first) + 1 :]
        while len(first) > 1 and first[-1].isdigit():
            first = first[:-1]
        if rest and first and first[-1] in PARTITIVES:
            words = rest
            continue
        if first:
            first = [*first[:-1], re.sub(r"(?<=[a-z])[0-9]+$", "", re.sub(r"['’]s?$", "", first[-1]))]
        return first
    return []


def head_noun(phrase: str) -> str:
    """The head noun of a phrase, lower case (the last of :func:`head_words`).

    >>> [head_noun(p) for p in ["the second flower", "A small piece of debris", "One of his shoes", "**Boy 1**"]]
    ['flower', 'debris', 'shoes', 'boy']
    >>> [head_noun(p) for p in ["a man in a red hat", "a man holding a dog", "a woman eating an apple"]]
    ['man', 'man', 'woman']
    """
    words = head_words(phrase)
    return words[-1] if words else ""


__all__ = [
    "JOIN",
    "Token",
    "can_be_head",
    "head_noun",
    "head_words",
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
        if (
            not token.is_word
            or (token.is_number and k == lo)
            or (_adverb(token.low) and token.low != "there")
        ):
            k += 1
            continue
        following = toks[k + 1].low if k + 1 < hi else ""
        if (token.low not in PREPOSITIONS and following in ("to", "from")) or _verb_ing(toks, k):
            k += 1  # "Adjacent to ...", "Next to ...", "Emerging from ...", "Dominating the scene ..."
            if following not in PREPOSITIONS:
                span = np_forward(toks, k)
                k = span[1] if span is not None else k
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
    """Whether the phrase at ``toks[s]`` follows a copula that is not ``there is``; adverbs and other predicates
    may stand between (``is centered and rectangular``)."""
    k = s - 1
    while k >= 0 and toks[k].is_word and toks[k].low != "there":
        low = toks[k].low
        if not (_adverb(low) or low == "and" or (k < s - 1 and (_adjective(low) or low in VERB_FORMS))):
            break
        k -= 1
    inverted = k > 0 and toks[k - 1].low in ("there", "here", "as", "so", "nor", "neither")
    return k >= 0 and toks[k].low in COPULAS and not inverted


def _adjective(low: str) -> bool:
    return low in COMMON_ADJECTIVES or low.endswith((*_ADJECTIVE_ENDINGS, "est", "ar"))


def _coordinated_object(toks: list[Token], s: int) -> bool:
    """Whether the phrase at ``toks[s]`` is the second half of a locative object: ``behind the woman and X``."""
    if s < 2 or toks[s - 1].low not in ("and", "or"):
        return False
    first = np_backward(toks, s - 1)
    return first is not None and first[0] > 0 and toks[first[0] - 1].low in LOCATIVE


def _one(toks: list[Token], i: int) -> int | None:
    """Start of ``one``, ``another (one)``, ``the second one``, ``the other`` ending before ``toks[i]``, else None."""
    if toks[i - 1].low not in ONE_WORDS:
        return None
    k = i - 1
    while k > 0 and toks[k - 1].is_word and (toks[k - 1].low in DETERMINERS or _modifier(toks[k - 1])):
        if toks[k - 1].low in DETERMINERS:
            return k - 1
        k -= 1
    return k


def _window(masked: str, end: int) -> int:
    """Start of the sentence a box at ``end`` belongs to (the one before, when the box follows its full stop)."""
    start = sentence_start(masked, end)
    if start > 0 and not re.search(r"[^\W_]", masked[start:end]):
        start = sentence_start(masked, start - 1)
    return start


def name_before(text: str, masked: str, end: int) -> str:
    """The phrase of the entity a box (or its cue) at ``end`` grounds, read backwards within its sentence.

    Returns :data:`JOIN` when the nearest thing before is another box, ``""`` when nothing names it."""
    toks = tokens(masked, _window(masked, end), end)
    i, comma, fallback = len(toks), False, ""
    while i > 0:
        token = toks[i - 1]
        if token.is_box:
            return JOIN
        if token.text in _CLOSING_QUOTES and (quoted := _quoted(toks, i)) is not None:
            return _text(text, toks, quoted)
        if not token.is_word:
            comma = comma or token.text in ",:("
            i -= 1
            continue
        one = _one(toks, i)
        if token.low in PRONOUNS or one is not None:
            start = i - 1 if one is None else one
            if start > 0 and toks[start - 1].low in PREPOSITIONS:
                i = start - 1
                continue
            if one is not None:
                return plural_antecedent(text, masked, toks[start].start) or _text(text, toks, (start, i))
            return resolve_pronoun(text, masked, token.start)
        span = np_backward(toks, i)
        if span is None:
            i -= 1
            continue
        verdict = _verdict(toks, span, comma)
        if verdict == "take":
            return _text(text, toks, span)
        if verdict == "subject":
            subject = clause_subject(toks, 0, span[0])
            generic = (
                subject is not None and head_noun(" ".join(phrase_words(toks, subject))) in GENERIC_HEADS
            )
            return _text(text, toks, span if subject is None or generic else subject)
        if verdict == "place" and not fallback and i == len(toks):
            fallback = _complement(text, toks, span)
        comma = comma or verdict == "place"
        i = span[0] - (verdict in ("place", "object"))
    return fallback


def _quoted(toks: list[Token], i: int) -> tuple[int, int] | None:
    """``the word "TRASKO"`` (the noun before a quotation, with it) or the quotation alone, ending at ``toks[i-1]``."""
    k = i - 2
    while k >= 0 and toks[k].text not in _OPENING_QUOTES and i - k < 12:
        k -= 1
    if k < 0 or toks[k].text not in _OPENING_QUOTES or k == i - 2:
        return None
    before = np_backward(toks, k) if k > 0 and toks[k - 1].is_word else None
    return (before[0], i) if before is not None else (k, i)


def _possessed(toks: list[Token], s: int) -> bool:
    """Whether the phrase at ``toks[s]`` is a body part or belonging of someone named: ``her neck``, ``its side``."""
    return toks[s].low in ("his", "her", "its", "their", "thier")


def _after_existential(toks: list[Token], k: int) -> bool:
    """Whether the phrase ending before ``toks[k]`` is the one ``There is``/``There are`` introduces."""
    span = np_backward(toks, k)
    if span is None or span[0] < 2:
        return False
    j = span[0] - 1
    while j > 0 and _adverb(toks[j].low) and toks[j].low != "there":
        j -= 1
    return toks[j].low in COPULAS and toks[j - 1].low == "there"


def _verdict(toks: list[Token], span: tuple[int, int], comma: bool) -> str:
    """What a noun phrase before a box is: ``take`` (the entity), ``subject`` (a predicate noun: the clause's
    subject is the entity), ``place``/``object`` (a locative phrase, skipped with its preposition) or ``skip``."""
    s = span[0]
    words = phrase_words(toks, span)
    has_det = _determiner(toks[s].low)
    before = toks[s - 1].low if s > 0 and toks[s - 1].is_word else ""
    place = is_place(words[1:] if has_det else words)
    if place and (before in LOCATIVE or before in PREPOSITIONS or _adverb(before)):
        return "place"
    if (
        (before in LOCATIVE and comma)
        or before in ("without", "as")
        or (comma and _coordinated_object(toks, s))
    ):
        return "object"
    if before == "with" and head_noun(" ".join(words)) in ATTRIBUTE_HEADS:
        return "object"  # "an object with yellow color [[..]]": the colour is said of the object
    if comma and before.endswith("ing") and before not in ING_NOUNS and s > 1:
        return "object"  # "a symbol representing payment, located at": the clause describes the symbol
    if before in LOCATIVE and (_possessed(toks, s) or _after_existential(toks, s - 1)):
        return "object"  # "a necklace around her neck [[..]]", "There is a group of rocks around the girl [[..]]"
    if place and not has_det and s > 0:
        return "skip"
    if before in OCCUPY_VERBS and (place or head_noun(" ".join(words)) in AREA_WORDS):
        return "skip"
    if _predicate(toks, s):
        if not has_det:
            return "skip" if _adjective(words[-1]) or words[-1].endswith("ing") else "take"
        return "subject"
    return "take"


def plural_antecedent(text: str, masked: str, pos: int, sentences: int = 4) -> str:
    """What ``one``/``another`` at ``pos`` counts: the nearest plural noun phrase before it (``two glasses``)."""
    end = pos
    nearest: str | None = (
        None  # "a bird at [[..]] and another at [[..]]": without a plural, the last thing named
    )
    for _ in range(sentences):
        start = sentence_start(masked, end)
        toks = tokens(masked, start, end)
        for i in range(len(toks), 0, -1):
            span = np_backward(toks, i) if toks[i - 1].is_word else None
            if span is None:
                continue
            words = phrase_words(toks, span)
            head = head_noun(" ".join(words))
            plural = head.endswith("s") and not head.endswith(("ss", "ous", "us", "is"))
            if plural and not is_place(words):
                return _text(text, toks, span)
            if nearest is None and not is_place(words) and head not in ONE_WORDS:
                nearest = _text(text, toks, span)
        if start <= 0:
            break
        end = start - 1
    return nearest or ""


def _complement(text: str, toks: list[Token], span: tuple[int, int]) -> str:
    """The ``of`` object of a place phrase, when it is a thing: ``to the left of the mat`` -> ``the mat``."""
    lows = [t.low for t in toks[span[0] : span[1]]]
    if "of" not in lows:
        return ""
    k = span[0] + lows.index("of") + 1
    inner = np_forward(toks, k)
    if inner is None or phrase_words(toks, inner)[-1] in FRAME_WORDS:
        return ""
    return _text(text, toks, inner)


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
    return name or name_after(text, masked, group_end) or resolve_pronoun(text, masked, cue_start)


__all__ += [
    "clause_subject",
    "name_after",
    "name_before",
    "name_entity",
    "plural_antecedent",
    "resolve_pronoun",
]
