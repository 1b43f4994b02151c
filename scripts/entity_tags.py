"""Entity naming on the SA-Pancap ground-truth captions shipped in the package, printed as JSON.

For every box-carrying entity that ``parse_caption`` reads (the tags the ``rule`` judge of PancapScore
scores), reports the share of empty tags and the share of tags whose noun phrase WordNet does not know as a
noun (neither the whole phrase nor its head noun), with examples of each.

    python scripts/entity_tags.py [--split val|test|all] [--examples 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from pancap_retrieval.captions import head_noun, parse_caption
from pancap_retrieval.data.sapancap import read_ground_truth
from pancap_retrieval.pancapscore.matching import find_wordnet, normalise_tag

EMPTY_TARGET = 0.005
NOT_NOUN_TARGET = 0.02


def known_noun(wordnet: Any, tag: str) -> bool:
    """Whether WordNet knows ``tag`` (determiners dropped) or its head noun as a noun."""
    words = normalise_tag(tag).split()
    if not words:
        return False
    return bool(wordnet.lemmas("_".join(words)) or wordnet.lemmas(head_noun(tag)))


def report(splits: list[str], n_examples: int) -> dict[str, Any]:
    wordnet, source = find_wordnet()
    if wordnet is None:
        raise SystemExit(f"WordNet is needed for this report ({source})")
    entities = empty = not_noun = captions = 0
    examples: dict[str, list[dict[str, Any]]] = {"empty": [], "not_noun": []}
    heads: Counter[str] = Counter()
    for split in splits:
        for example_id, _, caption in read_ground_truth(split):
            captions += 1
            for index, entity in enumerate(parse_caption(caption).entities):
                entities += 1
                row = {"id": example_id, "entity": index, "tag": entity.phrase}
                if not entity.phrase.strip():
                    empty += 1
                    if len(examples["empty"]) < n_examples:
                        examples["empty"].append(row)
                elif not known_noun(wordnet, entity.phrase):
                    not_noun += 1
                    if len(examples["not_noun"]) < n_examples:
                        examples["not_noun"].append(row)
                else:
                    heads[head_noun(entity.phrase)] += 1
    share_empty = empty / entities if entities else 0.0
    share_not_noun = not_noun / entities if entities else 0.0
    return {
        "splits": splits,
        "captions": captions,
        "entities": entities,
        "empty_tags": empty,
        "share_empty": round(share_empty, 5),
        "not_a_wordnet_noun": not_noun,
        "share_not_noun": round(share_not_noun, 5),
        "targets": {"share_empty": EMPTY_TARGET, "share_not_noun": NOT_NOUN_TARGET},
        "meets_targets": share_empty <= EMPTY_TARGET and share_not_noun <= NOT_NOUN_TARGET,
        "wordnet": source,
        "most_common_heads": heads.most_common(15),
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["val", "test", "all"], default="all")
    parser.add_argument("--examples", type=int, default=20, help="examples of each failure kind to list")
    args = parser.parse_args(argv)
    splits = ["val", "test"] if args.split == "all" else [args.split]
    json.dump(report(splits, args.examples), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
