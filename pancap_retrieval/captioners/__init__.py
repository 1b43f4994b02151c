"""Captioners by name, loaded lazily: ``get_captioner("detector")``, ``pancap list captioners``."""

from __future__ import annotations

from typing import Any

from pancap_retrieval.registry import Entry, Registry

CAPTIONERS = Registry(
    "captioner",
    {
        "reference": Entry(
            "pancap_retrieval.captioners.reference:ReferenceCaptioner",
            "the dataset's own description of each image (the oracle row); no weights",
        ),
        "detector": Entry(
            "pancap_retrieval.captioners.detector:DetectorCaptioner",
            "CenterNet COCO-80 detections turned into a panoptic caption; packaged ONNX weights, offline",
        ),
        "pancapchain": Entry(
            "pancap_retrieval.captioners.pancapchain:PancapChainCaptioner",
            "the paper's four-stage chain (localise, tag, add missing, describe); a converted checkpoint",
        ),
        "qwen2.5-vl": Entry(
            "pancap_retrieval.captioners.hf_vlm:Qwen25VLCaptioner",
            "Qwen2.5-VL asked for a panoptic caption with pixel boxes (default Qwen/Qwen2.5-VL-7B-Instruct)",
        ),
        "llava-1.5": Entry(
            "pancap_retrieval.captioners.hf_vlm:Llava15Captioner",
            "LLaVA-1.5 asked for a detailed description (default llava-hf/llava-1.5-7b-hf)",
        ),
        "sharegpt4v": Entry(
            "pancap_retrieval.captioners.hf_vlm:ShareGPT4VCaptioner",
            "ShareGPT4V-7B asked for a detailed description; convert it with `pancap convert llava` first",
        ),
        "blip2": Entry(
            "pancap_retrieval.captioners.hf_vlm:Blip2Captioner",
            "BLIP-2 as a plain captioner, no prompt (default Salesforce/blip2-opt-2.7b)",
        ),
        "git": Entry(
            "pancap_retrieval.captioners.paper:GitCaptioner",
            "GIT short captions, a row of the paper's table (GitForCausalLM; default microsoft/git-large-coco)",
        ),
        "blip": Entry(
            "pancap_retrieval.captioners.paper:BlipCaptioner",
            "BLIP short captions, a row of the paper's table (BlipForConditionalGeneration; default "
            "Salesforce/blip-image-captioning-large)",
        ),
        "hf": Entry(
            "pancap_retrieval.captioners.hf_vlm:ImageTextToTextCaptioner",
            "any transformers image-text-to-text model: -o model=ID_OR_DIR -o prompt=NAME_OR_TEXT",
        ),
    },
)
# Captions that come from a file rather than a model: imported with `pancap captions import`.
PRECOMPUTED = "precomputed"
PRECOMPUTED_DESCRIPTION = "captions imported from a file (`pancap captions import`)"


def get_captioner(name: str, **options: Any):
    """Build the captioner registered as ``name`` with its options (``model=``, ``batch_size=``, ...), checked."""
    return CAPTIONERS.build(name, **options)
