"""The redrawer protocol: layouts in, one image per layout out, each from its own seed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from reconstruct.layout import MAX_TOKENS

if TYPE_CHECKING:
    from PIL import Image

    from reconstruct.layout import Layout


class Redrawer(ABC):
    """Draws images from layouts. ``tokenizer`` and the token limits tell the layout builder what fits."""

    name: str = "redrawer"
    default_batch_size: int = 1
    canvas_size: int = 512
    tokenizer: Any = None
    max_prompt_tokens: int = MAX_TOKENS
    max_phrase_tokens: int = MAX_TOKENS

    @abstractmethod
    def redraw(self, layouts: list[Layout], seeds: list[int]) -> list[Image.Image]:
        """One image per layout, in order, of the layout's canvas size; ``seeds[i]`` fixes image ``i``."""

    def layout_options(self) -> dict[str, Any]:
        """What :func:`reconstruct.layout.build_layout` needs to know of this redrawer."""
        return {
            "canvas_size": self.canvas_size,
            "tokenizer": self.tokenizer,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_phrase_tokens": self.max_phrase_tokens,
        }

    def manifest(self) -> dict[str, Any]:
        """Model ids, revisions and options: what a run's manifest records of this redrawer."""
        return {"name": self.name, "canvas_size": self.canvas_size}
