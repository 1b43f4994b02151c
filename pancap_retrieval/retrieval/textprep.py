"""Caption text preparation before embedding: strip boxes, keep as is, or rewrite with a causal LM.

Modes: ``strip`` (default; :func:`pancap_retrieval.captions.strip_boxes`), ``keep`` (unchanged) and
``rewrite:hf:MODEL`` where MODEL is a hub id (from the local cache only) or a local directory of a causal LM that
rewrites each panoptic caption into plain prose with greedy decoding and the fixed :data:`REWRITE_PROMPT`
(the paper used Qwen2.5-14B-Instruct). Rewrites are cached on disk under (model fingerprint, prompt, generation
settings, sha256 of the caption) and the prompt is returned in the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pancap_retrieval.errors import ModelLoadError, PancapError, RetrievalError
from pancap_retrieval.registry import Entry, Registry
from pancap_retrieval.textgen import GreedyLM

REWRITE_PROMPT = (
    "Rewrite the following image description as plain, fluent prose. Remove every bounding box, coordinate and "
    "markup, keep every object, attribute, position, relation and the overall scene, and add nothing that is not "
    "in the description. Answer with the rewritten description only.\n\n"
    "Description:\n{caption}"
)
TEXT_PREPS = Registry(
    "text preparation",
    {
        "strip": Entry(
            "pancap_retrieval.retrieval.textprep:strip_texts",
            "boxes and their phrasing removed, fluent text kept (the paper's protocol; the default)",
        ),
        "keep": Entry("pancap_retrieval.retrieval.textprep:keep_texts", "captions embedded as written, boxes and all"),
        "rewrite": Entry(
            "pancap_retrieval.retrieval.textprep:rewrite_texts",
            "rewrite:hf:MODEL, a causal LM rewrites each caption into plain prose (greedy, fixed prompt, cached)",
        ),
    },
    bind=True,
)


@dataclass
class PreparedTexts:
    """Prepared texts (same order and length as the input) and what produced them, for the run manifest."""

    texts: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)


def prepare_texts(
    captions: Sequence[str],
    mode: str = "strip",
    *,
    cache_dir: Path | None = None,
    device: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 1024,
    prompt: str = REWRITE_PROMPT,
) -> PreparedTexts:
    """Captions prepared for embedding according to ``mode`` (see the module docstring)."""
    if isinstance(captions, str):
        raise RetrievalError("prepare_texts takes a list of captions, not one string")
    texts = list(captions)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RetrievalError(f"caption {i} is {type(text).__name__}, not str")
    kind, model = parse_text_prep(mode)
    if model is None:
        return TEXT_PREPS.build(kind)(texts)
    rewrite = TEXT_PREPS.build(
        "rewrite",
        model=model,
        device=device,
        cache_dir=cache_dir,
        prompt=prompt,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    return rewrite(texts)


def parse_text_prep(mode: str) -> tuple[str, str | None]:
    """The one reader of the text-prep grammar: ``strip``/``keep`` -> (mode, None); ``rewrite:hf:MODEL`` ->
    (``rewrite``, MODEL).

    >>> parse_text_prep("strip"), parse_text_prep("rewrite:hf:Qwen/Qwen2.5-14B-Instruct")
    (('strip', None), ('rewrite', 'Qwen/Qwen2.5-14B-Instruct'))
    """
    if mode in ("keep", "strip"):
        return mode, None
    if isinstance(mode, str) and mode.startswith("rewrite:hf:") and len(mode) > len("rewrite:hf:"):
        return "rewrite", mode[len("rewrite:hf:") :]
    raise RetrievalError(f"text_prep must be strip, keep or rewrite:hf:MODEL, not {mode!r}")


def keep_texts(texts: list[str]) -> PreparedTexts:
    """The captions as written."""
    return PreparedTexts(list(texts), {"mode": "keep", "n": len(texts)})


def strip_texts(texts: list[str]) -> PreparedTexts:
    """The captions with their boxes stripped (:func:`pancap_retrieval.captions.strip_boxes`)."""
    from pancap_retrieval.captions import strip_boxes

    return PreparedTexts([strip_boxes(text) for text in texts], {"mode": "strip", "n": len(texts)})


def rewrite_texts(
    texts: list[str],
    *,
    model: str,
    device: str | None = None,
    cache_dir: Path | None = None,
    prompt: str = REWRITE_PROMPT,
    batch_size: int = 8,
    max_new_tokens: int = 1024,
    revision: str | None = None,
) -> PreparedTexts:
    """The captions rewritten by the causal LM ``model`` (a hub id in the local cache or a local directory)."""
    rewriter = HFRewriter(
        model,
        device=device,
        cache_dir=cache_dir,
        prompt=prompt,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        revision=revision,
    )
    return PreparedTexts(rewriter.rewrite(texts), rewriter.manifest())


class HFRewriter:
    """Rewrites captions with a causal LM loaded by ``AutoModelForCausalLM.from_pretrained`` (greedy, fixed prompt)."""

    def __init__(
        self,
        name_or_path: str,
        *,
        device: str | None = None,
        cache_dir: Path | None = None,
        prompt: str = REWRITE_PROMPT,
        batch_size: int = 8,
        max_new_tokens: int = 1024,
        revision: str | None = None,
    ) -> None:
        from pancap_retrieval.artifacts import DiskCache
        from pancap_retrieval.retrieval.embedder import resolve_local

        if "{caption}" not in prompt:
            raise RetrievalError("the rewrite prompt must contain '{caption}'")
        if batch_size < 1 or max_new_tokens < 1:
            raise RetrievalError("batch_size and max_new_tokens must be >= 1")
        self.name = name_or_path
        try:
            self.path, self.fingerprint = resolve_local(name_or_path, revision=revision)
        except PancapError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot resolve rewriter {name_or_path!r}: {exc}") from None
        self.prompt = prompt
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._lm = GreedyLM(
            self.path,
            device=device,
            max_new_tokens=max_new_tokens,
            plain_suffix="\n\nRewritten description:\n",
            label="rewriter",
        )
        self._cache = (
            DiskCache(Path(cache_dir) / "rewrites" / f"{self.fingerprint}.sqlite") if cache_dir else None
        )
        self.generate_calls = 0
        self.cache_hits = 0

    def _key(self, caption: str) -> str:
        from pancap_retrieval.artifacts import key

        return key(self.fingerprint, self.prompt, "greedy", self.max_new_tokens, caption, length=64)

    def rewrite(self, captions: Sequence[str]) -> list[str]:
        """Rewritten captions, read from the cache where present, generated greedily otherwise."""
        keys = [self._key(text) for text in captions]
        done: dict[str, str] = {}
        if self._cache is not None:
            done = {
                key: value.decode() for key, (_, value) in self._cache.get_many(sorted(set(keys))).items()
            }
        self.cache_hits += sum(1 for key in keys if key in done)
        todo = {key: text for key, text in zip(keys, captions) if key not in done}
        if todo:
            items = list(todo.items())
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                outputs = self._generate([text for _, text in batch])
                rows = [(key, 0, out.encode()) for (key, _), out in zip(batch, outputs)]
                done.update({key: out for (key, _), out in zip(batch, outputs)})
                if self._cache is not None:
                    self._cache.put_many(rows)
        return [done[key] for key in keys]

    def _generate(self, captions: list[str]) -> list[str]:
        self.generate_calls += 1
        prompts = [self.prompt.format(caption=text) for text in captions]
        return [text.strip() for text in self._lm.generate(prompts, batch_size=len(prompts))]

    def manifest(self) -> dict[str, Any]:
        """The rewrite settings for the run manifest, the prompt included."""
        return {
            "mode": f"rewrite:hf:{self.name}",
            "model": self.name,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "prompt": self.prompt,
            "decoding": self._lm.describe()["decoding"],
            "generate_calls": self.generate_calls,
            "cache_hits": self.cache_hits,
        }
