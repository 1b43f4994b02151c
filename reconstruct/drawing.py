"""Boxes with labels drawn on an image: the sketch redrawer's canvas and the gallery's layout overlays."""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


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


def draw_boxes(
    image: Image.Image,
    boxes: list[list[float]],
    labels: list[str],
    *,
    fill_alpha: int = 0,
    width: int | None = None,
    max_label_chars: int = 32,
) -> Image.Image:
    """A copy of ``image`` with normalised xyxy ``boxes`` outlined (and filled when ``fill_alpha`` > 0), labelled."""
    from PIL import Image, ImageDraw, ImageFont

    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = base.size
    line = width or max(1, round(min(w, h) / 170))
    font = ImageFont.load_default(size=max(10, round(min(w, h) / 32)))
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
            left, top, right, bottom = draw.textbbox((xy[0] + line + 2, xy[1] + line + 1), label, font=font)
            draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=(*colour, 220))
            draw.text((xy[0] + line + 2, xy[1] + line + 1), label, fill=(255, 255, 255, 255), font=font)
    return Image.alpha_composite(base, overlay).convert("RGB")
