"""The oracle row: each image's own dataset description used as its caption."""

from __future__ import annotations

from pancap_retrieval.captioners.base import Captioner, Example
from pancap_retrieval.captions.store import CaptionRecord


class ReferenceCaptioner(Captioner):
    """Returns the dataset's description; an image without one is recorded as failed."""

    name = "reference"
    default_batch_size = 64
    needs_image = False

    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        return [
            CaptionRecord(e.example_id, e.description)
            if e.description.strip()
            else CaptionRecord.failed(e.example_id, "the dataset has no description for this image")
            for e in examples
        ]
