"""PancapChain: the paper's four-stage panoptic captioning chain on a LLaVA checkpoint (ASMv2-13B + LoRA).

By default the chain is the released inference procedure (Visual-AI/Pancap,
``llava/eval/model_vqa_loader_pancapchain.py`` run with ``--conv-mode vicuna_v1 --temperature 0``). Each stage is one
greedy generation on the same image, in the vicuna_v1 conversation with ``<image>\\n`` before the question:

1. localize every entity -> ``<box>[[x1, y1, x2, y2]]</box>, ...``
2. tag the stage-1 boxes -> ``dog <box>[[...]]</box>, ...``
3. name entities missing from stage 2
4. a hyper-detailed description based on the stage 2 and 3 entities: the caption.

Between stages the released string rules hand the answers on (:func:`released_boxes`, :func:`released_pairs`,
:func:`released_merge`): box integers pass through as generated. ``handoff="robust"`` uses pancap's parser instead
(:func:`robust_handoff`; README lists the differences). A prompt longer than the checkpoint's
``tokenizer_model_max_length`` is cut to its first that many positions (image features counted), as the released
model cuts it. Boxes are ASMv2 integers in 0..1000 of the image padded to a square (see
:mod:`pancap_retrieval.captions.boxes`). Each stage runs batched across images.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pancap_retrieval.captioners.base import Captioner, Example
from pancap_retrieval.captioners.conversation import VICUNA_V1
from pancap_retrieval.captioners.convert import llava_input_ids
from pancap_retrieval.captioners.generation import Generation, caption_generator, load_checkpoint, map_safely
from pancap_retrieval.captions.boxes import Box, format_box_group, to_normalised
from pancap_retrieval.captions.model import Entity, format_entities, parse_caption
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.errors import ModelLoadError, OptionError
from pancap_retrieval.loading import choose_device, choose_dtype

STAGE_PROMPTS: dict[str, str] = {
    "stage1": "Please localize all entities in this image.",
    "stage2": "Please specify the semantic tags of all entities based on their bounding boxes: {previous}",
    "stage3": "Please specify missing entities and their locations for this image based on these specified "
    "entities: {previous}",
    "stage4": "Please provide a hyper-detailed description for this image, including all entities, their "
    "locations, attributes, and relationships, as well as the global image status, based on boxes and tags: "
    "{previous}",
}
# The conversation every stage runs in: the released scripts' --conv-mode.
CONVERSATION = VICUNA_V1
HANDOFFS = ("released", "robust")
# Row controls for one stage of one example: (stage, example index) -> item keys (see ``run_chain``).
Options = Callable[[str, int], dict[str, Any]] | None
Pair = tuple[str, tuple[int, ...]]


# ----------------------------------------------------------------------- the released hand-off


def released_items(text: str) -> list[str]:
    """A stage answer cut into items as the released code cuts it: at each ``"</box>, "``, with every
    ``"</box>"`` of the last item removed.

    >>> released_items("a <box>[[1, 2, 3, 4]]</box>, b <box>[[5, 6, 7, 8]]</box>")
    ['a <box>[[1, 2, 3, 4]]', 'b <box>[[5, 6, 7, 8]]']
    """
    *items, last = text.split("</box>, ")
    return [*items, last.replace("</box>", "")]


def released_quad(text: str) -> tuple[int, ...]:
    """``[[x1, y1, x2, y2]]`` as the released code reads it: brackets stripped from both ends, split at ``", "``,
    each part through ``int``; a ValueError unless that gives exactly four integers."""
    numbers = tuple(int(part) for part in text.lstrip("[").rstrip("]").split(", "))
    if len(numbers) != 4:
        raise ValueError(f"{len(numbers)} numbers instead of 4")
    return numbers


def released_boxes(stage1: str) -> str:
    """The stage-2 prompt's box list from the stage-1 answer (the released ``deduplicate_box``): the boxes up to
    the first item that is not one box of four integers, exact repeats dropped, integers as generated.

    >>> released_boxes("<box>[[1, 2, 3, 4]]</box>, <box>[[1, 2, 3, 4]]</box>, <box>[[0, 0, 1000, 9]]</box>, "
    ...                "<box>[[5, 5, 6, 6]], [[7, 7, 8, 8]]</box>, <box>[[1, 1, 2, 2]]</box>")
    '<box>[[1, 2, 3, 4]]</box>, <box>[[0, 0, 1000, 9]]</box>'
    """
    boxes: list[tuple[int, ...]] = []
    for item in released_items(stage1):
        try:
            box = released_quad(item.replace("<box>", ""))
        except ValueError:
            break
        if box not in boxes:
            boxes.append(box)
    return ", ".join("<box>[[{}, {}, {}, {}]]</box>".format(*box) for box in boxes)


def released_pairs(text: str, pairs: list[Pair] | None = None) -> list[Pair]:
    """``pairs`` (a new list when None) extended with the (tag, box) items of a tag list, as the released
    ``extract_boxtag`` reads them: the tag is the text before the first ``" <box>"``, the box what follows it;
    reading stops at the first item without both, and an exact repeat of a (tag, box) already there is skipped.

    >>> released_pairs("dog <box>[[1, 2, 3, 4]]</box>, dog <box>[[1, 2, 3, 4]]</box>, cat<box>[[5, 6, 7, 8]]</box>")
    [('dog', (1, 2, 3, 4))]
    """
    pairs = [] if pairs is None else pairs
    for item in released_items(text):
        tag, *rest = item.split(" <box>")
        try:
            pair = (tag, released_quad(rest[0] if rest else ""))
        except ValueError:
            break
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def format_pairs(pairs: list[Pair]) -> str:
    """(tag, box) items as the released code writes them: ``tag <box>[[x1, y1, x2, y2]]</box>, ...``."""
    return ", ".join("{} <box>[[{}, {}, {}, {}]]</box>".format(tag, *box) for tag, box in pairs)


def released_merge(tagged: str, stage3: str) -> list[Pair]:
    """The stage-4 items (the released ``merge_and_deduplicate``): those of the stage-3 prompt's tag list, then
    the stage-3 answer's not already there, each text skipped when it starts with exactly ``"None"``.

    >>> released_merge("dog <box>[[1, 2, 3, 4]]</box>", "none: Dog <box>[[1, 2, 3, 4]]</box>")
    [('dog', (1, 2, 3, 4)), ('none: Dog', (1, 2, 3, 4))]
    >>> released_merge("dog <box>[[1, 2, 3, 4]]</box>", "None. cat <box>[[5, 6, 7, 8]]</box>")
    [('dog', (1, 2, 3, 4))]
    """
    pairs: list[Pair] = []
    for text in (tagged, stage3):
        if not text.startswith("None"):
            released_pairs(text, pairs)
    return pairs


def released_handoff(stage: str, outputs: dict[str, str], width: int, height: int) -> tuple[str, list[Entity]]:
    """The text the released chain puts into ``stage``'s prompt from the earlier answers in ``outputs``, and the
    tagged entities it names (boxes normalised, not clamped: what the integers say)."""
    if stage == "stage2":
        return released_boxes(outputs["stage1"]), []
    pairs = released_pairs(outputs["stage2"])
    tagged = format_pairs(pairs)  # the released deduplicate_boxtag: stage 3's input, and stage 4's base
    if stage == "stage4":
        pairs = released_merge(tagged, outputs["stage3"])
    entities = [Entity(tag, [Box(*to_normalised(list(box), "asmv2", width, height))]) for tag, box in pairs]
    return format_pairs(pairs), entities


# ----------------------------------------------------------------------- the robust hand-off


def box_list(text: str, width: int, height: int) -> str:
    """Stage-1 output reduced to its valid boxes in ASMv2 form (clamped to the image, repeats removed).

    >>> box_list("<box>[[0, 250, 500, 750]]</box>, <box>[[0, 250, 500, 750]]</box>, <box>[[10, 20", 200, 100)
    '<box>[[0, 250, 500, 750]]</box>'
    """
    caption = parse_caption(text, "asmv2", width, height)
    groups = [format_box_group(g.boxes, "asmv2", width, height) for g in caption.groups if g.boxes]
    return ", ".join(dict.fromkeys(groups))


def tag_entities(text: str, width: int, height: int) -> list[Entity]:
    """Entities of a tag list (``dog <box>[[..]]</box>, cat <box>[[..]]</box>``): each phrase is all the text
    since the previous box, and a box with no text before it joins the previous entity. Broken boxes are dropped.

    >>> entities = tag_entities("man in a red shirt <box>[[0, 0, 500, 500]]</box>, dog <box>[[1", 100, 100)
    >>> [(e.phrase, e.boxes[0].as_list()) for e in entities]
    [('man in a red shirt', [0.0, 0.0, 0.5, 0.5])]
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
    return entities


def merge_entities(stage2: list[Entity], stage3: list[Entity]) -> list[Entity]:
    """Stage-2 entities followed by the stage-3 ones not already there (same phrase, case aside, and same boxes).

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
    """True for a stage-3 answer that names no missing entity ("None", "none.", " None")."""
    return stage3.strip().lower().startswith("none")


def robust_handoff(stage: str, outputs: dict[str, str], width: int, height: int) -> tuple[str, list[Entity]]:
    """What ``handoff="robust"`` puts into ``stage``'s prompt: the answers read by pancap's caption parser (boxes
    found anywhere, clamped to the image and rewritten, broken ones skipped), and the entities it names."""
    if stage == "stage2":
        return box_list(outputs["stage1"], width, height), []
    entities = tag_entities(outputs["stage2"], width, height)
    if stage == "stage4":
        missing = "" if adds_nothing(outputs["stage3"]) else outputs["stage3"]
        entities = merge_entities(entities, tag_entities(missing, width, height))
    return format_entities(entities, "asmv2", width, height), entities


def chain_dtype(device: Any, dtype: str | None = None) -> Any:
    """The chain's torch dtype: the one asked, else fp16 on a GPU (the released model ran in fp16), fp32 elsewhere.

    >>> chain_dtype("cuda"), chain_dtype("cpu"), chain_dtype("cuda", "bf16")
    (torch.float16, torch.float32, torch.bfloat16)
    """
    return choose_dtype(device, dtype, gpu_default="fp16")


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
    reads_description = False  # the chain sees the image only: a changed description is no reason to caption again
    source_hint = (
        "OpenGVLab/ASMv2 --lora PANCAPCHAIN_LORA_DIR --vision-tower openai/clip-vit-large-patch14-336"
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = 1024,
        min_new_tokens: int = 0,
        static_cache: bool | None = None,
        loaded: tuple[Any, Any] | None = None,
        share_prefix: bool = True,
        handoff: Literal["released", "robust"] = "released",
    ) -> None:
        """``model``: a converted checkpoint dir (or hub id); ``loaded``: an already loaded (model, processor);
        ``share_prefix``: compute each image's system prompt and image tokens once for the four stages;
        ``handoff``: how one stage's answer becomes the next one's prompt, ``released`` or ``robust``."""
        if handoff not in HANDOFFS:
            raise OptionError(f"handoff {handoff!r} is not one of {', '.join(HANDOFFS)}; use -o handoff=released")
        self.handoff = handoff
        checked = None if loaded is not None else require_converted(model, self.name, self.source_hint)
        precision = chain_dtype(choose_device(device), dtype) if loaded is None else dtype
        self.model_id, self.model, self.processor = load_checkpoint(
            checked, "LlavaForConditionalGeneration", device, precision, loaded
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
        self.prompt_cap = getattr(config, "tokenizer_model_max_length", None)
        if self.prompt_cap is not None and self.prompt_cap <= prefix_length:
            raise ModelLoadError(
                f"{self.model_id}: tokenizer_model_max_length {self.prompt_cap} leaves no room for a question after "
                f"the system prompt and image ({prefix_length} tokens); raise it or remove it from config.json"
            )
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
            "conversation": CONVERSATION.name,
            "system": CONVERSATION.system,
            "prompts": dict(STAGE_PROMPTS),
            "handoff": self.handoff,
            "prompt_cap": self.prompt_cap,
            "box_dialect": "asmv2",
            "image_padding": bool(getattr(self.processor.image_processor, "do_pad", False)),
            "shared_prefix": self.share_prefix,
            "generation": {**self.generator.settings(), **self.generator.stats.to_dict()},
        }

    def _split_ids(self, question: str) -> tuple[list[int], list[int]]:
        """The prompt ids of ``question``, tokenized as LLaVA does (the text around ``<image>`` separately, the image
        token once per image feature), split after the image tokens: the prefix every stage of an image shares, and
        the rest."""
        ids = llava_input_ids(self.tokenizer, CONVERSATION.prompt(question))
        cut = ids.index(self.image_token_id)
        return ids[:cut] + [self.image_token_id] * self.n_image_tokens, ids[cut + 1 :]

    def prompt_ids(self, question: str) -> tuple[list[int], bool]:
        """The ids the model is given for ``question``, and whether they were cut: the released model keeps only
        the first ``tokenizer_model_max_length`` positions of a prompt, image features counted."""
        prefix, rest = self._split_ids(question)
        ids = prefix + rest
        if self.prompt_cap is not None and len(ids) > self.prompt_cap:
            return ids[: self.prompt_cap], True
        return ids, False

    def encode(self, question: str, pixel_values: Any) -> dict[str, Any]:
        """Model inputs for one image and question: the vicuna_v1 prompt's ids and the image's pixels."""
        return _ids_item(self.prompt_ids(question)[0], pixel_values=pixel_values)

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
    ) -> dict[int, tuple[Generation, bool]]:
        """Each example's generation for ``stage`` given the text its prompt takes, and whether the prompt was cut."""
        order = sorted(inputs)
        items, cut = [], []
        for i in order:
            ids, was_cut = self.prompt_ids(STAGE_PROMPTS[stage].format(previous=inputs[i]))
            extra = {"prefix": prefixes[i]} if prefixes else {"pixel_values": pixels[i]}
            items.append({**_ids_item(ids, **extra), **(options(stage, i) if options else {})})
            cut.append(was_cut)
        return dict(zip(order, zip(self.generator.generate(items), cut)))

    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        return self.run_chain(examples)[0]

    def run_chain(
        self, examples: list[Example], options: Options = None
    ) -> tuple[list[CaptionRecord], dict[str, dict[int, Generation]]]:
        """The four stages on a batch of examples: one record per example, and each stage's generations by example
        index. ``options(stage, index)`` adds row controls to that example's stage (``stop_length``, ``forced_ids``,
        ``record_logits``: see :class:`~pancap_retrieval.captioners.generation.Generator`), for benchmarks."""
        handoff = released_handoff if self.handoff == "released" else robust_handoff
        pixels, errors = map_safely(examples, self._pixels)
        prefixes = self._prefixes(pixels) if self.share_prefix and pixels else {}
        stages: dict[int, dict[str, Any]] = {i: {} for i in pixels}
        meta: dict[int, dict[str, Any]] = {i: {"truncated": [], "cut_prompts": []} for i in pixels}
        entities: dict[int, list[Entity]] = {i: [] for i in pixels}
        generations: dict[str, dict[int, Generation]] = {}
        for stage in STAGE_PROMPTS:
            prompts = {}
            for i in pixels:
                size = examples[i].width, examples[i].height
                prompts[i], entities[i] = handoff(stage, stages[i], *size) if stage != "stage1" else ("", [])
            generations[stage] = {}
            for i, (result, was_cut) in self._run_stage(stage, pixels, prompts, prefixes, options).items():
                generations[stage][i], stages[i][stage] = result, result.text
                meta[i]["truncated"] += [stage] if result.truncated else []
                meta[i]["cut_prompts"] += [stage] if was_cut else []
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
