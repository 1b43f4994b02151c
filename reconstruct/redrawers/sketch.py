"""The offline default redrawer: no model, the layout itself drawn as labelled boxes on a blank canvas,
with the global prompt written underneath them.

It is named for what it is. It shows what a layout-to-image model would be asked to draw, and gives the rest of
the pipeline (fidelity scores, galleries) real images to work on where no generative weights can be had.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from reconstruct.drawing import draw_boxes
from reconstruct.redrawers.base import Redrawer

if TYPE_CHECKING:
    from PIL import Image

    from reconstruct.layout import Layout


class SketchRedrawer(Redrawer):
    """Labelled, filled boxes on a light canvas; the letterbox bars in mid grey. Seeds are not used."""

    name = "sketch"
    default_batch_size = 64

    def __init__(
        self,
        canvas_size: int = 512,
        background: tuple[int, int, int] = (236, 236, 236),
        steps: int | None = None,
    ) -> None:
        """``steps`` is accepted for a uniform interface with the diffusion redrawers; a sketch has none."""
        self.canvas_size = canvas_size
        self.background = background

    def redraw(self, layouts: list[Layout], seeds: list[int]) -> list[Image.Image]:
        from PIL import Image, ImageDraw

        if len(layouts) != len(seeds):
            raise ValueError(f"{len(layouts)} layouts but {len(seeds)} seeds")
        images = []
        for layout in layouts:
            canvas = Image.new("RGB", layout.canvas, (128, 128, 128))
            w, h = layout.canvas
            x0, y0, x1, y1 = layout.content
            draw = ImageDraw.Draw(canvas)
            draw.rectangle(
                (round(x0 * w), round(y0 * h), round(x1 * w) - 1, round(y1 * h) - 1), fill=self.background
            )
            if layout.prompt:
                chars = max(8, int((x1 - x0) * w / 6.5))  # the default bitmap font is about 6 px a character
                text = "\n".join(textwrap.wrap(layout.prompt, chars)[: max(1, int((y1 - y0) * h / 12) - 1)])
                draw.multiline_text((round(x0 * w) + 4, round(y0 * h) + 4), text, fill=(150, 150, 150))
            images.append(draw_boxes(canvas, layout.boxes, layout.phrases, fill_alpha=110))
        return images

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "canvas_size": self.canvas_size, "model": None}
