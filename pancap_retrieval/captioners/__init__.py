"""Captioners by name, loaded lazily: ``get_captioner("detector")``, ``pancap list captioners``."""

from __future__ import annotations

from typing import Any

from pancap_retrieval.errors import RegistryError
from pancap_retrieval.registry import Registry

CAPTIONERS = Registry(
    "captioner",
    {
        "reference": "pancap_retrieval.captioners.reference:ReferenceCaptioner",
        "detector": "pancap_retrieval.captioners.detector:DetectorCaptioner",
        "pancapchain": "pancap_retrieval.captioners.pancapchain:PancapChainCaptioner",
        "qwen2.5-vl": "pancap_retrieval.captioners.hf_vlm:Qwen25VLCaptioner",
        "llava-1.5": "pancap_retrieval.captioners.hf_vlm:Llava15Captioner",
        "sharegpt4v": "pancap_retrieval.captioners.hf_vlm:ShareGPT4VCaptioner",
        "blip2": "pancap_retrieval.captioners.hf_vlm:Blip2Captioner",
        "hf": "pancap_retrieval.captioners.hf_vlm:ImageTextToTextCaptioner",
    },
)
# Captions that come from a file rather than a model: imported with `pancap captions import`.
PRECOMPUTED = "precomputed"


def get_captioner(name: str, **options: Any):
    """Build the captioner registered as ``name`` with its options (``model=``, ``batch_size=``, ...)."""
    import inspect

    factory = CAPTIONERS.get(name)
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(options) - set(parameters)) if not takes_any else []
    if unknown:
        known = ", ".join(p for p in parameters if p != "self")
        raise RegistryError(f"captioner {name!r} has no option {', '.join(unknown)}; its options: {known}")
    return factory(**options)
