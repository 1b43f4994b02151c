"""The paper's short-caption rows: GIT (``GitForCausalLM``) and BLIP (``BlipForConditionalGeneration``).

Both caption from the image alone (BLIP after an optional text prompt, which is cut from the caption as BLIP's own
code does). Every image of a batch has the same prompt, so a batch needs no padding and captions equal one by one.
Decoding is greedy by default (``num_beams=1``, as every pancap captioner); BLIP's own evaluation used beam search
(``-o num_beams=3``). The paper does not name its checkpoints: the defaults are the large COCO-finetuned ones.
"""

from __future__ import annotations

import logging
from typing import Any

from pancap_retrieval.captioners.base import Captioner, Example, batches
from pancap_retrieval.captioners.generation import is_oom, load_checkpoint, map_safely
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.errors import OptionError

log = logging.getLogger(__name__)


class ImageCaptioner(Captioner):
    """A captioning model that reads pixels and an optional prompt and writes a short caption."""

    name = "git"
    default_model: str | None = "microsoft/git-large-coco"
    model_class = "GitForCausalLM"
    default_prompt = ""
    default_batch_size = 16
    reads_description = False

    def __init__(
        self,
        model: str | None = None,
        prompt: str | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = 50,
        num_beams: int = 1,
        loaded: tuple[Any, Any] | None = None,
    ) -> None:
        if num_beams < 1:
            raise OptionError(f"num_beams must be >= 1, not {num_beams}")
        self.model_id, self.model, self.processor = load_checkpoint(
            model or self.default_model, self.model_class, device, dtype, loaded
        )
        self.tokenizer = self.processor.tokenizer
        self.prompt = self.default_prompt if prompt is None else prompt
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.batch_size = batch_size or self.default_batch_size
        self.default_batch_size = self.batch_size
        self.device = next(self.model.parameters()).device
        self.prompt_ids = self.encode_prompt()

    def encode_prompt(self) -> list[int]:
        """GIT: ``[CLS]`` then the prompt's word pieces (GIT's captioning and VQA input)."""
        ids = self.tokenizer(self.prompt, add_special_tokens=False)["input_ids"] if self.prompt else []
        return [int(self.tokenizer.cls_token_id), *ids]

    def echoed(self) -> int:
        """How many ids of the prompt ``generate`` returns before the caption."""
        return len(self.prompt_ids)

    def eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None]

    def pixels(self, example: Example) -> Any:
        image = example.image if getattr(example.image, "mode", "RGB") == "RGB" else example.image.convert("RGB")
        return self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]

    def generate(self, pixels: list[Any]) -> list[tuple[str, bool]]:
        """(caption, cut at max_new_tokens) per image, in ``batch_size`` batches halved on out-of-memory."""
        out: list[tuple[str, bool]] = []
        for batch in batches(pixels, self.batch_size):
            try:
                out += self._generate_batch(batch)
            except Exception as exc:
                if not is_oom(exc) or len(batch) == 1:
                    raise
                self.batch_size = max(1, len(batch) // 2)
                log.warning("out of memory at batch size %d; going on at %d", len(batch), self.batch_size)
                out += self.generate(batch)
        return out

    def _generate_batch(self, batch: list[Any]) -> list[tuple[str, bool]]:
        import torch

        dtype = next(self.model.parameters()).dtype
        pixel_values = torch.cat(batch).to(self.device, dtype)
        input_ids = torch.tensor([self.prompt_ids] * len(batch), device=self.device)
        with torch.inference_mode():
            sequences = self.model.generate(
                pixel_values=pixel_values,
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
            )
        eos, echoed = set(self.eos_ids()), self.echoed()
        results = []
        for row in sequences.tolist():
            new = row[echoed:]
            ended = next((i for i, token in enumerate(new) if token in eos), None)
            ids = new if ended is None else new[:ended]
            results.append((self.decode(row[:echoed], ids), ended is None and len(ids) >= self.max_new_tokens))
        return results

    def decode(self, prompt: list[int], ids: list[int]) -> str:
        """The caption: prompt and new ids decoded together (a word piece may continue the prompt's last word),
        then the prompt's text cut off, as BLIP's own code does."""
        text = self.tokenizer.decode([*prompt, *ids], skip_special_tokens=True).strip()
        prefix = self.tokenizer.decode(prompt, skip_special_tokens=True).strip()
        return text[len(prefix) :].strip() if prefix and text.startswith(prefix) else text

    def caption_batch(self, examples: list[Example]) -> list[CaptionRecord]:
        features, errors = map_safely(examples, self.pixels)
        order = sorted(features)
        captions = dict(zip(order, self.generate([features[i] for i in order])))
        records = []
        for i, example in enumerate(examples):
            if i in errors:
                records.append(CaptionRecord.failed(example.example_id, f"image rejected by the processor: {errors[i]}"))
                continue
            text, truncated = captions[i]
            meta = {"prompt": self.prompt, "truncated": truncated, "batch_size": self.batch_size}
            if not text:
                records.append(CaptionRecord.failed(example.example_id, "the model generated an empty caption", **meta))
            else:
                records.append(CaptionRecord(example.example_id, text, meta=meta))
        return records

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "revision": getattr(self.model.config, "_commit_hash", None),
            "model_class": type(self.model).__name__,
            "box_dialect": self.box_dialect,
            "prompt": self.prompt,
            "generation": {
                "decoding": "greedy" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)",
                "max_new_tokens": self.max_new_tokens,
                "batch_size": self.batch_size,
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "device": str(self.device),
            },
        }


class GitCaptioner(ImageCaptioner):
    """GIT captioning (``microsoft/git-large-coco`` by default): ``[CLS]``, then the caption."""


class BlipCaptioner(ImageCaptioner):
    """BLIP captioning (``Salesforce/blip-image-captioning-large`` by default), unconditional unless a prompt is
    given (BLIP's COCO captioner was trained after ``a picture of``); the prompt is cut from the caption."""

    name = "blip"
    default_model = "Salesforce/blip-image-captioning-large"
    model_class = "BlipForConditionalGeneration"

    def encode_prompt(self) -> list[int]:
        """``[CLS] prompt [SEP]``, as the processor gives it: BLIP's ``generate`` puts its decoder's BOS in place of
        ``[CLS]`` and drops the ``[SEP]``."""
        return [int(i) for i in self.tokenizer(self.prompt)["input_ids"]]

    def echoed(self) -> int:
        return len(self.prompt_ids) - 1

    def eos_ids(self) -> list[int]:
        return [int(self.model.config.text_config.sep_token_id)]
