"""Panoptic captions: the caption model (parse, format, strip) and the caption store."""

from pancap_retrieval.captions.boxes import DIALECTS, Box, iou
from pancap_retrieval.captions.model import (
    BoxGroup,
    Entity,
    PanopticCaption,
    format_caption,
    format_entities,
    parse_caption,
    strip_boxes,
)

__all__ = [
    "DIALECTS",
    "Box",
    "BoxGroup",
    "Entity",
    "PanopticCaption",
    "format_caption",
    "format_entities",
    "iou",
    "parse_caption",
    "strip_boxes",
]
