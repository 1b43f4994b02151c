"""Image-text dual encoders: images and descriptions embedded into one space, ranked by cosine.

Every entry has one shape: :meth:`ImageTextRetriever.encode_images` and :meth:`~ImageTextRetriever.encode_texts`
give float32 L2-normalised rows, computed in memory-bounded batches (images through the captioners' batch loop,
:func:`pancap_retrieval.captioners.base.batches`). A text longer than the model's text window is handled by an
explicit policy, ``long_text``: ``truncate`` reads the first ``text_window`` tokens; ``chunk`` embeds windows of the
text (cut at word starts, ``overlap`` tokens shared, as the text embedders do) and averages them weighted by their
token counts. :attr:`~ImageTextRetriever.text_stats` reports the window, the policy and the share of texts over it.

A model is a hub id or a local directory (``model=``), loaded through :mod:`pancap_retrieval.loading`; its
``fingerprint`` is the content of its files and ``manifest()`` names the revision. transformers 5 returns output
objects from ``get_*_features`` and 4.x (and remote code) tensors: both are read. Importing this module imports no
torch; the registry lists without importing anything.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pancap_retrieval.errors import ModelLoadError, OptionError, RetrievalError
from pancap_retrieval.registry import Entry, Registry

log = logging.getLogger(__name__)

LongText = Literal["truncate", "chunk"]
_MODULE = "pancap_retrieval.retrieval.image_text"
RETRIEVERS = Registry(
    "retriever",
    {
        "clip": Entry(
            f"{_MODULE}:ClipRetriever",
            "CLIP (CLIPModel; default openai/clip-vit-large-patch14); text window 77 tokens",
        ),
        "align": Entry(
            f"{_MODULE}:AlignRetriever",
            "ALIGN (AlignModel; default kakaobrain/align-base); text window 64 as its processor pads, "
            "max_length up to 512",
        ),
        "blip": Entry(
            "pancap_retrieval.retrieval.blip_itm:BlipRetriever",
            "BLIP ITC cosine, ITM re-ranking of the top rerank_k (BlipForImageTextRetrieval; default "
            "Salesforce/blip-itm-large-coco); text window 512 BERT positions",
        ),
        "siglip": Entry(
            f"{_MODULE}:SiglipRetriever",
            "SigLIP / SigLIP2, padded to the window (default google/siglip-so400m-patch14-384); text window 64",
        ),
        "longclip": Entry(
            f"{_MODULE}:LongClipRetriever",
            "LongCLIP, a CLIPModel with 248 text positions (default zer0int/LongCLIP-L-Diffusers; the remote-code "
            "port creative-graphic-design/LongCLIP-L with trust_remote_code); text window 248",
        ),
        "hf": Entry(
            f"{_MODULE}:ImageTextRetriever",
            "any transformers model with get_image_features/get_text_features: -o model=ID_OR_DIR; "
            "text window its own",
        ),
    },
)
# Inputs a feature method may take, by name (a method's **kwargs is not a licence to pass anything).
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_attention_mask", "spatial_shapes")


def feature_tensor(output: Any) -> Any:
    """The projected features of a ``get_*_features`` call: the tensor itself (transformers 4.x, remote code) or the
    ``pooler_output`` of the output object transformers 5 returns."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise RetrievalError(f"features came back as {type(output).__name__}, with no tensor or pooler_output in it")


def l2_rows(x: Any) -> np.ndarray:
    """A torch or numpy matrix as float32 numpy rows of unit length (zero rows stay zero)."""
    from pancap_retrieval.retrieval.embedder import l2_normalise

    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return l2_normalise(np.asarray(x, dtype=np.float32))


@dataclass
class TextStats:
    """What the long-text policy did: the window, the policy, how many texts were over the window and how many
    windows were embedded (one per text when truncating)."""

    text_window: int
    long_text: str
    n_texts: int = 0
    n_over_window: int = 0
    n_windows: int = 0

    @property
    def over_window_rate(self) -> float:
        return self.n_over_window / self.n_texts if self.n_texts else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "text_window": self.text_window,
            "long_text": self.long_text,
            "n_texts": self.n_texts,
            "n_over_window": self.n_over_window,
            "over_window_rate": self.over_window_rate,
            "truncated_rate": self.over_window_rate if self.long_text == "truncate" else 0.0,
            "n_windows": self.n_windows,
        }


def load_parts(
    model: str,
    model_class: str,
    device: Any = None,
    dtype: Any = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[str, Any, Any, str]:
    """(local folder, model in eval mode, processor, fingerprint) of a hub id or local directory.

    The hub id's snapshot is fetched into the Hugging Face cache when the hub is reachable (one clear
    :class:`ModelLoadError` when it is not and the weights are not local); its fingerprint is the content of its
    files. The processor is ``AutoProcessor``, else ``AutoTokenizer`` with ``AutoImageProcessor``.
    """
    import transformers

    from pancap_retrieval.loading import model_dir
    from pancap_retrieval.retrieval.embedder import fingerprint_dir

    local = model_dir(model, revision=revision)
    try:
        loaded, info = getattr(transformers, model_class).from_pretrained(
            str(local), dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(f"cannot load {model_class} from {model!r}: {type(exc).__name__}: {first}") from None
    absent = sorted({*info.get("missing_keys", ()), *(str(m[0]) for m in info.get("mismatched_keys", ()))})
    if absent:  # random weights where a checkpoint of another class was given
        raise ModelLoadError(
            f"{model!r} has no weights for {len(absent)} tensors of {type(loaded).__name__} (e.g. {absent[0]}): "
            "pass a checkpoint of that class"
        )
    processor = load_processor(str(local), trust_remote_code)
    return str(local), loaded.to(device).eval(), processor, fingerprint_dir(local)


def load_processor(source: str, trust_remote_code: bool = False) -> Any:
    """A processor with ``tokenizer`` and ``image_processor``: ``AutoProcessor``, else the two loaded apart."""
    import types

    import transformers

    try:
        processor = transformers.AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        if hasattr(processor, "tokenizer") and hasattr(processor, "image_processor"):
            return processor
    except Exception as exc:  # a folder with a tokenizer and an image processor but no processor config
        log.info("no AutoProcessor in %s (%s); loading its tokenizer and image processor apart", source, exc)
    try:
        return types.SimpleNamespace(
            tokenizer=transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code),
            image_processor=transformers.AutoImageProcessor.from_pretrained(
                source, trust_remote_code=trust_remote_code
            ),
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(
            f"{source} has no usable tokenizer and image processor ({type(exc).__name__}: {first}); "
            "save them beside the weights (processor.save_pretrained)"
        ) from None


def _pass_inputs(method: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs ``method`` names among :data:`_INPUT_NAMES`."""
    named = inspect.signature(method).parameters
    return {k: v for k, v in inputs.items() if k in _INPUT_NAMES and k in named}


class ImageTextRetriever:
    """A dual encoder through its ``get_image_features`` / ``get_text_features`` (the generic ``hf`` entry).

    ``max_length`` is the text window in tokens (None: the entry's default, else the model's text positions);
    ``long_text`` the policy for texts over it; ``batch_size`` images or text windows per forward pass (halved on
    an out-of-memory error). ``loaded=(model, processor)`` takes an in-memory model (benchmarks): its fingerprint is
    then ``in-memory``.
    """

    name = "hf"
    default_model: str | None = None
    model_class = "AutoModel"
    default_window: int | None = None  # None: the model's text positions (or the tokenizer's limit)
    text_padding: bool | str = True  # "max_length": padded to the window (SigLIP pools at the last position)
    text_attention_mask = True  # False: the text tower attends to its padding, as the model was trained

    def __init__(
        self,
        model: str | None = None,
        long_text: LongText = "truncate",
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        *,
        max_length: int | None = None,
        overlap: int = 16,
        revision: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        loaded: tuple[Any, Any] | None = None,
    ) -> None:
        from pancap_retrieval.loading import choose_device, choose_dtype

        if long_text not in ("truncate", "chunk"):
            raise OptionError(f"long_text must be 'truncate' or 'chunk', not {long_text!r}")
        if overlap < 0:
            raise OptionError(f"overlap must be >= 0, not {overlap}")
        self.long_text: LongText = long_text
        self.overlap = overlap
        self.show_progress = show_progress
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        target = choose_device(device)
        torch_dtype = choose_dtype(target, dtype, gpu_default="fp16")
        if loaded is not None:
            self.model, self.processor = loaded
            self.model = self.model.to(target, torch_dtype).eval()
            self.model_id, self.local_path, self.fingerprint = "in-memory", None, "in-memory"
        else:
            self.model_id = self.check_model(model or self.default_model)
            self.local_path, self.model, self.processor, self.fingerprint = load_parts(
                self.model_id, self.model_class_for(), target, torch_dtype,
                revision=revision, trust_remote_code=trust_remote_code,
            )
        self.device, self.dtype = target, torch_dtype
        self.tokenizer = self.processor.tokenizer
        self.image_processor = self.processor.image_processor
        self.batch_size = batch_size or (64 if target.type == "cuda" else 8)
        self.check_towers()
        self.text_window = self.window(max_length)
        self.stats = TextStats(self.text_window, long_text)

    # ------------------------------------------------------------------ what differs between entries

    def check_model(self, model: str | None) -> str:
        if not model:
            raise ModelLoadError(f"retriever {self.name!r} needs a model: pass -o model=HUB_ID_OR_DIR")
        return model

    def model_class_for(self) -> str:
        """The transformers class to load (remote code always goes through ``AutoModel``)."""
        return "AutoModel" if self.trust_remote_code else self.model_class

    def check_towers(self) -> None:
        if not (hasattr(self.model, "get_image_features") and hasattr(self.model, "get_text_features")):
            raise ModelLoadError(
                f"{type(self.model).__name__} ({self.model_id}) has no get_image_features/get_text_features: "
                "use the entry made for it (blip for BlipForImageTextRetrieval)"
            )

    def text_positions(self) -> int | None:
        """How many text positions the model has (None when its config does not say)."""
        config = getattr(self.model.config, "text_config", None) or self.model.config
        value = getattr(config, "max_position_embeddings", None)
        return int(value) if value else None

    def window(self, max_length: int | None) -> int:
        """The text window: ``max_length``, else the entry's default, else the model's text positions."""
        positions = self.text_positions()
        limit = getattr(self.tokenizer, "model_max_length", None)
        fallback = positions or (int(limit) if limit and limit < 100_000 else None)
        chosen = max_length or self.default_window or fallback
        if not chosen:
            raise OptionError(f"retriever {self.name!r}: the model does not say its text window; pass max_length")
        if positions and chosen > positions:
            raise OptionError(
                f"retriever {self.name!r}: max_length {chosen} is over the model's {positions} text positions; "
                f"use at most {positions}"
            )
        return int(chosen)

    def image_features(self, inputs: dict[str, Any]) -> Any:
        method = self.model.get_image_features
        return feature_tensor(method(**_pass_inputs(method, inputs)))

    def text_features(self, inputs: dict[str, Any]) -> Any:
        method = self.model.get_text_features
        return feature_tensor(method(**_pass_inputs(method, inputs)))

    # ------------------------------------------------------------------ the shared loop

    def image_inputs(self, images: Sequence[Any]) -> dict[str, Any]:
        """The image processor's tensors for a batch of PIL images, on the model's device and dtype."""
        rgb = [image if getattr(image, "mode", "RGB") == "RGB" else image.convert("RGB") for image in images]
        features = self.image_processor(images=rgb, return_tensors="pt")
        return self._on_device(dict(features))

    def text_inputs(self, texts: Sequence[str]) -> dict[str, Any]:
        """Token ids of texts cut at the window, padded as the model expects, on the model's device."""
        encoded = self.tokenizer(
            list(texts), padding=self.text_padding, truncation=True, max_length=self.text_window, return_tensors="pt"
        )
        inputs = dict(encoded)
        if not self.text_attention_mask:
            inputs.pop("attention_mask", None)
        return self._on_device(inputs)

    def _on_device(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)
            out[key] = value
        return out

    def encode_images(self, images: Iterable[Any]) -> np.ndarray:
        """One L2-normalised float32 row per image (PIL), in order; read ``batch_size`` images at a time, so an
        iterable that decodes lazily keeps memory bounded."""
        from tqdm.auto import tqdm

        from pancap_retrieval.captioners.base import batches

        rows: list[np.ndarray] = []
        total = len(images) if hasattr(images, "__len__") else None
        bar = tqdm(total=total, desc=f"encode images {self.name}", unit="img", delay=2, disable=not self.show_progress)
        for batch in batches(images, self.batch_size):
            rows.extend(self._split_on_oom(batch, lambda part: self.image_features(self.image_inputs(part))))
            bar.update(len(batch))
        bar.close()
        return self._stack(rows)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, in order, under the ``long_text`` policy (see the module)."""
        if isinstance(texts, str):
            raise RetrievalError("encode_texts takes a list of texts, not one string")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RetrievalError(f"text {i} is {type(text).__name__}, not str")
        pieces, owners, weights, counts = self.plan_texts(texts)
        vectors = self._encode_pieces(pieces)
        self.stats.n_texts += len(texts)
        self.stats.n_over_window += sum(count > self.text_window for count in counts)
        self.stats.n_windows += len(pieces)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        sums = np.zeros((len(texts), vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), vectors.astype(np.float64) * np.asarray(weights, dtype=np.float64)[:, None])
        return l2_rows(sums)

    def plan_texts(self, texts: list[str]) -> tuple[list[str], list[int], list[int], list[int]]:
        """(pieces to embed, the text each belongs to, its weight, each text's token count with specials).

        Truncating, a text is one piece (cut at the window by the tokenizer). Chunking, a text over the window is
        cut into windows of ``text_window`` tokens less the special tokens, weighted by their token counts.
        """
        from pancap_retrieval.retrieval.embedder import token_windows

        tokenizer = self.tokenizer
        n_special = int(tokenizer.num_special_tokens_to_add())
        fast = {"return_offsets_mapping": True} if getattr(tokenizer, "is_fast", False) else {}
        encoded = tokenizer(texts, add_special_tokens=False, verbose=False, **fast)
        counts = [len(ids) + n_special for ids in encoded["input_ids"]]
        budget = self.text_window - n_special
        pieces: list[str] = []
        owners: list[int] = []
        weights: list[int] = []
        for i, text in enumerate(texts):
            if self.long_text == "truncate" or counts[i] <= self.text_window:
                pieces.append(text)
                owners.append(i)
                weights.append(1)
                continue
            overlap = min(self.overlap, budget // 2)
            for piece, size in token_windows(text, encoded, i, budget, overlap, tokenizer):
                pieces.append(piece)
                owners.append(i)
                weights.append(size)
        return pieces, owners, weights, counts

    def _encode_pieces(self, pieces: list[str]) -> np.ndarray:
        from tqdm.auto import tqdm

        from pancap_retrieval.captioners.base import batches

        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # little padding in a batch
        rows: list[np.ndarray] = []
        bar = tqdm(total=len(pieces), desc=f"encode texts {self.name}", unit="text", delay=2,
                   disable=not self.show_progress)
        for batch in batches(order, self.batch_size):
            part_texts = [pieces[i] for i in batch]
            rows.extend(self._split_on_oom(part_texts, lambda part: self.text_features(self.text_inputs(part))))
            bar.update(len(batch))
        bar.close()
        out = self._stack(rows)
        restored = np.empty_like(out)
        restored[np.asarray(order, dtype=np.int64)] = out
        return restored

    def _split_on_oom(self, batch: list[Any], run: Any) -> list[np.ndarray]:
        """Rows of ``run(batch)``; on an out-of-memory error ``batch_size`` is halved and the halves run apart."""
        import torch

        from pancap_retrieval.captioners.generation import is_oom

        try:
            with torch.inference_mode():
                return list(l2_rows(run(batch)))
        except Exception as exc:
            if not is_oom(exc) or len(batch) == 1:
                raise
        torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
        self.batch_size = max(1, len(batch) // 2)
        log.warning("out of memory at batch size %d; going on at %d", len(batch), self.batch_size)
        half = len(batch) // 2
        return self._split_on_oom(batch[:half], run) + self._split_on_oom(batch[half:], run)

    @staticmethod
    def _stack(rows: list[np.ndarray]) -> np.ndarray:
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)

    # ------------------------------------------------------------------ scores and records

    def score_matrix(self, image_vectors: np.ndarray, text_vectors: np.ndarray, **_: Any) -> np.ndarray:
        """Cosine similarities, images x texts (re-ranking entries also take the images and texts)."""
        return np.asarray(image_vectors, dtype=np.float32) @ np.asarray(text_vectors, dtype=np.float32).T

    @property
    def text_stats(self) -> dict[str, Any]:
        """The text window, the long-text policy and the share of texts over the window, over every call so far."""
        return self.stats.as_dict()

    def manifest(self) -> dict[str, Any]:
        """What identifies these features in a run: entry, model id, revision, weights, window, policy, precision."""
        config = self.model.config
        return {
            "name": self.name,
            "model": self.model_id,
            "revision": getattr(config, "_commit_hash", None) or self.revision,
            "fingerprint": self.fingerprint,
            "model_class": type(self.model).__name__,
            "text_window": self.text_window,
            "long_text": self.long_text,
            "overlap": self.overlap if self.long_text == "chunk" else None,
            "text_padding": self.text_padding,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "batch_size": self.batch_size,
            "text_stats": self.text_stats,
        }


class ClipRetriever(ImageTextRetriever):
    """CLIP: the text tower has 77 positions and raises past them, so texts are always cut at the window."""

    name = "clip"
    default_model = "openai/clip-vit-large-patch14"
    model_class = "CLIPModel"


class LongClipRetriever(ClipRetriever):
    """LongCLIP as a ``CLIPModel`` with 248 text positions (the default port); ``trust_remote_code=True`` loads a
    remote-code port (``creative-graphic-design/LongCLIP-L``, two position tables) through ``AutoModel``."""

    name = "longclip"
    default_model = "zer0int/LongCLIP-L-Diffusers"

    def check_towers(self) -> None:
        super().check_towers()
        if (self.text_positions() or 0) < 248:
            log.warning("%s has %s text positions, not LongCLIP's 248", self.model_id, self.text_positions())


class AlignRetriever(ImageTextRetriever):
    """ALIGN: BERT text with 512 positions, which its processor pads to 64; the window is explicit here
    (``max_length``, default 64). Its features are not normalised by the model: they are here."""

    name = "align"
    default_model = "kakaobrain/align-base"
    model_class = "AlignModel"
    default_window = 64


class SiglipRetriever(ImageTextRetriever):
    """SigLIP and SigLIP2: text pooled at the last position, so texts are padded to the window, and the text
    tower attends to the padding (no attention mask), as the models were trained."""

    name = "siglip"
    default_model = "google/siglip-so400m-patch14-384"
    model_class = "AutoModel"
    text_padding = "max_length"
    text_attention_mask = False


__all__ = [
    "RETRIEVERS",
    "AlignRetriever",
    "ClipRetriever",
    "ImageTextRetriever",
    "LongClipRetriever",
    "SiglipRetriever",
    "TextStats",
    "feature_tensor",
    "get_retriever",
    "l2_rows",
    "load_parts",
    "load_processor",
]


def get_retriever(name: str, **options: Any) -> ImageTextRetriever:
    """Build the retriever registered as ``name`` with its options (``model=``, ``long_text=``, ...), checked."""
    return RETRIEVERS.build(name, **options)
