"""Baseline captioners through transformers: Qwen2.5-VL, LLaVA-1.5, ShareGPT4V, BLIP-2 and any image-text-to-text model.

Each is one greedy generation per image with a named prompt (:data:`PROMPTS`), batched across images with left
padding by the shared :class:`~pancap_retrieval.captioners.generation.Generator`. The prompt goes through the
processor's chat template when it has one, else it is the text given to the processor as is (BLIP-2).
"""

from __future__ import annotations

from typing import Any

from pancap_retrieval.captioners.base import Captioner, Example
from pancap_retrieval.captioners.generation import (
    caption_generator,
    load_checkpoint,
    map_safely,
)
from pancap_retrieval.captioners.pancapchain import require_converted
from pancap_retrieval.captions.model import format_caption, parse_caption
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.errors import ModelLoadError

PROMPTS: dict[str, str] = {
    "detailed": "Describe this image in detail.",
    "panoptic": (
        "Describe this image as a panoptic caption. Name every entity you can see, including people, animals, "
        "objects, text, and stuff regions such as sky, ground, water, walls or vegetation. Right after each "
        "entity's name, give its bounding box in pixel coordinates of this image as [x1, y1, x2, y2] (top-left "
        "and bottom-right corners); give several boxes when there are several instances. For each entity "
        "describe its attributes (colour, material, shape, size, state, text written on it) and its relations "
        "to the other entities (position, actions, interactions). End with the global state of the image: the "
        "scene, setting, lighting, time of day, weather and mood. Write fluent sentences, not a list."
    ),
    "brief": "Describe this image in one sentence.",
    "caption": "",  # plain captioning models (BLIP-2): no prompt at all
}


def resolve_prompt(prompt: str | None, default: str = "detailed") -> tuple[str, str]:
    """(name, text) of a named prompt, or ``("custom", text)`` for a prompt given as text.

    >>> resolve_prompt("detailed")
    ('detailed', 'Describe this image in detail.')
    >>> resolve_prompt("What is in the photo?")
    ('custom', 'What is in the photo?')
    """
    chosen = default if prompt is None else prompt
    if chosen in PROMPTS:
        return chosen, PROMPTS[chosen]
    if not chosen.strip():
        return "caption", ""
    return "custom", chosen


class ImageTextToTextCaptioner(Captioner):
    """Any transformers image-text-to-text model by hub id or directory, with a named prompt or prompt text."""

    name = "hf"
    default_model: str | None = None
    default_prompt = "detailed"
    model_class = "AutoModelForImageTextToText"
    default_batch_size = 4
    reads_description = False

    def __init__(
        self,
        model: str | None = None,
        prompt: str | None = None,
        *,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = 512,
        min_new_tokens: int = 0,
        static_cache: bool | None = None,
        loaded: tuple[Any, Any] | None = None,
    ) -> None:
        self.prompt_name, self.prompt = resolve_prompt(prompt, self.default_prompt)
        checked = None if loaded is not None else self.check_model(model or self.default_model)
        self.model_id, self.model, self.processor = load_checkpoint(
            checked, self.model_class, device, dtype, loaded
        )
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if getattr(self.tokenizer, "padding_side", None) is not None:
            self.tokenizer.padding_side = "left"
        image_token_id = getattr(self.model.config, "image_token_id", None)
        self.generator = caption_generator(
            self.model,
            self.tokenizer,
            never_generate=[image_token_id] if image_token_id is not None else [],
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            batch_size=batch_size,
            static_cache=static_cache,
        )
        self.default_batch_size = self.generator.batch_size

    def check_model(self, model: str | None) -> str:
        if not model:
            raise ModelLoadError(f"captioner {self.name!r} needs a model: pass a hub id or a local directory")
        return model

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "revision": getattr(self.model.config, "_commit_hash", None),
            "model_class": type(self.model).__name__,
            "box_dialect": self.box_dialect,
            "prompt_name": self.prompt_name,
            "prompt": self.prompt,
            "chat_template": bool(getattr(self.processor, "chat_template", None)),
            "generation": {**self.generator.settings(), **self.generator.stats.to_dict()},
        }

    def prompt_text(self) -> str:
        """The full text given to the processor: the chat template around image + prompt when there is one."""
        if getattr(self.processor, "chat_template", None):
            content: list[dict[str, str]] = [{"type": "image"}]
            if self.prompt:
                content.append({"type": "text", "text": self.prompt})
            messages = [{"role": "user", "content": content}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.prompt

    def encode(self, example: Example) -> dict[str, Any]:
        """Processor outputs for one image (batch dim 1); raises when the processor rejects the image."""
        features = self.processor(images=[example.image], text=[self.prompt_text()], return_tensors="pt")
        return dict(features)

    def postprocess(
        self, text: str, example: Example, features: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The caption to store from the generated text, and extra stage outputs to keep (none here)."""
        return text, {}

    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        features, errors = map_safely(examples, self.encode)
        order = sorted(features)
        generations = dict(zip(order, self.generator.generate([features[i] for i in order])))
        records = []
        for i, example in enumerate(examples):
            if i in errors:
                records.append(
                    CaptionRecord.failed(example.example_id, f"image rejected by the processor: {errors[i]}")
                )
                continue
            result = generations[i]
            caption, stages = self.postprocess(result.text, example, features[i])
            meta = {
                "prompt": self.prompt_name,
                "truncated": result.truncated,
                "batch_size": self.generator.batch_size,
            }
            if not caption.strip():
                record = CaptionRecord.failed(
                    example.example_id, "the model generated an empty caption", **meta
                )
                record.stages = stages
            else:
                record = CaptionRecord(example.example_id, caption, stages=stages, meta=meta)
            records.append(record)
        return records


class Qwen25VLCaptioner(ImageTextToTextCaptioner):
    """Qwen2.5-VL asked for a panoptic caption with pixel boxes.

    Qwen2.5-VL gives boxes in pixels of the image as resized by its processor (sides multiples of 28); they are
    rescaled to the original image's pixels in the stored caption, the raw answer is kept in ``stages["raw"]``.
    """

    name = "qwen2.5-vl"
    default_model = "Qwen/Qwen2.5-VL-7B-Instruct"
    box_dialect = "pixel"  # rescaled to the original image's pixels in postprocess
    default_prompt = "panoptic"

    def postprocess(
        self, text: str, example: Example, features: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        grid = features.get("image_grid_thw")
        patch = getattr(self.processor.image_processor, "patch_size", 14)
        if grid is None or not text:
            return text, {}
        _, rows, cols = (int(v) for v in grid[0])
        seen_w, seen_h = cols * patch, rows * patch
        parsed = parse_caption(text, "pixel", seen_w, seen_h)
        if not parsed.n_boxes or (seen_w, seen_h) == (example.width, example.height):
            return text, {"model_input_size": [seen_w, seen_h]}
        caption = format_caption(parsed, "pixel", example.width, example.height)
        return caption, {"raw": text, "model_input_size": [seen_w, seen_h]}


class Llava15Captioner(ImageTextToTextCaptioner):
    """LLaVA-1.5 (llava-hf conversion) asked for a detailed description."""

    name = "llava-1.5"
    default_model = "llava-hf/llava-1.5-7b-hf"
    default_prompt = "detailed"
    model_class = "LlavaForConditionalGeneration"


class ShareGPT4VCaptioner(ImageTextToTextCaptioner):
    """ShareGPT4V-7B, released in the original LLaVA format: convert it with ``pancap convert llava`` first."""

    name = "sharegpt4v"
    default_model = None
    source_model = "Lin-Chen/ShareGPT4V-7B"
    default_prompt = "detailed"
    model_class = "LlavaForConditionalGeneration"

    def check_model(self, model: str | None) -> str:
        hint = f"{self.source_model} --vision-tower Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12"
        return require_converted(model, self.name, hint)


class Blip2Captioner(ImageTextToTextCaptioner):
    """BLIP-2 (OPT-2.7B) as a plain captioner: no prompt."""

    name = "blip2"
    default_model = "Salesforce/blip2-opt-2.7b"
    default_prompt = "caption"
    model_class = "Blip2ForConditionalGeneration"
