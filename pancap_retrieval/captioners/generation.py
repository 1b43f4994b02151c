"""The batched generation engine shared by the model captioners: loading, device/dtype, batching, OOM back-off.

Every model path takes a hub id or a local directory and goes through ``from_pretrained``. Generation is greedy
and batched across images with left padding; on a GPU it runs in the captioner's dtype (bf16, fp16 for PancapChain)
with SDPA attention and, when asked, with a static KV cache (which transformers compiles on CUDA). A prompt prefix
that several prompts share (an image and the system prompt, in every stage of a chain) can be prefilled once and its
key/values reused
(:mod:`pancap_retrieval.captioners.decoding`). The first batch size is the largest whose KV cache fits the free GPU
memory; a batch that runs out of memory is halved and retried; the smallest batch size that worked is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pancap_retrieval.captioners.decoding import (
    CACHE_LENGTH_MULTIPLE,
    PrefixKV,
    StopAtLengths,
    TeacherForcing,
    batch_bucket,
    batch_for_memory,
    collate_prefixed,
    compile_cache_dir,
    round_up,
    write_prefixes,
)
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
    """The largest batch whose KV cache for ``tokens_per_sequence`` tokens fits the GPU's free memory
    (:func:`~pancap_retrieval.captioners.decoding.batch_for_memory`); 4 on CPU.

    The OOM back-off in :class:`Generator` corrects an estimate that is too high.
    """
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return min(4, ceiling)
    free, _ = torch.cuda.mem_get_info(device)
    item = next(model.parameters()).element_size()
    return batch_for_memory(model.config, free, tokens_per_sequence, item, ceiling)


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
    prefix_seconds: float = 0.0
    prefixes: int = 0
    history: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "smallest_batch_size": self.smallest_batch_size,
            "oom_backoffs": self.oom_backoffs,
            "generated_tokens": self.generated_tokens,
            "generate_calls": self.calls,
            "seconds": round(self.seconds, 3),
            "shared_prefixes": self.prefixes,
            "prefix_seconds": round(self.prefix_seconds, 3),
        }


@dataclass
class Generation:
    """One greedy continuation: its token ids (eos and padding removed), text, whether it hit the length limit, and
    the logits of each step when they were asked for (``record_logits`` / ``forced_ids``)."""

    token_ids: list[int]
    text: str
    truncated: bool
    logits: Any = None


# Item keys that steer one row's decoding rather than feed the model.
ROW_CONTROLS = ("stop_length", "forced_ids", "record_logits")


class Generator:
    """Greedy, batched generation for a loaded model, with left padding, shared prompt prefixes and OOM back-off.

    ``static_cache`` uses transformers' static KV cache (compiled with CUDA graphs on a GPU). To compile once: prompts
    are padded to a multiple of ``pad_to_multiple_of``, a batch to a power of two (:func:`batch_bucket`), the cache
    length to a multiple of 256, a cache is reused from batch to batch while its shape stays (fixed addresses for
    CUDA graphs), and compiled kernels persist under pancap's cache dir (:func:`compile_cache_dir`).

    An item may carry a ``"prefix"`` (a :class:`PrefixKV` from :meth:`prefill`, the key/values of its first ids):
    only the rest of its prompt is prefilled. Row controls: ``"stop_length"`` (EOS after that many tokens,
    :class:`StopAtLengths`), ``"forced_ids"`` (teacher forcing, :class:`TeacherForcing`), ``"record_logits"``.

    Finished rows are not refilled with waiting work. transformers' continuous batching (``generate_batch``,
    ``ContinuousBatchingManager``, paged attention) takes token id lists only: no pixel values or input embeddings
    reach the model, and its block sharing hashes token ids, which are one placeholder id for every image, so it
    cannot serve LLaVA inputs. Refilling rows of a static-cache batch needs per-row cache positions, which
    transformers' ``StaticCache`` does not have (it writes every row at one column): a decoding loop of our own, not
    a small change. A batch therefore runs until its longest row; benchmarks report the useful tokens/s.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 1024,
        min_new_tokens: int = 0,
        batch_size: int | None = None,
        static_cache: bool | None = None,
        pad_to_multiple_of: int | None = None,
        suppress_token_ids: Sequence[int] = (),
        tokens_per_sequence: int | None = None,
    ) -> None:
        """``tokens_per_sequence``: the most KV-cache tokens one row holds (prompt, shared prefix and new tokens);
        sizes the batch to the free GPU memory when ``batch_size`` is not given (default 1024 + new tokens)."""
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
        tokens = tokens_per_sequence or 1024 + max_new_tokens
        self.batch_size = batch_size or auto_batch_size(model, tokens, self.device)
        self.stats = GenerationStats(batch_size=self.batch_size, smallest_batch_size=self.batch_size)
        self._cache: Any = None
        self._cache_key: tuple[int, int] | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "static_cache": self.static_cache,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
        }

    @property
    def compiles(self) -> bool:
        """Whether transformers compiles the decoding step: static cache on a GPU, or on any device when the model's
        compile config says so."""
        config = getattr(self.model.generation_config, "compile_config", None)
        anywhere = bool(getattr(config, "_compile_all_devices", False))
        return self.static_cache and (self.device.type == "cuda" or anywhere)

    def generate(self, items: Sequence[dict[str, Any]]) -> list[Generation]:
        """Greedy continuations of per-example inputs (processor outputs with batch dim 1), in input order.

        Inputs are sorted by length so batches carry little padding; a batch that runs out of memory is halved and
        retried, and the smaller size is kept for the rest of the run.
        """
        return self._in_batches(items, self._generate_batch)

    def prefill(self, items: Sequence[dict[str, Any]]) -> list[PrefixKV]:
        """The key/values of prompt prefixes (model inputs with batch dim 1, images included), batched with the same
        OOM back-off: an item whose ``"prefix"`` is one of these is generated from there (:meth:`generate`)."""
        return self._in_batches(items, self._prefill_batch)

    def _in_batches(self, items: Sequence[dict[str, Any]], run: Callable[[list[Any]], list[Any]]) -> list[Any]:
        order = sorted(range(len(items)), key=lambda i: int(items[i]["input_ids"].shape[-1]))
        results: dict[int, Any] = {}
        start = 0
        while start < len(order):
            chunk = order[start : start + self.batch_size]
            try:
                outputs = run([items[i] for i in chunk])
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

        self._cache = self._cache_key = None
        gc.collect()
        torch.cuda.empty_cache()  # a no-op where CUDA was never initialised

    def _on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        inputs = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        dtype = next(self.model.parameters()).dtype
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(dtype)
        return inputs

    def _prefill_batch(self, items: Sequence[dict[str, Any]]) -> list[PrefixKV]:
        import time

        import torch
        from transformers import DynamicCache

        inputs = self._on_device(collate_left(items, self.pad_token_id))
        mask = inputs["attention_mask"]
        began = time.perf_counter()
        with torch.inference_mode():
            out = self.model(
                **inputs,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                cache=DynamicCache(config=self.model.config),
                use_cache=True,
                logits_to_keep=1,
            )
        self.stats.prefix_seconds += time.perf_counter() - began
        self.stats.prefixes += len(items)
        layers = [(layer.keys, layer.values) for layer in out.cache.layers]
        width = mask.shape[-1]
        return [
            PrefixKV([(k[row : row + 1, :, width - n :], v[row : row + 1, :, width - n :]) for k, v in layers])
            for row, n in enumerate(mask.sum(-1).tolist())
        ]

    def _new_cache(self, rows: int, width: int) -> Any:
        """A dynamic cache, or a static one of ``rows`` x the prompt and new tokens rounded up to a multiple of
        256: the previous one reset when its shape is the same (fixed addresses for CUDA graphs), else a new one.
        Not a cache as long as the longest seen: every decoding step reads the whole cache."""
        from transformers import DynamicCache, StaticCache

        if not self.static_cache:
            return DynamicCache(config=self.model.config)
        key = (rows, round_up(width + self.max_new_tokens, CACHE_LENGTH_MULTIPLE))
        if self._cache_key == key:
            self._cache.reset()
        else:
            self._cache = None  # freed before the next one is allocated
            self._cache = StaticCache(config=self.model.config, max_cache_len=key[1])
            self._cache_key = key
        return self._cache

    def _generate_batch(self, items: Sequence[dict[str, Any]]) -> list[Generation]:
        import time

        import torch

        rows = len(items)
        if self.static_cache:  # padded with copies of the last row to a batch-size bucket
            items = [*items, *[items[-1]] * (batch_bucket(rows, self.batch_size) - rows)]
        controls = [{k: item[k] for k in ROW_CONTROLS if k in item} for item in items]
        model_items = [{k: v for k, v in item.items() if k not in (*ROW_CONTROLS, "prefix")} for item in items]
        prefixes = [item.get("prefix") for item in items]
        if any(p is None for p in prefixes) and any(p is not None for p in prefixes):
            raise ValueError("a batch mixes items with and without a shared prefix")
        if prefixes[0] is not None:
            batch, prefix_width = collate_prefixed(model_items, prefixes, self.pad_token_id, self.pad_to_multiple_of)
        else:
            batch = collate_left(model_items, self.pad_token_id, self.pad_to_multiple_of)
        inputs = self._on_device(batch)
        width = int(inputs["input_ids"].shape[-1])
        options, forcing = self._options(controls, width)
        if self.compiles:
            compile_cache_dir()
        began = time.perf_counter()
        with torch.inference_mode():
            cache = self._new_cache(len(items), width)
            if prefixes[0] is not None:
                write_prefixes(cache, prefixes, prefix_width)
            sequences = self.model.generate(**inputs, cache=cache, **options)
        self.stats.seconds += time.perf_counter() - began
        self.stats.calls += 1
        outputs = self._decode(sequences[:rows], inputs["input_ids"][:rows])
        for row, output in enumerate(outputs):
            output.logits = forcing.recorded(row) if forcing is not None else None
        return outputs

    def _options(self, controls: list[dict[str, Any]], width: int) -> tuple[dict[str, Any], Any]:
        """``generate``'s options for one batch, and its teacher-forcing processor when a row asks for one."""
        from transformers import LogitsProcessorList

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
        if not self.static_cache:
            options["disable_compile"] = True
        processors = LogitsProcessorList()
        eos = sorted(self.eos_token_ids)
        if any("stop_length" in c for c in controls):
            processors.append(StopAtLengths([c.get("stop_length") for c in controls], width, eos[0]))
        forcing = None
        if any("forced_ids" in c or c.get("record_logits") for c in controls):
            forcing = TeacherForcing(
                [c.get("forced_ids") for c in controls], [c.get("record_logits", False) for c in controls], width, eos
            )
            processors.append(forcing)
        if processors:
            options["logits_processor"] = processors
        return options, forcing

    def _decode(self, sequences: Any, prompt: Any) -> list[Generation]:
        import torch

        # Decoder-only models return prompt + continuation; models generating from embeddings return only the latter.
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
