"""The batched generation engine shared by the model captioners: loading, device/dtype, batching, OOM back-off.

Every model path takes a hub id or a local directory and goes through ``from_pretrained``. Generation is greedy
and batched across images with left padding; on a GPU it runs in bf16 with SDPA attention and, when asked, with a
static KV cache (which transformers compiles on CUDA). A batch that runs out of memory is halved and retried; the
smallest batch size that worked is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import choose_device, choose_dtype, resolve_model

log = logging.getLogger(__name__)


def _load_error(model: str, what: str, exc: Exception) -> ModelLoadError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = ""
    if "torchvision" in first.lower():
        import torch

        version = torch.__version__.split("+")[0]
        hint = f" (this processor needs torchvision: install the build made for torch {version})"
    return ModelLoadError(f"cannot load {what} from {model!r}: {type(exc).__name__}: {first[:300]}{hint}")


def load_processor(model: str) -> Any:
    """``AutoProcessor.from_pretrained`` (the slow/PIL image processors are used when torchvision is absent)."""
    import transformers

    source = resolve_model(model)
    try:
        return transformers.AutoProcessor.from_pretrained(source)
    except Exception as exc:
        raise _load_error(str(model), "the processor", exc) from None


def load_model(
    model: str,
    model_class: str = "AutoModelForImageTextToText",
    device: Any = None,
    dtype: Any = None,
    attn_implementation: str = "sdpa",
) -> Any:
    """Load a transformers model (hub id or local dir) on ``device`` in ``dtype`` with SDPA attention, in eval mode."""
    import transformers

    source = resolve_model(model)
    device = choose_device(device) if not hasattr(device, "type") else device
    dtype = choose_dtype(device, dtype)
    cls = getattr(transformers, model_class)
    try:
        loaded = cls.from_pretrained(source, dtype=dtype, attn_implementation=attn_implementation)
    except (ValueError, ImportError) as exc:
        if "attn_implementation" not in str(exc) and "sdpa" not in str(exc).lower():
            raise _load_error(str(model), "the model", exc) from None
        try:  # an architecture without SDPA support: the default attention
            loaded = cls.from_pretrained(source, dtype=dtype)
        except Exception as inner:
            raise _load_error(str(model), "the model", inner) from None
    except Exception as exc:
        raise _load_error(str(model), "the model", exc) from None
    return loaded.to(device).eval()


def load_checkpoint(
    model: str | None,
    model_class: str,
    device: str | None = None,
    dtype: str | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> tuple[str, Any, Any]:
    """(model id, model, processor): loaded from a hub id or local dir, or taken from an in-memory ``loaded``."""
    if loaded is not None:
        model_obj, processor = loaded
        return str(getattr(model_obj.config, "_name_or_path", "") or "in-memory"), model_obj, processor
    if not model:
        raise ModelLoadError("a model is needed: pass a hub id or a local directory")
    target = choose_device(device)
    processor = load_processor(model)
    return model, load_model(model, model_class, target, choose_dtype(target, dtype)), processor


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA, MPS or a CPU allocator failure)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in str(exc).lower() or isinstance(exc, MemoryError)
    )


def auto_batch_size(model: Any, tokens_per_sequence: int, device: Any, ceiling: int = 64) -> int:
    """A first batch size from free GPU memory and the KV cache one sequence needs; 4 on CPU.

    The OOM back-off in :class:`Generator` corrects an estimate that is too high.
    """
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return min(4, ceiling)
    free, _ = torch.cuda.mem_get_info(device)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", 32)
    heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", 32)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    item = next(model.parameters()).element_size()
    kv = 2 * layers * heads * head_dim * item * tokens_per_sequence
    activations = 4 * config.hidden_size * item * tokens_per_sequence + 8 * config.vocab_size * 4
    size = int(free * 0.7 // max(1, kv + activations))
    return max(1, min(ceiling, 2 ** max(0, size.bit_length() - 1)))


def collate_left(
    items: Sequence[dict[str, Any]], pad_token_id: int, pad_to_multiple_of: int | None = None
) -> dict:
    """Batch per-example model inputs (each with batch dim 1): sequence tensors left-padded, the rest concatenated.

    A tensor counts as a sequence when its shape is ``[1, len(input_ids)]`` (``attention_mask``, token type ids).
    """
    import torch

    lengths = [int(item["input_ids"].shape[-1]) for item in items]
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if not all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = values
            continue
        is_sequence = all(v.dim() == 2 and v.shape == (1, n) for v, n in zip(values, lengths))
        if not is_sequence:
            batch[key] = torch.cat(values, dim=0)
            continue
        fill = pad_token_id if key == "input_ids" else 0
        out = torch.full((len(items), width), fill, dtype=values[0].dtype)
        for row, (value, n) in enumerate(zip(values, lengths)):
            out[row, width - n :] = value[0]
        batch[key] = out
    if "attention_mask" not in batch:
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, n in enumerate(lengths):
            mask[row, width - n :] = 1
        batch["attention_mask"] = mask
    return batch


@dataclass
class GenerationStats:
    """What a run of the engine did: batch sizes used, OOM back-offs, tokens and time spent."""

    batch_size: int = 0
    smallest_batch_size: int = 0
    oom_backoffs: int = 0
    generated_tokens: int = 0
    calls: int = 0
    seconds: float = 0.0
    history: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "smallest_batch_size": self.smallest_batch_size,
            "oom_backoffs": self.oom_backoffs,
            "generated_tokens": self.generated_tokens,
            "generate_calls": self.calls,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Generation:
    """One greedy continuation: its token ids (eos and padding removed), text, and whether it hit the length limit."""

    token_ids: list[int]
    text: str
    truncated: bool


class Generator:
    """Greedy, batched generation for a loaded model, with left padding and OOM back-off.

    ``static_cache`` uses transformers' static KV cache (compiled with CUDA graphs on a GPU); prompts are then
    padded to a multiple of ``pad_to_multiple_of`` so that few shapes are compiled.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = 1024,
        min_new_tokens: int = 0,
        batch_size: int | None = None,
        static_cache: bool | None = None,
        pad_to_multiple_of: int | None = None,
        suppress_token_ids: Sequence[int] = (),
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.static_cache = self.device.type == "cuda" if static_cache is None else static_cache
        self.pad_to_multiple_of = pad_to_multiple_of or (64 if self.static_cache else None)
        self.suppress_token_ids = sorted({int(t) for t in suppress_token_ids})
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad) if pad is not None else 0
        eos = getattr(model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_token_ids = {
            int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None
        }
        self.batch_size = batch_size or auto_batch_size(model, 1024 + max_new_tokens, self.device)
        self.stats = GenerationStats(batch_size=self.batch_size, smallest_batch_size=self.batch_size)

    def settings(self) -> dict[str, Any]:
        return {
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "static_cache": self.static_cache,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
        }

    def generate(self, items: Sequence[dict[str, Any]]) -> list[Generation]:
        """Greedy continuations of per-example inputs (processor outputs with batch dim 1), in input order.

        Inputs are sorted by length so batches carry little padding; a batch that runs out of memory is halved and
        retried, and the smaller size is kept for the rest of the run.
        """
        order = sorted(range(len(items)), key=lambda i: int(items[i]["input_ids"].shape[-1]))
        results: dict[int, Generation] = {}
        start = 0
        while start < len(order):
            chunk = order[start : start + self.batch_size]
            try:
                outputs = self._generate_batch([items[i] for i in chunk])
            except Exception as exc:
                if not is_oom(exc) or self.batch_size == 1:
                    raise
                self._free_memory()
                self.batch_size = max(1, self.batch_size // 2)
                self.stats.oom_backoffs += 1
                self.stats.smallest_batch_size = min(self.stats.smallest_batch_size, self.batch_size)
                log.warning("out of memory at batch size %d; retrying at %d", len(chunk), self.batch_size)
                continue
            results.update(zip(chunk, outputs))
            start += len(chunk)
        return [results[i] for i in range(len(items))]

    def _free_memory(self) -> None:
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()  # a no-op where CUDA was never initialised

    def _generate_batch(self, items: Sequence[dict[str, Any]]) -> list[Generation]:
        import time

        import torch

        batch = collate_left(items, self.pad_token_id, self.pad_to_multiple_of)
        inputs = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        dtype = next(self.model.parameters()).dtype
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(dtype)
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens or None,
            "do_sample": False,
            "num_beams": 1,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": sorted(self.eos_token_ids) or None,
            "return_dict_in_generate": False,
        }
        if self.suppress_token_ids:
            options["suppress_tokens"] = self.suppress_token_ids
        if self.static_cache:
            options["cache_implementation"] = "static"
        else:
            options["disable_compile"] = True
        began = time.perf_counter()
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, **options)
        self.stats.seconds += time.perf_counter() - began
        self.stats.calls += 1
        # Decoder-only models return prompt + continuation; models generating from embeddings return only the latter.
        prompt = inputs["input_ids"]
        width = prompt.shape[-1]
        echoes = sequences.shape[-1] >= width and torch.equal(sequences[:, :width].to(prompt.device), prompt)
        new = (sequences[:, width:] if echoes else sequences).tolist()
        outputs = []
        for row in new:
            ids, ended = [], False
            for token in row:
                if token in self.eos_token_ids:
                    ended = True
                    break
                ids.append(token)
            while ids and ids[-1] == self.pad_token_id and self.pad_token_id not in self.eos_token_ids:
                ids.pop()
            self.stats.generated_tokens += len(ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            outputs.append(Generation(ids, text, truncated=not ended and len(ids) >= self.max_new_tokens))
        return outputs


def caption_generator(
    model: Any, tokenizer: Any, never_generate: Sequence[int] = (), **options: Any
) -> Generator:
    """A :class:`Generator` that also suppresses the model's own ``suppress_tokens`` and ``never_generate``."""
    suppress = list(getattr(model.generation_config, "suppress_tokens", None) or [])
    return Generator(model, tokenizer, suppress_token_ids=[*suppress, *never_generate], **options)


def map_safely(values: Sequence[Any], prepare: Callable[[Any], Any]) -> tuple[dict[int, Any], dict[int, str]]:
    """Apply ``prepare`` to each value; returns (index -> result, index -> one-line error) so one bad input skips alone."""
    done: dict[int, Any] = {}
    errors: dict[int, str] = {}
    for index, value in enumerate(values):
        try:
            done[index] = prepare(value)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            errors[index] = f"{type(exc).__name__}: {first[:300]}"
    return done, errors
