"""Greedy text generation with a local causal LM, shared by the caption rewriter and the PancapScore judge.

The model is a local directory or a hub id already in the local Hugging Face cache; nothing is downloaded. It is
loaded on first use through :mod:`pancap_retrieval.loading` (device, dtype, model resolution). Each prompt is
sent as one user message through the tokenizer's chat template when it has one, else as plain text followed by
``plain_suffix``. Decoding is greedy and batched with left padding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import choose_device, choose_dtype, resolve_model


class GreedyLM:
    """A causal LM loaded lazily with ``AutoModelForCausalLM.from_pretrained``, decoding greedily.

    >>> lm = GreedyLM("owner/some-model", max_new_tokens=8)
    >>> lm.describe()["decoding"]
    {'do_sample': False, 'num_beams': 1, 'max_new_tokens': 8}
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: str | Any = "auto",
        max_new_tokens: int = 1024,
        plain_suffix: str = "",
        label: str = "model",
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model = str(model)
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.plain_suffix = plain_suffix
        self.label = label
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        """True once the model and tokenizer are in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the tokenizer and model (once); a failure is one :class:`ModelLoadError` naming the model."""
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = choose_device(self.device)
        dtype = choose_dtype(device, self.dtype)
        is_dir = Path(self.model).expanduser().is_dir()
        where = "directory" if is_dir else "hub id (local cache only; nothing is downloaded)"
        try:
            source = resolve_model(self.model)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            reason = first if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {first}"
            raise ModelLoadError(f"cannot load {self.label} {self.model!r} as a {where}: {reason}") from None
        tokenizer.padding_side = "left"  # decoder-only batches are padded on the left for generation
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = str(device)
        self._model = model.to(device).eval()
        self._tokenizer = tokenizer

    def input_text(self, prompt: str) -> str:
        """The text the model reads for one user message (chat template, else ``prompt + plain_suffix``)."""
        self.load()
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt + self.plain_suffix

    def generate(self, prompts: list[str], batch_size: int = 8) -> list[str]:
        """The decoded new tokens of each prompt's greedy continuation, in input order (not stripped)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.load()
        import torch

        tokenizer, model = self._tokenizer, self._model
        outputs: list[str] = []
        for start in range(0, len(prompts), batch_size):
            texts = [self.input_text(prompt) for prompt in prompts[start : start + batch_size]]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                model.device
            )
            with torch.inference_mode():
                generated = model.generate(
                    **inputs,
                    do_sample=False,
                    num_beams=1,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return outputs

    def describe(self) -> dict[str, Any]:
        """The model and decoding settings, for a manifest (does not load the model)."""
        return {
            "model": self.model,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "decoding": {"do_sample": False, "num_beams": 1, "max_new_tokens": self.max_new_tokens},
        }


__all__ = ["GreedyLM"]
