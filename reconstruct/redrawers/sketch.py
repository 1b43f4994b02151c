"""The offline default redrawer: no model, the layout itself drawn as labelled boxes on a blank canvas,
with the global prompt written underneath them.

It is named for what it is. It shows what a layout-to-image model would be asked to draw, and gives the rest of
the pipeline (fidelity scores, galleries) real images to work on where no generative weights can be had.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconstruct.drawing import draw_boxes, font
from reconstruct.redrawers.base import Redrawer

if TYPE_CHECKING:
    from PIL import Image

    from reconstruct.layout import Layout


class SketchRedrawer(Redrawer):
    """Labelled, filled boxes on a light canvas; the letterbox bars in mid grey. Seeds are not used.

    The prompt is written in dark grey on a light band at the bottom of the image, a line a sixteenth of the
    content's short side high (still legible in a half-size thumbnail).
    """

    name = "sketch"
    default_batch_size = 64
    # Bumped when the drawing changes, so that a rerun redraws rather than keeps sketches drawn the old way.
    style = 2

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
            ImageDraw.Draw(canvas).rectangle(
                (round(x0 * w), round(y0 * h), round(x1 * w) - 1, round(y1 * h) - 1), fill=self.background
            )
            sketch = draw_boxes(canvas, layout.boxes, layout.phrases, fill_alpha=110)
            if layout.prompt:
                sketch = _write_prompt(sketch, layout.prompt, (x0 * w, y0 * h, x1 * w, y1 * h))
            images.append(sketch)
        return images

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "canvas_size": self.canvas_size, "model": None, "style": self.style}


def _write_prompt(image: Image.Image, prompt: str, area: tuple[float, float, float, float]) -> Image.Image:
    """``image`` with ``prompt`` wrapped by measured width at the bottom of ``area`` (pixels), on a light band,
    at most two fifths of the area high."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = area
    size = max(10, round(min(right - left, bottom - top) / 16))
    text_font = font(size)
    measure = ImageDraw.Draw(image)
    lines: list[str] = []
    for word in prompt.split():
        if lines and measure.textlength(f"{lines[-1]} {word}", font=text_font) <= right - left - 12:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    line_height = round(size * 1.25)
    lines = lines[: max(1, int(0.4 * (bottom - top) // line_height))]
    band_top = round(bottom) - len(lines) * line_height - 8
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((round(left), band_top, round(right) - 1, round(bottom) - 1), fill=(255, 255, 255, 200))
    draw.multiline_text(
        (round(left) + 6, band_top + 4), "\n".join(lines), fill=(40, 40, 40, 255), font=text_font,
        spacing=line_height - size,
    )  # fmt: skip
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
