"""Boxes in the one form used downstream: xyxy normalised to [0, 1] of the original image.

Box dialects that real captioners emit, and how each maps to that form:

- ``asmv2``: ``<box>[[x1, y1, x2, y2]]</box>``, integers in [0, 1000) of the image after it was padded to a
  square of side max(w, h), centred (PancapChain / ASMv2, CLIP ViT-L/14-336 in pad mode).
- ``norm``: ``[[0.x, 0.x, 0.x, 0.x]]``, floats in [0, 1] of the original image (SA-Pancap ground truth).
- ``pixel``: ``[x1, y1, x2, y2]`` in pixels of the original image (the paper's illustrations).

``asmv2`` and ``pixel`` (:data:`SIZED_DIALECTS`) mean nothing without the image's width and height: consumers of
boxes read them with :func:`~pancap_retrieval.captions.model.read_boxes`, which refuses them without a size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DIALECTS = ("asmv2", "norm", "pixel")
SIZED_DIALECTS = ("asmv2", "pixel")  # read on the image's size: without it a box is not a place on the image
ASMV2_SCALE = 1000
# How far outside the image (as a fraction of it) a coordinate may fall and still be read as a box, clamped and
# flagged; further out the numbers are not coordinates of the dialect and the box is malformed.
RANGE_TOLERANCE = 0.25


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, xyxy, normalised to [0, 1] of the original image."""

    x1: float
    y1: float
    x2: float
    y2: float

    def as_list(self, ndigits: int | None = None) -> list[float]:
        values = [self.x1, self.y1, self.x2, self.y2]
        return [round(v, ndigits) for v in values] if ndigits is not None else values

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes.

    >>> iou(Box(0, 0, 0.5, 1), Box(0.25, 0, 0.75, 1))
    0.3333333333333333
    """
    iw = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    ih = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = iw * ih
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _padding(width: int, height: int) -> tuple[float, float, float]:
    side = float(max(width, height))
    return side, (side - width) / 2, (side - height) / 2


def to_normalised(
    values: list[float], dialect: str, width: int | None = None, height: int | None = None
) -> list[float]:
    """Map four raw numbers of ``dialect`` to normalised xyxy (not yet clamped).

    >>> to_normalised([0, 250, 1000, 750], "asmv2", width=200, height=100)
    [0.0, 0.0, 1.0, 1.0]
    >>> to_normalised([10, 20, 110, 70], "pixel", width=200, height=100)
    [0.05, 0.2, 0.55, 0.7]
    """
    if dialect == "norm":
        return [float(v) for v in values]
    if width is None or height is None:
        if dialect == "asmv2":  # fractions of the padded square, not of the image: read_boxes refuses these
            return [v / ASMV2_SCALE for v in values]
        raise ValueError("pixel boxes need the image size")
    if dialect == "asmv2":
        side, pad_x, pad_y = _padding(width, height)
        x1, y1, x2, y2 = (v / ASMV2_SCALE * side for v in values)
        return [(x1 - pad_x) / width, (y1 - pad_y) / height, (x2 - pad_x) / width, (y2 - pad_y) / height]
    if dialect == "pixel":
        x1, y1, x2, y2 = values
        return [x1 / width, y1 / height, x2 / width, y2 / height]
    raise ValueError(f"unknown box dialect {dialect!r}; known: {', '.join(DIALECTS)}")


def read_quad(
    numbers: list[str], dialect: str, width: int | None = None, height: int | None = None
) -> tuple[Box | None, str, bool]:
    """Four number strings of ``dialect`` as a box: ``(box, "", clamped)``, or ``(None, why not, False)``.

    The numbers must be finite, ordered (x1 <= x2, y1 <= y2) and within the image give or take
    :data:`RANGE_TOLERANCE` (ASMV2 on its 0..1000 square); a box a little outside is clamped.

    >>> read_quad(["0.1", "2e-1", "0.3", "0.4"], "norm")
    (Box(x1=0.1, y1=0.2, x2=0.3, y2=0.4), '', False)
    >>> read_quad(["0.5", "0.1", "0.2", "0.4"], "norm")[1]
    'corners out of order (x1 > x2 or y1 > y2)'
    """
    if len(numbers) != 4:
        return None, f"{len(numbers)} numbers instead of 4", False
    values = [float(n) for n in numbers]
    if not all(math.isfinite(v) for v in values):
        return None, "not a finite number", False
    if values[0] > values[2] or values[1] > values[3]:
        return None, "corners out of order (x1 > x2 or y1 > y2)", False
    try:
        normal = to_normalised(values, dialect, width, height)
    except ValueError as exc:
        return None, str(exc), False
    scaled = [v / ASMV2_SCALE for v in values] if dialect == "asmv2" else normal
    if any(v < -RANGE_TOLERANCE or v > 1 + RANGE_TOLERANCE for v in scaled):
        return None, f"outside the image for the {dialect} dialect", False
    fixed = [min(1.0, max(0.0, v)) for v in normal]
    return Box(*fixed), "", any(abs(a - b) > 1e-9 for a, b in zip(fixed, normal))


def from_normalised(
    box: Box, dialect: str, width: int | None = None, height: int | None = None, ndigits: int = 3
) -> list[float] | list[int]:
    """Map a normalised box to the raw numbers of ``dialect`` (the inverse of :func:`to_normalised`).

    >>> from_normalised(Box(0.0, 0.0, 1.0, 1.0), "asmv2", width=200, height=100)
    [0, 250, 999, 750]
    """
    if dialect == "norm":
        return box.as_list(ndigits)
    if width is None or height is None:
        if dialect == "asmv2":
            return [min(ASMV2_SCALE - 1, round(v * ASMV2_SCALE)) for v in box.as_list()]
        raise ValueError("pixel boxes need the image size")
    if dialect == "asmv2":
        side, pad_x, pad_y = _padding(width, height)
        xs = [(box.x1 * width + pad_x) / side, (box.x2 * width + pad_x) / side]
        ys = [(box.y1 * height + pad_y) / side, (box.y2 * height + pad_y) / side]
        raw = [xs[0], ys[0], xs[1], ys[1]]
        return [min(ASMV2_SCALE - 1, max(0, round(v * ASMV2_SCALE))) for v in raw]
    if dialect == "pixel":
        return [round(box.x1 * width), round(box.y1 * height), round(box.x2 * width), round(box.y2 * height)]
    raise ValueError(f"unknown box dialect {dialect!r}; known: {', '.join(DIALECTS)}")


def format_box_group(
    boxes: list[Box], dialect: str, width: int | None = None, height: int | None = None, ndigits: int = 3
) -> str:
    """Write one or more boxes of one phrase in ``dialect``.

    >>> format_box_group([Box(0.1, 0.2, 0.3, 0.4)], "norm")
    '[[0.1, 0.2, 0.3, 0.4]]'
    >>> format_box_group([Box(0.1, 0.2, 0.3, 0.4), Box(0, 0, 1, 1)], "asmv2")
    '<box>[[100, 200, 300, 400], [0, 0, 999, 999]]</box>'
    """
    quads = [from_normalised(b, dialect, width, height, ndigits) for b in boxes]
    if dialect == "pixel":
        return ", ".join("[" + ", ".join(str(v) for v in q) + "]" for q in quads)
    inner = "[" + "], [".join(", ".join(str(v) for v in q) for q in quads) + "]"
    return f"<box>[{inner}]</box>" if dialect == "asmv2" else f"[{inner}]"
