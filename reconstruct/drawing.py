"""Boxes with labels drawn on an image: the sketch redrawer's canvas and the gallery's grid.

Box ``i`` always gets ``palette(n)[i]``; the gallery's HTML layout panels and caption highlights use the same
colours (:func:`hex_colour`), so a box and its phrase match wherever they are shown.
"""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image, ImageFont


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours, evenly spaced in hue (golden-ratio steps).

    >>> palette(2)
    [(230, 57, 57), (57, 108, 230)]
    """
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.9)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def hex_colour(colour: tuple[int, int, int]) -> str:
    """``#rrggbb``.

    >>> hex_colour((230, 57, 57))
    '#e63939'
    """
    return "#{:02x}{:02x}{:02x}".format(*colour)


def ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``colour`` (WCAG relative luminance).

    >>> ink((57, 108, 230)), ink((158, 230, 57))
    ((255, 255, 255), (0, 0, 0))
    """

    def linear(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in colour)
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # contrast with white (1.05 / (L + 0.05)) against contrast with black ((L + 0.05) / 0.05)
    return (0, 0, 0) if (luminance + 0.05) ** 2 > 0.0525 else (255, 255, 255)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own scalable font at ``size`` pixels (its bitmap font where FreeType is missing)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=max(8, size))


def draw_boxes(
    image: Image.Image,
    boxes: list[list[float]],
    labels: list[str],
    *,
    fill_alpha: int = 0,
    width: int | None = None,
    max_label_chars: int = 32,
) -> Image.Image:
    """A copy of ``image`` with normalised xyxy ``boxes`` outlined (and filled when ``fill_alpha`` > 0), labelled.

    A label sits inside the top-left corner of its box, moved left or up where it would leave the image, in
    black or white on the box's colour.
    """
    from PIL import Image, ImageDraw

    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = base.size
    line = width or max(1, round(min(w, h) / 170))
    label_font = font(round(min(w, h) / 24))
    # Largest first, so that small boxes stay visible on top of the large ones.
    order = sorted(
        range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
    )
    colours = palette(len(boxes))
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        xy = (x1 * (w - 1), y1 * (h - 1), x2 * (w - 1), y2 * (h - 1))
        colour = colours[i]
        draw.rectangle(
            xy, fill=(*colour, fill_alpha) if fill_alpha else None, outline=(*colour, 255), width=line
        )
        label = labels[i] if len(labels[i]) <= max_label_chars else labels[i][: max_label_chars - 1] + "…"
        if label:
            left, top, right, bottom = draw.textbbox((0, 0), label, font=label_font)
            x = min(xy[0] + line + 2, w - (right - left) - 4)
            y = min(xy[1] + line + 1, h - (bottom - top) - 4)
            x, y = max(2, x) - left, max(2, y) - top
            draw.rectangle((x + left - 2, y + top - 2, x + right + 2, y + bottom + 2), fill=(*colour, 230))
            draw.text((x, y), label, fill=(*ink(colour), 255), font=label_font)
    return Image.alpha_composite(base, overlay).convert("RGB")
