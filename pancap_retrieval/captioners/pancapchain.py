"""PancapChain: the paper's four-stage panoptic captioning chain on a LLaVA checkpoint (ASMv2-13B + LoRA).

Each stage is one greedy generation on the same image, in LLaVA's vicuna_v1 conversation with ``<image>\\n``
before the question, with the prompts the released checkpoint was trained on:

1. localize every entity -> ``<box>[[x1, y1, x2, y2]]</box>, ...``
2. tag the stage-1 boxes -> ``dog <box>[[...]]</box>, ...``
3. name entities missing from stage 2 (an answer starting with "None" adds nothing); merged with stage 2,
   duplicates dropped
4. a hyper-detailed description based on the merged boxes and tags: the caption.

Boxes are ASMv2 integers in 0..1000 of the image padded to a square (see :mod:`pancap_retrieval.captions.boxes`);
the converted checkpoint's processor pads the same way. A truncated stage output loses only its broken box: the
next stage is prompted with the valid items, re-written in ASMv2 form. Each stage runs batched across images.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pancap_retrieval.captioners.base import Captioner, Example
from pancap_retrieval.captioners.convert import VICUNA_SYSTEM, llava_input_ids, vicuna_prompt
from pancap_retrieval.captioners.generation import Generation, caption_generator, load_checkpoint, map_safely
from pancap_retrieval.captions.boxes import format_box_group
from pancap_retrieval.captions.model import Entity, format_entities, parse_caption
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.errors import ModelLoadError

STAGE_PROMPTS: dict[str, str] = {
    "stage1": "Please localize all entities in this image.",
    "stage2": "Please specify the semantic tags of all entities based on their bounding boxes: {previous}",
    "stage3": "Please specify missing entities and their locations for this image based on these specified "
    "entities: {previous}",
    "stage4": "Please provide a hyper-detailed description for this image, including all entities, their "
    "locations, attributes, and relationships, as well as the global image status, based on boxes and tags: "
    "{previous}",
}
CONVERSATION = "vicuna_v1"
# Row controls for one stage of one example: (stage, example index) -> item keys (see ``run_chain``).
Options = Callable[[str, int], dict[str, Any]] | None


def box_list(text: str, width: int, height: int) -> tuple[str, int]:
    """Stage-1 output reduced to its valid boxes in ASMv2 form, repeats removed as the released chain does, and
    the number of broken items dropped.

    >>> box_list("<box>[[0, 250, 500, 750]]</box>, <box>[[0, 250, 500, 750]]</box>, <box>[[10, 20", 200, 100)
    ('<box>[[0, 250, 500, 750]]</box>', 1)
    """
    caption = parse_caption(text, "asmv2", width, height)
    groups = [format_box_group(g.boxes, "asmv2", width, height) for g in caption.groups if g.boxes]
    return ", ".join(dict.fromkeys(groups)), caption.malformed


def tag_entities(text: str, width: int, height: int) -> tuple[list[Entity], int]:
    """Entities of a tag list (``dog <box>[[..]]</box>, cat <box>[[..]]</box>``): each phrase is all the text
    since the previous box, and a box with no text before it joins the previous entity. Broken boxes are dropped
    and counted.

    >>> entities, broken = tag_entities("man in a red shirt <box>[[0, 0, 500, 500]]</box>, dog <box>[[1", 100, 100)
    >>> [(e.phrase, e.boxes[0].as_list()) for e in entities], broken
    ([('man in a red shirt', [0.0, 0.0, 0.5, 0.5])], 1)
    """
    caption = parse_caption(text, "asmv2", width, height)
    entities: list[Entity] = []
    previous_end = 0
    for group in caption.groups:
        prefix, previous_end = text[previous_end : group.start], group.end
        if not group.boxes:
            continue
        phrase = re.sub(r"^(?:and|or)\s+", "", prefix.strip(" \t\n,;.")).strip()
        if not phrase and entities:
            entities[-1].boxes.extend(group.boxes)
        else:
            entities.append(Entity(phrase, list(group.boxes)))
    return entities, caption.malformed


def merge_entities(stage2: list[Entity], stage3: list[Entity]) -> list[Entity]:
    """Stage-2 entities followed by the stage-3 ones not already there (same phrase, case aside, and same boxes).

    >>> from pancap_retrieval.captions.boxes import Box
    >>> a = [Entity("dog", [Box(0, 0, 0.5, 0.5)])]
    >>> [e.phrase for e in merge_entities(a, [Entity("Dog", [Box(0, 0, 0.5, 0.5)]), Entity("cat", [Box(0, 0, 1, 1)])])]
    ['dog', 'cat']
    """

    def key(entity: Entity) -> tuple:
        return entity.phrase.strip().lower(), tuple(tuple(b.as_list(3)) for b in entity.boxes)

    merged, seen = [], set()
    for entity in [*stage2, *stage3]:
        if key(entity) not in seen:
            seen.add(key(entity))
            merged.append(entity)
    return merged


def adds_nothing(stage3: str) -> bool:
    """True for a stage-3 answer that names no missing entity ("None", "None.")."""
    return stage3.strip().lower().startswith("none")


def require_converted(model: str | None, captioner: str, source_hint: str) -> str:
    """``model`` when it is a transformers checkpoint; a clear error for none or an original-format LLaVA dir."""
    hint = f"convert it first: `pancap convert llava {source_hint} --out DIR`, then pass --model DIR"
    if not model:
        raise ModelLoadError(f"{captioner} needs a converted checkpoint; {hint}")
    config = Path(str(model)).expanduser() / "config.json"
    if config.is_file():
        import json

        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{config}: unreadable ({exc})") from None
        if "LlavaLlamaForCausalLM" in architectures:
            raise ModelLoadError(f"{model} is an original LLaVA-format checkpoint; {hint}")
    return str(model)


def _ids_item(ids: list[int], **extra: Any) -> dict[str, Any]:
    """One row of model inputs: ``input_ids`` and its all-ones ``attention_mask`` (batch dim 1), plus ``extra``."""
    import torch

    input_ids = torch.tensor([ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **extra}


class PancapChainCaptioner(Captioner):
    """The four-stage PancapChain chain on a converted LLaVA checkpoint (``pancap convert llava``)."""

    name = "pancapchain"
    default_batch_size = 4
    source_hint = (
        "OpenGVLab/ASMv2 --lora PANCAPCHAIN_LORA_DIR --vision-tower openai/clip-vit-large-patch14-336"
    )

    def __init__(
        self,
        model: str | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = 1024,
        min_new_tokens: int = 0,
        static_cache: bool | None = None,
        loaded: tuple[Any, Any] | None = None,
        share_prefix: bool = True,
    ) -> None:
        """``model``: a converted checkpoint dir (or hub id); ``loaded``: an already loaded (model, processor);
        ``share_prefix``: compute each image's system prompt and image tokens once for the four stages."""
        checked = None if loaded is not None else require_converted(model, self.name, self.source_hint)
        self.model_id, self.model, self.processor = load_checkpoint(
            checked, "LlavaForConditionalGeneration", device, dtype, loaded
        )
        self.tokenizer = self.processor.tokenizer
        config = self.model.config
        self.image_token_id = int(config.image_token_id)
        vision = config.vision_config
        self.n_image_tokens = (vision.image_size // vision.patch_size) ** 2 + (
            config.vision_feature_select_strategy != "default"
        )
        self.share_prefix = share_prefix
        prefix_length = len(self._split_ids("")[0])
        # What one row holds at most: the stored prefix, the stage-4 prompt (template and the stage 2 and 3
        # answers) and its answer.
        self.tokens_per_row = prefix_length * (2 if share_prefix else 1) + 128 + 3 * max_new_tokens
        self.generator = caption_generator(
            self.model,
            self.tokenizer,
            never_generate=[self.image_token_id],
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            batch_size=batch_size,
            static_cache=static_cache,
            tokens_per_sequence=self.tokens_per_row,
        )
        self.default_batch_size = self.generator.batch_size

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "revision": getattr(self.model.config, "_commit_hash", None),
            "conversation": CONVERSATION,
            "system": VICUNA_SYSTEM,
            "prompts": dict(STAGE_PROMPTS),
            "box_dialect": "asmv2",
            "image_padding": bool(getattr(self.processor.image_processor, "do_pad", False)),
            "shared_prefix": self.share_prefix,
            "generation": {**self.generator.settings(), **self.generator.stats.to_dict()},
        }

    def _split_ids(self, question: str) -> tuple[list[int], list[int]]:
        """The prompt ids of ``question``, tokenized as LLaVA does (the text around ``<image>`` separately, the image
        token once per image feature), split after the image tokens: the prefix every stage of an image shares, and
        the rest."""
        ids = llava_input_ids(self.tokenizer, vicuna_prompt(question))
        cut = ids.index(self.image_token_id)
        return ids[:cut] + [self.image_token_id] * self.n_image_tokens, ids[cut + 1 :]

    def encode(self, question: str, pixel_values: Any) -> dict[str, Any]:
        """Model inputs for one image and question: the vicuna_v1 prompt's ids and the image's pixels."""
        prefix, rest = self._split_ids(question)
        return _ids_item(prefix + rest, pixel_values=pixel_values)

    def _pixels(self, example: Example) -> Any:
        out = self.processor.image_processor(images=[example.image], return_tensors="pt")
        return out["pixel_values"]

    def _prefixes(self, pixels: dict[int, Any]) -> dict[int, Any]:
        """Each image's shared prefix (system prompt and image tokens) prefilled once: the vision tower runs here."""
        prefix_ids, _ = self._split_ids("")
        order = sorted(pixels)
        return dict(
            zip(order, self.generator.prefill([_ids_item(prefix_ids, pixel_values=pixels[i]) for i in order]))
        )

    def _run_stage(
        self,
        stage: str,
        pixels: dict[int, Any],
        inputs: dict[int, str],
        prefixes: dict[int, Any],
        options: Options,
    ) -> dict[int, Generation]:
        order = sorted(inputs)
        items = []
        for i in order:
            prefix, rest = self._split_ids(STAGE_PROMPTS[stage].format(previous=inputs[i]))
            if prefixes:
                item = _ids_item(prefix + rest, prefix=prefixes[i])
            else:
                item = _ids_item(prefix + rest, pixel_values=pixels[i])
            items.append({**item, **(options(stage, i) if options else {})})
        return dict(zip(order, self.generator.generate(items)))

    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        return self.run_chain(examples)[0]

    def run_chain(
        self, examples: list[Example], options: Options = None
    ) -> tuple[list[CaptionRecord], dict[str, dict[int, Generation]]]:
        """The four stages on a batch of examples: one record per example, and each stage's generations by example
        index. ``options(stage, index)`` adds row controls to that example's stage (``stop_length``, ``forced_ids``,
        ``record_logits``: see :class:`~pancap_retrieval.captioners.generation.Generator`), for benchmarks."""
        pixels, errors = map_safely(examples, self._pixels)
        prefixes = self._prefixes(pixels) if self.share_prefix and pixels else {}
        stages: dict[int, dict[str, Any]] = {i: {} for i in pixels}
        meta: dict[int, dict[str, Any]] = {i: {"truncated": [], "broken_boxes": {}} for i in pixels}
        entities: dict[int, list[Entity]] = {}
        generations: dict[str, dict[int, Generation]] = {}

        def run(stage: str, prompts: dict[int, str]) -> None:
            generations[stage] = self._run_stage(stage, pixels, prompts, prefixes, options)
            for i, result in generations[stage].items():
                stages[i][stage] = result.text
                if result.truncated:
                    meta[i]["truncated"].append(stage)

        run("stage1", {i: "" for i in pixels})
        prompts = {}
        for i in pixels:
            example = examples[i]
            prompts[i], broken = box_list(stages[i]["stage1"], example.width, example.height)
            meta[i]["broken_boxes"]["stage1"] = broken
        run("stage2", prompts)
        for i in pixels:
            example = examples[i]
            entities[i], broken = tag_entities(stages[i]["stage2"], example.width, example.height)
            meta[i]["broken_boxes"]["stage2"] = broken
            prompts[i] = format_entities(entities[i], "asmv2", example.width, example.height)
        run("stage3", prompts)
        for i in pixels:
            example = examples[i]
            extra: list[Entity] = []
            if not adds_nothing(stages[i]["stage3"]):
                extra, broken = tag_entities(stages[i]["stage3"], example.width, example.height)
                meta[i]["broken_boxes"]["stage3"] = broken
            entities[i] = merge_entities(entities[i], extra)
            prompts[i] = format_entities(entities[i], "asmv2", example.width, example.height)
        run("stage4", prompts)
        return self._records(examples, errors, stages, meta, entities), generations

    def _records(
        self,
        examples: list[Example],
        errors: dict[int, str],
        stages: dict[int, dict[str, Any]],
        meta: dict[int, dict[str, Any]],
        entities: dict[int, list[Entity]],
    ) -> list[CaptionRecord]:
        records = []
        for i, example in enumerate(examples):
            if i in errors:
                records.append(
                    CaptionRecord.failed(example.example_id, f"image rejected by the processor: {errors[i]}")
                )
                continue
            stages[i]["entities"] = {"entities": [e.to_dict() for e in entities[i]]}
            meta[i]["batch_size"] = self.generator.stats.smallest_batch_size
            caption = stages[i]["stage4"]
            if not caption.strip():
                record = CaptionRecord.failed(example.example_id, "stage 4 generated an empty caption")
                record.stages, record.meta = stages[i], meta[i]
            else:
                record = CaptionRecord(example.example_id, caption, stages=stages[i], meta=meta[i])
            records.append(record)
        return records
