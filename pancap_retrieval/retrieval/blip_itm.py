"""BLIP retrieval: ITC embeddings through the towers and projection heads, and the BLIP paper's ITM re-ranking.

``BlipForImageTextRetrieval`` has no ``get_*_features``. Its contrastive (ITC) vectors are
``normalize(vision_proj(vision_model(px)[0][:, 0]))`` and ``normalize(text_proj(text_encoder(ids, mask)[0][:, 0]))``.
BLIP's own evaluation (``train_retrieval.py``) then takes each query's top ``k`` candidates by ITC cosine, scores
each (image, text) pair with the image-text matching head (one cross-attention pass of the text over the image) and
ranks the ``k`` by ``itm_logit[:, 1] + cosine``; ``rerank_k`` is that ``k`` (0: cosine only). The ITM head reads a
text cut at the text window whatever the long-text policy (a window average has no cross-attention pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from pancap_retrieval.errors import OptionError, RetrievalError
from pancap_retrieval.retrieval.image_text import ImageTextRetriever, LongText

Queries = Literal["images", "texts"]


class BlipRetriever(ImageTextRetriever):
    """BLIP image-text retrieval (ITC), with ITM re-ranking of each query's top ``rerank_k`` candidates.

    ``rerank_batch_size`` is the number of (image, text) pairs per ITM pass; each image's vision states are computed
    once per batch of ``batch_size`` images and shared by all its pairs.
    """

    name = "blip"
    default_model = "Salesforce/blip-itm-large-coco"
    model_class = "BlipForImageTextRetrieval"

    def __init__(
        self,
        model: str | None = None,
        long_text: LongText = "truncate",
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        *,
        rerank_k: int = 0,
        rerank_batch_size: int = 128,
        max_length: int | None = None,
        overlap: int = 16,
        revision: str | None = None,
        show_progress: bool = True,
        loaded: tuple[Any, Any] | None = None,
    ) -> None:
        if rerank_k < 0:
            raise OptionError(f"rerank_k must be >= 0 (0: cosine only), not {rerank_k}")
        if rerank_batch_size < 1:
            raise OptionError(f"rerank_batch_size must be >= 1, not {rerank_batch_size}")
        self.rerank_k = rerank_k
        self.rerank_batch_size = rerank_batch_size
        self.rerank_stats = {"pairs": 0, "seconds": 0.0}
        super().__init__(
            model, long_text, batch_size, device, dtype, max_length=max_length, overlap=overlap,
            revision=revision, show_progress=show_progress, loaded=loaded,
        )

    def check_towers(self) -> None:
        for part in ("vision_model", "text_encoder", "vision_proj", "text_proj", "itm_head"):
            if not hasattr(self.model, part):
                raise RetrievalError(
                    f"{type(self.model).__name__} ({self.model_id}) has no {part}: the blip entry needs a "
                    "BlipForImageTextRetrieval checkpoint (e.g. Salesforce/blip-itm-large-coco)"
                )

    def image_features(self, inputs: dict[str, Any]) -> Any:
        states = self.model.vision_model(pixel_values=inputs["pixel_values"])[0]
        return self.model.vision_proj(states[:, 0, :])

    def text_features(self, inputs: dict[str, Any]) -> Any:
        states = self.model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
        return self.model.text_proj(states[:, 0, :])

    # ------------------------------------------------------------------ ITM

    def itm_scores(self, images: Sequence[Any], texts: Sequence[str], pairs: np.ndarray) -> np.ndarray:
        """The ITM head's match logit (``itm_score[:, 1]``) of each (image index, text index) pair, in pair order.

        Pairs are grouped by image: the vision tower runs once per batch of ``batch_size`` images, then the pairs
        of those images run ``rerank_batch_size`` at a time, with a progress bar over the pairs.
        """
        import time

        import torch
        from tqdm.auto import tqdm

        from pancap_retrieval.captioners.base import batches

        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        out = np.zeros(len(pairs), dtype=np.float32)
        tokens = self.text_inputs([texts[j] for j in range(len(texts))]) if len(pairs) else {}
        by_image = np.argsort(pairs[:, 0], kind="stable")
        wanted = sorted(set(pairs[:, 0].tolist()))
        bar = tqdm(total=len(pairs), desc=f"rerank {self.name}", unit="pair", delay=2, disable=not self.show_progress)
        began = time.perf_counter()
        for group in batches(wanted, self.batch_size):
            local = {image: row for row, image in enumerate(group)}
            with torch.inference_mode():
                states = self.model.vision_model(**self.image_inputs([images[i] for i in group]))[0]
            rows = by_image[np.isin(pairs[by_image, 0], group)]
            for chunk in batches(rows.tolist(), self.rerank_batch_size):
                chunk_pairs = pairs[chunk]
                image_rows = torch.as_tensor([local[i] for i in chunk_pairs[:, 0]], device=states.device)
                text_rows = torch.as_tensor(chunk_pairs[:, 1], device=states.device)
                out[chunk] = self._itm(states.index_select(0, image_rows), tokens, text_rows)
                bar.update(len(chunk))
        bar.close()
        self.rerank_stats["pairs"] += len(pairs)
        self.rerank_stats["seconds"] += time.perf_counter() - began
        return out

    def _itm(self, image_states: Any, tokens: dict[str, Any], text_rows: Any) -> np.ndarray:
        import torch

        mask = tokens["attention_mask"].index_select(0, text_rows)
        width = mask.shape[-1]
        if getattr(self.tokenizer, "padding_side", "right") == "right":
            width = int(mask.sum(-1).max())  # the batch's own longest text: less padding, the same logits
        image_mask = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
        with torch.inference_mode():
            states = self.model.text_encoder(
                input_ids=tokens["input_ids"].index_select(0, text_rows)[:, :width],
                attention_mask=mask[:, :width],
                encoder_hidden_states=image_states,
                encoder_attention_mask=image_mask,
            )[0]
            logits = self.model.itm_head(states[:, 0, :])
        return logits[:, 1].float().cpu().numpy()

    def rerank(
        self,
        images: Sequence[Any],
        texts: Sequence[str],
        cosine: np.ndarray,
        k: int | None = None,
        *,
        queries: Queries = "images",
    ) -> np.ndarray:
        """Scores, images x texts, with each query's top ``k`` candidates by cosine re-ranked by ITM + cosine.

        ``queries="images"`` re-ranks texts for each image (image -> text), ``"texts"`` images for each text. A
        re-ranked candidate scores ``itm_logit[:, 1] + cosine`` (BLIP's protocol); the others keep their cosine
        order below every re-ranked one, so the whole row is still a ranking. ``k`` defaults to ``rerank_k``.
        """
        cosine = np.asarray(cosine, dtype=np.float32)
        if cosine.shape != (len(images), len(texts)):
            raise RetrievalError(
                f"cosine is {cosine.shape}, not images x texts ({len(images)}, {len(texts)})"
            )
        k = self.rerank_k if k is None else k
        if queries not in ("images", "texts"):
            raise OptionError(f"queries must be 'images' or 'texts', not {queries!r}")
        table = cosine if queries == "images" else cosine.T
        k = min(k, table.shape[1])
        if k <= 0 or table.size == 0:
            return cosine.copy()
        top = np.argsort(-table, axis=1, kind="stable")[:, :k]
        query = np.repeat(np.arange(table.shape[0]), k)
        pairs = np.stack([query, top.ravel()], axis=1)
        if queries == "texts":
            pairs = pairs[:, ::-1]
        itm = self.itm_scores(images, texts, pairs).reshape(table.shape[0], k)
        return reranked_table(table, top, itm) if queries == "images" else reranked_table(table, top, itm).T

    def score_matrix(
        self,
        image_vectors: np.ndarray,
        text_vectors: np.ndarray,
        *,
        images: Sequence[Any] | None = None,
        texts: Sequence[str] | None = None,
        queries: Queries = "images",
        **_: Any,
    ) -> np.ndarray:
        """Cosine images x texts; with ``rerank_k`` > 0 (and the images and texts given) re-ranked by ITM."""
        cosine = super().score_matrix(image_vectors, text_vectors)
        if self.rerank_k <= 0:
            return cosine
        if images is None or texts is None:
            raise RetrievalError("re-ranking (rerank_k > 0) needs the images and the texts themselves")
        return self.rerank(images, texts, cosine, queries=queries)

    def manifest(self) -> dict[str, Any]:
        return {
            **super().manifest(),
            "rerank_k": self.rerank_k,
            "rerank_score": "itm_logit[:, 1] + cosine" if self.rerank_k else None,
            "rerank_batch_size": self.rerank_batch_size,
            "reranked_pairs": self.rerank_stats["pairs"],
        }


def reranked_table(cosine: np.ndarray, top: np.ndarray, itm: np.ndarray) -> np.ndarray:
    """Rows of ``cosine`` (queries x candidates) with the candidates ``top`` scored ``itm + cosine`` and the rest
    shifted, in their cosine order, below the lowest re-ranked score of their row.

    >>> cos = np.array([[0.9, 0.1, 0.5, 0.3]], dtype=np.float32)
    >>> out = reranked_table(cos, np.array([[0, 2]]), np.array([[-1.0, 2.0]], dtype=np.float32))
    >>> np.argsort(-out[0]).tolist()
    [2, 0, 3, 1]
    """
    out = np.asarray(cosine, dtype=np.float64).copy()
    rows = np.arange(out.shape[0])[:, None]
    scored = itm.astype(np.float64) + out[rows, top]
    rest = np.ones(out.shape, dtype=bool)
    rest[rows, top] = False
    if rest.any():
        masked = np.where(rest, out, -np.inf)
        shift = scored.min(axis=1) - 1.0 - masked.max(axis=1)
        out = np.where(rest, out + shift[:, None], out)
    out[rows, top] = scored
    return out.astype(np.float32)
