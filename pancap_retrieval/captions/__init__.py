"""Panoptic captions: the caption model (parse, format, strip) and the caption store."""

from pancap_retrieval.captions.boxes import DIALECTS, SIZED_DIALECTS, Box, iou
from pancap_retrieval.captions.model import (
    BoxGroup,
    Entity,
    PanopticCaption,
    format_caption,
    format_entities,
    parse_caption,
    read_boxes,
    strip_boxes,
)
from pancap_retrieval.captions.phrases import head_noun

__all__ = [
    "DIALECTS",
    "SIZED_DIALECTS",
    "Box",
    "BoxGroup",
    "Entity",
    "PanopticCaption",
    "format_caption",
    "format_entities",
    "head_noun",
    "iou",
    "parse_caption",
    "read_boxes",
    "strip_boxes",
]
