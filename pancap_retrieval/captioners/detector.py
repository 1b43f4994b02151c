"""The offline baseline captioner: a deterministic panoptic caption from the packaged COCO-80 detector and pixel
measurements.

It covers the five dimensions of a panoptic caption with what can be measured: entities and their counts (COCO
categories), locations (the box, plus words for where it is and how large), attributes (dominant named colours of
the box region), relations (geometry between salient pairs) and the global state (lighting, colour temperature,
contrast, colourfulness, greyscale, palette). Each detection becomes one entity whose box follows its phrase,
so :func:`~pancap_retrieval.captions.model.parse_caption` reads back exactly the detected boxes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pancap_retrieval.captioners.base import Captioner, Example
from pancap_retrieval.captions.boxes import DIALECTS, Box, format_box_group
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.detection.coco import count_phrase, ordinal
from pancap_retrieval.detection.detector import Detection, Detector
from pancap_retrieval.detection.measure import ImageAnalysis
from pancap_retrieval.registry import Count, Fraction

_LIGHTING_ADJECTIVE = {
    "bright": "brightly lit",
    "moderate": "moderately lit",
    "dim": "dimly lit",
    "dark": "dark",
}
_SATURATION_TEXT = {
    "muted": "the colours are muted",
    "moderately colourful": "the colours are moderately saturated",
    "vivid": "the colours are vivid",
}


@dataclass
class PlannedEntity:
    """A detection placed in the caption: its name, where it is, how large, and what colours it has."""

    detection: Detection
    name: str  # "cat", "second person"
    size: str
    horizontal: str
    vertical: str
    depth: str | None
    colours: list[tuple[str, float]]
    relations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def box(self) -> Box:
        return self.detection.box

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.detection.to_dict(),
            "area": round(self.box.area, 4),
            "size": self.size,
            "horizontal": self.horizontal,
            "vertical": self.vertical,
            "depth": self.depth,
            "colours": [[name, share] for name, share in self.colours],
        }


def join_words(items: list[str]) -> str:
    """``a, b and c``.

    >>> join_words(["a"]), join_words(["a", "b"]), join_words(["a", "b", "c"])
    ('a', 'a and b', 'a, b and c')
    """
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def size_word(area: float) -> str:
    """Relative size from the share of the image a box covers.

    >>> size_word(0.3), size_word(0.1), size_word(0.01)
    ('large', 'medium-sized', 'small')
    """
    if area >= 0.25:
        return "large"
    if area >= 0.05:
        return "medium-sized"
    return "small"


def location_words(box: Box) -> tuple[str, str]:
    """(horizontal, vertical) thirds of the box centre: left/centre/right, top/middle/bottom.

    >>> location_words(Box(0.0, 0.0, 0.2, 0.2)), location_words(Box(0.4, 0.7, 0.6, 1.0))
    (('left', 'top'), ('centre', 'bottom'))
    """
    cx, cy = box.center
    horizontal = "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "centre")
    vertical = "top" if cy < 1 / 3 else ("bottom" if cy > 2 / 3 else "middle")
    return horizontal, vertical


def location_phrase(horizontal: str, vertical: str) -> str:
    """Where in the frame, in words.

    >>> location_phrase("centre", "middle"), location_phrase("left", "middle"), location_phrase("right", "top")
    ('in the centre of the image', 'on the left side of the image', 'in the top right of the image')
    >>> location_phrase("centre", "bottom")
    'at the bottom centre of the image'
    """
    if horizontal == "centre" and vertical == "middle":
        return "in the centre of the image"
    if vertical == "middle":
        return f"on the {horizontal} side of the image"
    if horizontal == "centre":
        return f"at the {vertical} centre of the image"
    return f"in the {vertical} {horizontal} of the image"


def depth_word(area: float, largest: float, alone: bool) -> str | None:
    """Foreground / middle ground / background from a box's area relative to the largest detection's; a box
    under 2% of the image is background whatever the others (three distant birds are not in the foreground).

    >>> depth_word(0.5, 0.5, alone=False), depth_word(0.2, 0.5, alone=False), depth_word(0.01, 0.5, alone=False)
    ('foreground', 'middle ground', 'background')
    >>> depth_word(0.005, 0.006, alone=False), depth_word(0.005, 0.005, alone=True)
    ('background', 'background')
    >>> depth_word(0.05, 0.05, alone=True) is None
    True
    """
    if area < 0.02:
        return "background"
    if alone:
        return "foreground" if area >= 0.1 else None
    ratio = area / largest if largest > 0 else 0.0
    if ratio >= 0.5:
        return "foreground"
    return "background" if ratio < 0.15 else "middle ground"


def relation(a: Box, b: Box, near: float = 0.03) -> tuple[str, str]:
    """The geometric relation of box ``a`` to box ``b``: (relation name, verb phrase with ``{}`` for b's name).

    >>> relation(Box(0.4, 0.4, 0.5, 0.5), Box(0, 0, 1, 1))
    ('inside', 'is within the area of {}')
    >>> relation(Box(0, 0, 0.3, 0.5), Box(0.5, 0, 0.8, 0.5))
    ('left of', 'is to the left of {}')
    >>> relation(Box(0, 0, 0.3, 0.5), Box(0.31, 0.1, 0.6, 0.5))
    ('next to', 'is next to {}, on its left')
    >>> relation(Box(0, 0, 0.5, 0.5), Box(0.3, 0.3, 0.8, 0.8))
    ('overlapping', 'overlaps {}')
    """
    iw = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    ih = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = iw * ih
    if a.area > 0 and inter / a.area >= 0.9 and a.area < b.area:
        return "inside", "is within the area of {}"
    if b.area > 0 and inter / b.area >= 0.9 and b.area < a.area:
        return "contains", "extends around {}"
    smaller = min(a.area, b.area)
    if smaller > 0 and inter / smaller >= 0.05:
        return "overlapping", "overlaps {}"
    (ax, ay), (bx, by) = a.center, b.center
    if abs(ax - bx) >= abs(ay - by):
        side = "left of" if ax < bx else "right of"
        gap = max(b.x1 - a.x2, a.x1 - b.x2)
        if gap <= near and ih > 0:
            return "next to", f"is next to {{}}, on its {side.split()[0]}"
        return side, f"is to the {side} {{}}"
    side = "above" if ay < by else "below"
    gap = max(b.y1 - a.y2, a.y1 - b.y2)
    if gap <= near and iw > 0:
        return "next to", f"is next to {{}}, {side} it"
    return side, f"is {side} {{}}"


def plan_entities(detections: list[Detection], analysis: ImageAnalysis) -> list[PlannedEntity]:
    """Order detections for the caption and measure each one.

    Categories come in order of their best score; objects of one category from left to right (then top to
    bottom) and are numbered with ordinals when there are several.
    """
    best: dict[str, float] = {}
    for d in detections:
        best[d.label] = max(best.get(d.label, 0.0), d.score)
    order = sorted(
        detections, key=lambda d: (-best[d.label], d.label, d.box.center[0], d.box.center[1], -d.score)
    )
    counts = Counter(d.label for d in detections)
    largest = max((d.box.area for d in detections), default=0.0)
    seen: Counter[str] = Counter()
    planned = []
    for d in order:
        name = d.label if counts[d.label] == 1 else f"{ordinal(seen[d.label])} {d.label}"
        seen[d.label] += 1
        horizontal, vertical = location_words(d.box)
        planned.append(
            PlannedEntity(
                detection=d,
                name=name,
                size=size_word(d.box.area),
                horizontal=horizontal,
                vertical=vertical,
                depth=depth_word(d.box.area, largest, alone=len(detections) == 1),
                colours=analysis.region_colours(d.box),
            )
        )
    return planned


def plan_relations(
    entities: list[PlannedEntity], per_entity: int = 2, limit: int = 8
) -> list[dict[str, Any]]:
    """Relations of each entity to up to ``per_entity`` nearest entities introduced before it, ``limit`` in all."""
    relations: list[dict[str, Any]] = []
    for i, entity in enumerate(entities):
        if len(relations) >= limit:
            break
        cx, cy = entity.box.center
        nearest = sorted(
            range(i),
            key=lambda j: ((entities[j].box.center[0] - cx) ** 2 + (entities[j].box.center[1] - cy) ** 2, j),
        )
        for j in nearest[: min(per_entity, limit - len(relations))]:
            name, verb = relation(entity.box, entities[j].box)
            item = {
                "subject": i,
                "relation": name,
                "object": j,
                "text": verb.format(f"the {entities[j].name}"),
            }
            entity.relations.append(item)
            relations.append(item)
    return relations


def _colour_sentence(name: str, colours: list[tuple[str, float]]) -> str:
    if not colours:
        return ""
    if colours[0][1] >= 0.6 or len(colours) == 1:
        return f"The {name} is mostly {colours[0][0]}."
    return f"The {name}'s main colours are {join_words([c for c, _ in colours])}."


def _relation_sentence(name: str, texts: list[str]) -> str:
    """``The cup is above the table and to the left of the bowl.``: a repeated leading "is" is dropped."""
    if not texts:
        return ""
    parts = [texts[0]]
    for previous, text in pairwise(texts):
        parts.append(
            text.removeprefix("is ") if previous.startswith("is ") and text.startswith("is ") else text
        )
    return f"The {name} {join_words(parts)}."


def _percent(area: float) -> str:
    return "less than 1%" if area < 0.005 else f"about {round(area * 100)}%"


def compose_caption(
    detections: list[Detection],
    analysis: ImageAnalysis,
    width: int,
    height: int,
    dialect: str = "norm",
    score_threshold: float = 0.3,
    relations_per_entity: int = 2,
    max_relations: int = 8,
) -> tuple[str, dict[str, Any]]:
    """The caption text and its stage outputs (detections, measured entities, relations, global statistics)."""
    stats = analysis.global_stats()
    entities = plan_entities(detections, analysis)
    relations = plan_relations(entities, relations_per_entity, max_relations)

    lighting = _LIGHTING_ADJECTIVE[stats["lighting"]]
    palette = join_words([c for c, _ in stats["palette"]])
    if stats["greyscale"]:
        scene = f"a {lighting}, black-and-white scene in shades of {palette}"
    else:
        scene = f"a {lighting}, {stats['temperature']}-toned scene dominated by {palette}"
    if entities:
        counts = Counter(e.detection.label for e in entities)
        inventory = join_words([count_phrase(label, n) for label, n in counts.items()])
        paragraphs = [f"The image shows {inventory} in {scene}."]
    else:
        paragraphs = [
            f"The image shows {scene}. No objects of the 80 COCO categories were detected in it "
            f"(score threshold {score_threshold:.2f})."
        ]

    for entity in entities:
        box_text = format_box_group([entity.box], dialect, width, height)
        if dialect == "pixel":  # a bare number list is text; pixel boxes are read after a box cue
            box_text = f"(bounding box: {box_text})"
        where = location_phrase(entity.horizontal, entity.vertical)
        depth = f", in the {entity.depth}" if entity.depth else ""
        sentences = [
            f"The {entity.name} {box_text} is {entity.size}, covering {_percent(entity.box.area)} of the image, "
            f"and is {where}{depth}.",
            _colour_sentence(entity.name, entity.colours),
            _relation_sentence(entity.name, [r["text"] for r in entity.relations]),
        ]
        paragraphs.append(" ".join(s for s in sentences if s))

    paragraphs.append(_global_paragraph(stats))
    stages = {
        "detections": [d.to_dict() for d in detections],
        "entities": [e.to_dict() for e in entities],
        "relations": relations,
        "global": {**stats, "palette": [[c, s] for c, s in stats["palette"]]},
        "size": [width, height],
    }
    return "\n\n".join(paragraphs), stages


def _global_paragraph(stats: dict[str, Any]) -> str:
    light = (
        f"The lighting is {stats['lighting']}, with a mean brightness of {round(stats['brightness'] * 100)}%"
    )
    light += f" and {stats['contrast_level']} contrast"
    if stats["brighter_half"]:
        light += f"; the {stats['brighter_half']} half of the image is brighter"
    palette = join_words([c for c, _ in stats["palette"]])
    if stats["greyscale"]:
        colour = f"The image is greyscale, without colour; its tones are mostly {palette}."
    else:
        colour = (
            f"The colour balance is {stats['temperature']} and {_SATURATION_TEXT[stats['saturation']]}; "
            f"the overall palette is {palette}."
        )
    return f"{light}. {colour}"


class DetectorCaptioner(Captioner):
    """Panoptic captions from the packaged COCO-80 detector and pixel statistics; offline and deterministic."""

    name = "detector"
    default_batch_size = 8
    needs_image = True
    reads_description = False

    def __init__(
        self,
        score_threshold: Fraction = 0.3,
        dialect: Literal["norm", "asmv2", "pixel"] = "norm",
        nms_iou: Fraction = 0.5,
        model: str | Path | None = None,
        providers: list[str] | None = None,
        batch_size: int | None = None,
        relations_per_entity: Count = 2,
        max_relations: Count = 8,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown box dialect {dialect!r}; known: {', '.join(DIALECTS)}")
        if batch_size is not None:
            if batch_size < 1:
                raise ValueError(f"batch_size must be at least 1, got {batch_size}")
            self.default_batch_size = batch_size
        self.dialect = self.box_dialect = dialect
        self.relations_per_entity = relations_per_entity
        self.max_relations = max_relations
        self.detector = Detector(model, score_threshold=score_threshold, nms_iou=nms_iou, providers=providers)

    def caption_image(
        self, image: Any, width: int | None = None, height: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Caption one PIL image; ``width``/``height`` (the dataset's) size pixel and asmv2 boxes."""
        width = width if width and width > 0 else image.width
        height = height if height and height > 0 else image.height
        (detections,) = self.detector.detect([image])
        return compose_caption(
            detections,
            ImageAnalysis.of(image),
            width,
            height,
            self.dialect,
            self.detector.score_threshold,
            self.relations_per_entity,
            self.max_relations,
        )

    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        records = []
        for example in examples:
            try:
                text, stages = self.caption_image(example.image, example.width, example.height)
            except ValueError as exc:  # an image the detector cannot take (no pixels, not an image)
                records.append(CaptionRecord.failed(example.example_id, f"{example.example_id}: {exc}"))
                continue
            meta = {"n_entities": len(stages["entities"]), "dialect": self.dialect}
            records.append(CaptionRecord(example.example_id, text, stages=stages, meta=meta))
        return records

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "box_dialect": self.box_dialect,
            "relations_per_entity": self.relations_per_entity,
            "max_relations": self.max_relations,
            **self.detector.manifest(),
        }
