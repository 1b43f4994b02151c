"""PancapScore: the panoptic-captioning metric over five dimensions (tag, location, attribute, relation, global).

Deterministic and usable offline: the ``rule`` judge needs no LLM (tag and location only); ``hf:MODEL`` runs
any transformers causal LM greedily for all five dimensions. Importing this package imports no torch.

>>> from pancap_retrieval.pancapscore import overall_score
>>> round(overall_score({"tag": 0.5442, "location": 0.2511, "attribute": 0.4233, "relation": 0.2632, "global": 0.8712}), 2)
156.89
"""

from __future__ import annotations

from pancap_retrieval.pancapscore.items import (
    DIMENSIONS,
    MAX_OVERALL,
    WEIGHTS,
    CaptionItems,
    EntityItem,
    Statement,
    overall_score,
    partial_score,
)
from pancap_retrieval.pancapscore.judges import HFJudge, RuleJudge, get_judge
from pancap_retrieval.pancapscore.matching import MatchedPair, TagSimilarity, match_entities
from pancap_retrieval.pancapscore.score import (
    BoxFrames,
    markdown_table,
    score_items,
    score_pancapscore,
    write_result,
)

__all__ = [
    "DIMENSIONS",
    "MAX_OVERALL",
    "WEIGHTS",
    "BoxFrames",
    "CaptionItems",
    "EntityItem",
    "HFJudge",
    "MatchedPair",
    "RuleJudge",
    "Statement",
    "TagSimilarity",
    "get_judge",
    "markdown_table",
    "match_entities",
    "overall_score",
    "partial_score",
    "score_items",
    "score_pancapscore",
    "write_result",
]
