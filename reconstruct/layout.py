"""Captions -> layouts: a global prompt, one phrase per box, boxes on the generation canvas.

A :class:`Layout` is what a layout-to-image pipeline (GLIGEN) takes: a prompt, phrases and normalised boxes,
within the pipeline's limits, with a count of every change made to get there:

- the prompt is the caption's opening (plain text, boxes stripped), whole sentences while they fit in the token
  budget (77 CLIP tokens, BOS and EOS included), cut by words when the first sentence alone does not fit;
- each box becomes one (phrase, box) item; phrases are cut to the same budget (GLIGEN tokenizes phrases without
  truncation, so a longer phrase raises inside its text encoder);
- boxes are clamped to [0, 1]; a zero-area box is grown to ``MIN_SIDE`` around its centre (or dropped);
  duplicates are merged (the same phrase and a near-identical box, or an identical box);
- at most 30 items (GLIGEN's ``max_objs``; it would silently keep the *first* 30): the largest by area are kept;
- boxes are mapped onto the canvas: ``letterbox`` (a square canvas, the image fitted and centred) or ``aspect``
  (a canvas of the image's aspect ratio); ``content`` records where the image lies on the canvas.

Tokens are counted with the redrawer's own tokenizer when it has one. Without one, :func:`approx_token_count`
is used: CLIP's pre-tokenisation (letter runs, single digits, punctuation runs) with one token per started
4 letters and one per punctuation character, which over-counts common English (one token per word) and
is only used where no tokenizer will see the text (the sketch redrawer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pancap_retrieval.captions.boxes import Box, iou
from pancap_retrieval.captions.model import Entity, parse_caption, read_boxes
from pancap_retrieval.errors import PancapError

MAX_TOKENS = 77  # CLIP's context, BOS and EOS included
MAX_BOXES = 30  # GLIGEN's max_objs
MIN_SIDE = 1 / 64  # a zero-area box is grown to this side: one latent cell of a 512 canvas
NEAR_IDENTICAL_IOU = 0.95
IDENTICAL_TOL = 1e-3
CANVAS_MODES = ("letterbox", "aspect")
COUNT_KEYS = (
    "invalid_boxes",
    "clamped",
    "zero_area_fixed",
    "zero_area_removed",
    "no_phrase",
    "merged",
    "dropped_over_limit",
    "truncated_phrases",
    "prompt_truncated",
)

TokenCounter = Callable[[str], int]


class LayoutError(PancapError):
    """A caption record cannot become a layout (failed generation, no text, bad option)."""


# CLIP's pre-tokenisation pattern (transformers' CLIPTokenizer), with ASCII classes so `re` suffices.
_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def approx_token_count(text: str) -> int:
    """Tokens of ``text`` as CLIP would count them, BOS and EOS included, estimated without a vocabulary.

    >>> approx_token_count("a dog")
    4
    >>> approx_token_count("a photograph, 2024")
    11
    """
    n = 2
    for piece in _PIECES.findall(text.lower()):
        if piece[0].isalpha():
            n += max(1, math.ceil(len(piece) / 4))
        else:
            n += len(piece)
    return n


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """A counter of the tokens ``tokenizer`` produces for a text, special tokens included, never truncating."""

    def count(text: str) -> int:
        return len(tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"])

    return count


def cut_to_tokens(text: str, max_tokens: int, count: TokenCounter) -> tuple[str, bool]:
    """The longest word prefix of ``text`` within ``max_tokens`` (characters when one word is too long).

    >>> cut_to_tokens("one two three four", 6, approx_token_count)
    ('one two three', True)
    """
    text = " ".join(text.split())
    if count(text) <= max_tokens:
        return text, False
    words = text.split(" ")
    lo, hi = 0, len(words)  # words[:lo] fits, words[:hi] may not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    if lo > 0:
        return " ".join(words[:lo]).rstrip(" ,;:-"), True
    word = words[0]
    lo, hi = 0, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(word[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return word[:lo], True


# "Here's a detailed description of the image:" and the like, as a line of its own or a first sentence.
_PREAMBLE = re.compile(
    r"^\s*(?:[^\n]{0,120}:[ \t]*\n"
    r"|(?:here(?:'s| is)|below is|this is)[^\n.:]{0,100}\b(?:description|caption)\b[^\n.:]{0,40}[.:])\s*",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"\*\*|__|^\s*#+\s*|^\s*[*\-•]\s+", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def opening(plain_text: str, max_tokens: int, count: TokenCounter) -> tuple[str, bool]:
    """The caption's opening: whole sentences while they fit, a preamble line ("Here's ...:") skipped.

    >>> opening("Here is the image:\\nA red car. It is parked. More text follows here.", 11, approx_token_count)
    ('A red car. It is parked.', True)
    """
    text = _MARKDOWN.sub("", _PREAMBLE.sub("", plain_text, count=1))
    sentences = [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]
    if not sentences:
        return "", False
    kept: list[str] = []
    for sentence in sentences:
        candidate = " ".join([*kept, sentence])
        if count(candidate) > max_tokens:
            break
        kept.append(sentence)
    if not kept:
        return cut_to_tokens(sentences[0], max_tokens, count)[0], True
    return " ".join(kept), len(kept) < len(sentences)


@dataclass
class Layout:
    """One caption as a layout on a generation canvas. Boxes are xyxy normalised to the canvas."""

    example_id: str
    prompt: str
    phrases: list[str]
    boxes: list[list[float]]
    source_boxes: list[list[float]]  # the same boxes on the original image (normalised), after the fixes
    canvas: tuple[int, int]  # (width, height) in pixels
    mode: str
    content: tuple[float, float, float, float]  # where the original image lies on the canvas (normalised)
    image_size: tuple[int, int] | None
    source: str  # "stages:<key>" or "caption"
    token_counter: str  # "tokenizer" or "approx"
    counts: dict[str, int] = field(default_factory=dict)
    text: str = ""  # the caption's plain text, whole

    @property
    def is_text_only(self) -> bool:
        return not self.boxes

    @property
    def n_changed(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["canvas"] = list(self.canvas)
        data["content"] = list(self.content)
        data["image_size"] = list(self.image_size) if self.image_size else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layout:
        size = data.get("image_size")
        return cls(
            example_id=str(data["example_id"]),
            prompt=data["prompt"],
            phrases=list(data["phrases"]),
            boxes=[list(b) for b in data["boxes"]],
            source_boxes=[list(b) for b in data["source_boxes"]],
            canvas=(int(data["canvas"][0]), int(data["canvas"][1])),
            mode=data["mode"],
            content=tuple(float(v) for v in data["content"]),  # type: ignore[arg-type]
            image_size=(int(size[0]), int(size[1])) if size else None,
            source=data.get("source", "caption"),
            token_counter=data.get("token_counter", "approx"),
            counts=dict(data.get("counts", {})),
            text=data.get("text", ""),
        )


def canvas_geometry(
    image_size: tuple[int, int] | None, mode: str = "letterbox", size: int = 512, multiple: int = 8
) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
    """(canvas (w, h), content box on the canvas) for an image of ``image_size`` (None: square).

    >>> canvas_geometry((200, 100), "letterbox", 512)
    ((512, 512), (0.0, 0.25, 1.0, 0.75))
    >>> canvas_geometry((200, 100), "aspect", 512)
    ((512, 256), (0.0, 0.0, 1.0, 1.0))
    """
    if mode not in CANVAS_MODES:
        raise LayoutError(f"unknown canvas mode {mode!r}; known: {', '.join(CANVAS_MODES)}")
    if size < multiple or size % multiple:
        raise LayoutError(f"canvas size must be a positive multiple of {multiple}, got {size}")
    w, h = image_size if image_size and image_size[0] > 0 and image_size[1] > 0 else (1, 1)
    if mode == "letterbox":
        side = max(w, h)
        cw, ch = w / side, h / side
        return (size, size), ((1 - cw) / 2, (1 - ch) / 2, (1 + cw) / 2, (1 + ch) / 2)
    short = max(multiple, round(size * min(w, h) / max(w, h) / multiple) * multiple)
    canvas = (size, short) if w >= h else (short, size)
    return canvas, (0.0, 0.0, 1.0, 1.0)


def to_canvas(box: list[float], content: tuple[float, float, float, float]) -> list[float]:
    x0, y0, x1, y1 = content
    return [
        x0 + box[0] * (x1 - x0),
        y0 + box[1] * (y1 - y0),
        x0 + box[2] * (x1 - x0),
        y0 + box[3] * (y1 - y0),
    ]


def entities_from_stages(stages: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """The entity list of the last stage that kept one (``{"entities": [{"phrase", "boxes"}]}``), or None."""

    def key(name: str) -> list[Any]:
        return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]

    for name in sorted(stages, key=key, reverse=True):
        value = stages[name]
        entities = value.get("entities") if isinstance(value, Mapping) else value
        if (
            isinstance(entities, list)
            and entities
            and all(isinstance(e, Mapping) and "phrase" in e and "boxes" in e for e in entities)
        ):
            return name, list(entities)
    return None


def _raw_items(entities: list[Any], counts: dict[str, int]) -> list[tuple[str, list[float]]]:
    """(phrase, box) pairs from entities (parsed or stored), invalid boxes counted and dropped."""
    items = []
    for entity in entities:
        phrase = entity.phrase if isinstance(entity, Entity) else entity.get("phrase")
        boxes = entity.boxes if isinstance(entity, Entity) else entity.get("boxes") or []
        phrase = " ".join(str(phrase or "").split())
        for box in boxes:
            values = box.as_list() if isinstance(box, Box) else box
            try:
                quad = [float(v) for v in values]
            except (TypeError, ValueError):
                counts["invalid_boxes"] += 1
                continue
            if len(quad) != 4 or not all(math.isfinite(v) for v in quad):
                counts["invalid_boxes"] += 1
                continue
            if not phrase:
                counts["no_phrase"] += 1
                continue
            items.append((phrase, quad))
    return items


def _fix_box(quad: list[float], zero_area: str, counts: dict[str, int]) -> Box | None:
    clamped = [min(1.0, max(0.0, v)) for v in quad]
    if clamped != quad:
        counts["clamped"] += 1
    x1, y1, x2, y2 = clamped
    x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    if x2 - x1 > 0 and y2 - y1 > 0:
        return Box(x1, y1, x2, y2)
    if zero_area == "drop":
        counts["zero_area_removed"] += 1
        return None
    counts["zero_area_fixed"] += 1

    def grow(a: float, b: float) -> tuple[float, float]:
        if b - a >= MIN_SIDE:
            return a, b
        lo = min(max(0.0, (a + b) / 2 - MIN_SIDE / 2), 1.0 - MIN_SIDE)
        return lo, lo + MIN_SIDE

    x1, x2 = grow(x1, x2)
    y1, y2 = grow(y1, y2)
    return Box(x1, y1, x2, y2)


def _same_box(a: Box, b: Box) -> bool:
    return all(abs(u - v) <= IDENTICAL_TOL for u, v in zip(a.as_list(), b.as_list()))


def _kept_boxes(entities: list[Any], zero_area: str, max_boxes: int, counts: dict[str, int]) -> list[tuple[str, Box]]:
    """(phrase, box) of the entities: zero-area boxes fixed or dropped, (near-)identical ones merged, the largest
    ``max_boxes`` kept in their order; each change counted in ``counts``."""
    kept: list[tuple[str, Box]] = []
    for phrase, quad in _raw_items(entities, counts):
        box = _fix_box(quad, zero_area, counts)
        if box is None:
            continue
        key = phrase.lower()
        if any(
            _same_box(box, b) or (p.lower() == key and iou(box, b) >= NEAR_IDENTICAL_IOU) for p, b in kept
        ):
            counts["merged"] += 1
            continue
        kept.append((phrase, box))
    if len(kept) > max_boxes:
        by_area = sorted(range(len(kept)), key=lambda i: (-kept[i][1].area, i))[:max_boxes]
        counts["dropped_over_limit"] = len(kept) - max_boxes
        kept = [kept[i] for i in sorted(by_area)]
    return kept


def _cut_phrases(kept: list[str], max_phrase_tokens: int, count: Any, counts: dict[str, int]) -> list[str]:
    """Each phrase cut to ``max_phrase_tokens`` (each distinct phrase cut once, counted once when cut)."""
    phrases: list[str] = []
    cache: dict[str, str] = {}
    for phrase in kept:
        if phrase not in cache:
            cut, truncated = cut_to_tokens(phrase, max_phrase_tokens, count)
            cache[phrase] = cut
            counts["truncated_phrases"] += int(truncated)
        phrases.append(cache[phrase])
    return phrases


def build_layout(
    example_id: str,
    plain_text: str,
    entities: list[Any],
    *,
    image_size: tuple[int, int] | None = None,
    canvas_size: int = 512,
    mode: str = "letterbox",
    tokenizer: Any = None,
    max_prompt_tokens: int = MAX_TOKENS,
    max_phrase_tokens: int = MAX_TOKENS,
    max_boxes: int = MAX_BOXES,
    zero_area: str = "fix",
    source: str = "caption",
) -> Layout:
    """A layout from plain text and entities (:class:`Entity` or ``{"phrase", "boxes"}`` dicts)."""
    if zero_area not in ("fix", "drop"):
        raise LayoutError(f"zero_area must be 'fix' or 'drop', got {zero_area!r}")
    if max_boxes < 0:
        raise LayoutError(f"max_boxes must be >= 0, got {max_boxes}")
    count = tokenizer_counter(tokenizer) if tokenizer is not None else approx_token_count
    counts = dict.fromkeys(COUNT_KEYS, 0)
    canvas, content = canvas_geometry(image_size, mode, canvas_size)

    kept = _kept_boxes(entities, zero_area, max_boxes, counts)
    phrases = _cut_phrases([phrase for phrase, _ in kept], max_phrase_tokens, count, counts)
    prompt, prompt_cut = opening(plain_text, max_prompt_tokens, count)
    counts["prompt_truncated"] = int(prompt_cut)
    source_boxes = [[round(v, 6) for v in b.as_list()] for _, b in kept]
    return Layout(
        example_id=example_id,
        prompt=prompt,
        phrases=phrases,
        boxes=[[round(v, 6) for v in to_canvas(b, content)] for b in source_boxes],
        source_boxes=source_boxes,
        canvas=canvas,
        mode=mode,
        content=content,
        image_size=tuple(image_size) if image_size else None,  # type: ignore[arg-type]
        source=source,
        token_counter="tokenizer" if tokenizer is not None else "approx",
        counts=counts,
        text=plain_text,
    )


def layout_from_record(
    record: Any, *, image_size: tuple[int, int] | None = None, dialect: str = "auto", **options: Any
) -> Layout:
    """The layout of a :class:`~pancap_retrieval.captions.store.CaptionRecord` of an image of ``image_size``.

    Entities come from the stage outputs when the captioner kept them (the last stage with an ``entities``
    list, already fractions of the image), else from the caption's boxes read in ``dialect`` (its store's,
    :func:`~pancap_retrieval.captions.store.store_dialect`) on the image's size; the prompt always comes from the
    caption's plain text. Options are those of :func:`build_layout`.
    """
    if getattr(record, "status", "ok") != "ok" or not isinstance(record.caption, str):
        raise LayoutError(f"{record.example_id}: caption generation failed ({record.error or 'no caption'})")
    from_stages = entities_from_stages(record.stages or {})
    if from_stages is not None:
        parsed = parse_caption(record.caption)  # only the text: the boxes are the stage's
        if not parsed.plain_text.strip() and not parsed.entities:
            raise LayoutError(f"{record.example_id}: empty caption")
        name, entities = from_stages
        return build_layout(
            record.example_id,
            parsed.plain_text,
            entities,
            image_size=image_size,
            source=f"stages:{name}",
            **options,
        )
    return layout_from_caption(record.caption, record.example_id, dialect=dialect, image_size=image_size, **options)


def layout_from_caption(text: str, example_id: str = "", *, dialect: str = "auto", **options: Any) -> Layout:
    """The layout of a caption text, its boxes read in ``dialect`` on ``image_size`` (see :func:`build_layout`
    for the options).

    >>> layout = layout_from_caption("A dog [[0.1, 0.2, 0.5, 0.9]] on grass.", "x", image_size=(200, 100))
    >>> layout.prompt, layout.phrases, layout.boxes
    ('A dog on grass.', ['A dog'], [[0.1, 0.35, 0.5, 0.7]])
    >>> layout_from_caption("A photo <box>[[0, 167, 1000, 833]]</box>.", "x", image_size=(451, 300)).source_boxes
    [[0.0, 0.0, 1.0, 1.0]]
    """
    size = options.get("image_size")
    parsed = read_boxes(text, dialect, size, fix=f"{example_id or 'caption'}: pass the image size (image_size=)")
    if not parsed.plain_text.strip() and not parsed.entities:
        raise LayoutError(f"{example_id}: empty caption")
    return build_layout(example_id, parsed.plain_text, parsed.entities, **options)


__all__ = [
    "CANVAS_MODES",
    "MAX_BOXES",
    "MAX_TOKENS",
    "MIN_SIDE",
    "Layout",
    "LayoutError",
    "approx_token_count",
    "build_layout",
    "canvas_geometry",
    "cut_to_tokens",
    "entities_from_stages",
    "layout_from_caption",
    "layout_from_record",
    "opening",
    "tokenizer_counter",
]
