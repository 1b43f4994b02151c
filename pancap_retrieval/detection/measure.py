"""What can be measured from pixels: named colours of a region (CIELAB nearest palette colour) and global image
statistics (lighting, colour temperature, contrast, colourfulness, greyscale).

Every measure is deterministic: images are reduced with a box filter to at most ``ANALYSIS_SIDE`` pixels on the
long side, each pixel takes the name of its nearest palette colour in CIELAB (CIE76 distance), and a region's
colours are the names' pixel shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pancap_retrieval.captions.boxes import Box

ANALYSIS_SIDE = 192

# A small fixed palette of colour names (sRGB), chosen to be distinct in CIELAB.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (18, 18, 18),
    "dark grey": (70, 70, 70),
    "grey": (128, 128, 128),
    "light grey": (190, 190, 190),
    "white": (245, 245, 245),
    "red": (200, 30, 35),
    "dark red": (115, 20, 25),
    "orange": (235, 125, 35),
    "yellow": (235, 215, 45),
    "olive": (110, 110, 40),
    "green": (55, 150, 60),
    "dark green": (25, 75, 35),
    "teal": (30, 130, 130),
    "light blue": (140, 185, 230),
    "blue": (40, 80, 195),
    "navy": (15, 25, 110),
    "purple": (115, 55, 150),
    "pink": (235, 150, 180),
    "brown": (115, 70, 40),
    "tan": (190, 150, 105),
    "beige": (225, 205, 170),
}
COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of uint8 or 0..1 float sRGB values, any leading shape, last axis 3.

    >>> rgb_to_lab(np.array([[255, 0, 0], [0, 0, 0]], dtype=np.uint8)).round(2).tolist()  # sRGB red, black
    [[53.24, 80.09, 67.2], [0.0, 0.0, 0.0]]
    """
    from skimage.color import rgb2lab

    values = np.asarray(rgb)
    values = values.astype(np.float64) / 255.0 if values.dtype == np.uint8 else values.astype(np.float64)
    shape = values.shape
    return rgb2lab(values.reshape(-1, 1, 3)).reshape(shape)


_PALETTE_LAB = rgb_to_lab(np.array(list(PALETTE.values()), dtype=np.uint8))


def colour_indices(lab: np.ndarray) -> np.ndarray:
    """Index into :data:`COLOUR_NAMES` of the nearest palette colour of each Lab pixel."""
    flat = lab.reshape(-1, 3)
    # |x - p|^2 without the constant |x|^2: same argmin, one matrix product
    distances = (_PALETTE_LAB**2).sum(axis=1)[None, :] - 2.0 * flat @ _PALETTE_LAB.T
    return distances.argmin(axis=1).reshape(lab.shape[:-1])


def nearest_colour(rgb: tuple[int, int, int]) -> str:
    """The palette name of one sRGB colour.

    >>> nearest_colour((250, 0, 0)), nearest_colour((120, 75, 45)), nearest_colour((10, 10, 10))
    ('red', 'brown', 'black')
    """
    lab = rgb_to_lab(np.array([rgb], dtype=np.uint8))
    return COLOUR_NAMES[int(colour_indices(lab)[0])]


def colour_shares(indices: np.ndarray, top: int = 3, min_share: float = 0.12) -> list[tuple[str, float]]:
    """The most frequent colour names of a region with their pixel shares; the first is kept even when small.

    >>> colour_shares(np.array([4, 4, 4, 0, 5]))
    [('white', 0.6), ('black', 0.2), ('red', 0.2)]
    """
    if indices.size == 0:
        return []
    counts = np.bincount(indices.ravel(), minlength=len(COLOUR_NAMES))
    order = np.lexsort((np.arange(len(counts)), -counts))  # most pixels first; ties by palette order
    shares = counts / counts.sum()
    picked = [(COLOUR_NAMES[i], round(float(shares[i]), 4)) for i in order[:top] if shares[i] >= min_share]
    return picked or [(COLOUR_NAMES[int(order[0])], round(float(shares[order[0]]), 4))]


@dataclass
class ImageAnalysis:
    """An image reduced for measuring: its sRGB pixels (0..1), Lab, and palette index per pixel."""

    rgb: np.ndarray
    lab: np.ndarray
    names: np.ndarray

    @classmethod
    def of(cls, image: Any, side: int = ANALYSIS_SIDE) -> ImageAnalysis:
        """Analyse a PIL image (any mode); it is reduced with a box filter, never enlarged."""
        from PIL import Image

        from pancap_retrieval.detection.detector import to_rgb

        rgb = to_rgb(image)
        scale = side / max(rgb.width, rgb.height)
        if scale < 1:
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(size, Image.Resampling.BOX)
        values = np.asarray(rgb, dtype=np.float64) / 255.0
        lab = rgb_to_lab(values)
        return cls(values, lab, colour_indices(lab))

    def region(self, box: Box, inset: float = 0.1) -> np.ndarray:
        """Palette indices inside ``box`` shrunk by ``inset`` of its size on each side (at least one pixel)."""
        height, width = self.names.shape
        dx, dy = box.width * inset, box.height * inset
        x1 = min(width - 1, int(np.floor((box.x1 + dx) * width)))
        y1 = min(height - 1, int(np.floor((box.y1 + dy) * height)))
        x2 = max(x1 + 1, int(np.ceil((box.x2 - dx) * width)))
        y2 = max(y1 + 1, int(np.ceil((box.y2 - dy) * height)))
        return self.names[y1:y2, x1:x2]

    def region_colours(self, box: Box, top: int = 3) -> list[tuple[str, float]]:
        """Dominant colour names of the centre of ``box`` with their shares."""
        return colour_shares(self.region(box), top=top)

    def global_stats(self) -> dict[str, Any]:
        """Lighting, temperature, contrast, colourfulness, greyscale and palette of the whole image."""
        r, g, b = self.rgb[..., 0], self.rgb[..., 1], self.rgb[..., 2]
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        brightness = float(luma.mean())
        contrast = float(luma.std())
        warmth = float((r - b).mean())
        spread = (self.rgb.max(axis=-1) - self.rgb.min(axis=-1)) * 255.0
        greyscale = bool(np.percentile(spread, 99) <= 10.0)
        # Hasler & Suesstrunk (2003) colourfulness on 0..255 values.
        rg, yb = (r - g) * 255.0, (0.5 * (r + g) - b) * 255.0
        colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
        height, width = luma.shape
        return {
            "brightness": round(brightness, 4),
            "lighting": lighting_word(brightness),
            "contrast": round(contrast, 4),
            "contrast_level": "low" if contrast < 0.12 else ("high" if contrast > 0.26 else "moderate"),
            "warmth": round(warmth, 4),
            "temperature": "neutral" if greyscale else temperature_word(warmth),
            "colourfulness": round(colourfulness, 2),
            "saturation": "greyscale" if greyscale else saturation_word(colourfulness),
            "greyscale": greyscale,
            "palette": colour_shares(self.names, top=3, min_share=0.1),
            "brighter_half": brighter_half(luma),
            "analysed_size": [width, height],
        }


def lighting_word(brightness: float) -> str:
    """Lighting from mean luma in [0, 1].

    >>> [lighting_word(v) for v in (0.7, 0.45, 0.25, 0.1)]
    ['bright', 'moderate', 'dim', 'dark']
    """
    if brightness >= 0.55:
        return "bright"
    if brightness >= 0.35:
        return "moderate"
    if brightness >= 0.18:
        return "dim"
    return "dark"


def temperature_word(warmth: float) -> str:
    """Colour temperature from the mean red minus blue (in [-1, 1]).

    >>> [temperature_word(v) for v in (0.2, 0.0, -0.1)]
    ['warm', 'neutral', 'cool']
    """
    if warmth > 0.06:
        return "warm"
    if warmth < -0.04:
        return "cool"
    return "neutral"


def saturation_word(colourfulness: float) -> str:
    """Colourfulness (Hasler & Suesstrunk) in words.

    >>> [saturation_word(v) for v in (5, 30, 60)]
    ['muted', 'moderately colourful', 'vivid']
    """
    if colourfulness < 15:
        return "muted"
    if colourfulness < 45:
        return "moderately colourful"
    return "vivid"


def brighter_half(luma: np.ndarray, margin: float = 0.08) -> str | None:
    """Which half of the image is clearly brighter (a hint of where the light comes from), or None.

    >>> brighter_half(np.array([[1.0, 0.2], [1.0, 0.2]]))
    'left'
    """
    height, width = luma.shape
    halves = {}
    if width >= 2:
        halves["left"] = luma[:, : width // 2].mean() - luma[:, width - width // 2 :].mean()
    if height >= 2:
        halves["top"] = luma[: height // 2].mean() - luma[height - height // 2 :].mean()
    best, value = None, margin
    for side, diff in halves.items():
        if abs(diff) > value:
            best, value = side if diff > 0 else {"left": "right", "top": "bottom"}[side], abs(diff)
    return best
