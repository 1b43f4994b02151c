"""Entity names read from captions: hand-labelled SA-Pancap heads and the phrasings captioners use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pancap_retrieval.captions import head_noun, parse_caption

HEADS = Path(__file__).parent / "data" / "sapancap_entity_heads.json"


def _same_noun(a: str, b: str) -> bool:
    """Equal up to a plural ending (the label names the noun, the caption may count it)."""
    a, b = a.lower(), b.lower()
    return a == b or a.rstrip("s") == b.rstrip("s") or a.removesuffix("es") == b.removesuffix("es")


def _phrase_of_box(caption: str, box_index: int) -> str:
    parsed = parse_caption(caption)
    seen = 0
    for group in parsed.groups:
        if group.entity is None:
            continue
        if seen <= box_index < seen + len(group.boxes):
            return parsed.entities[group.entity].phrase
        seen += len(group.boxes)
    raise AssertionError(f"caption has no box {box_index}")


def test_hand_labelled_heads_of_100_sapancap_entities(sapancap_captions):
    captions = {Path(item["image_path"]).stem: item["gt_response"] for item in sapancap_captions}
    labelled = json.loads(HEADS.read_text(encoding="utf-8"))["entities"]
    assert len(labelled) == 100
    wrong = []
    for item in labelled:
        phrase = _phrase_of_box(captions[item["id"]], item["box"])
        if not _same_noun(head_noun(phrase), item["head"]):
            wrong.append((item["id"], item["box"], item["head"], phrase))
    assert len(wrong) <= 5, wrong


@pytest.mark.parametrize(
    ("caption", "phrases"),
    [
        ("The car's bounding box is [[0.1, 0.2, 0.5, 0.6]].", ["The car"]),
        ("The bounding box of the gravel is [[0.1, 0.2, 0.3, 0.4]].", ["the gravel"]),
        (
            "The main flower is positioned at the left side of the image [[0.0, 0.3, 0.4, 0.9]].",
            ["The main flower"],
        ),
        (
            "The woman [[0.3, 0.2, 0.7, 0.8]] reads. Her bounding box is [[0.3, 0.2, 0.7, 0.9]].",
            ["The woman"] * 2,
        ),
        ("A black van is parked. Its bounding box is [[0.1, 0.2, 0.3, 0.4]].", ["A black van"]),
        ("**Boy 1** ([[0.1, 0.1, 0.2, 0.2]]) runs.", ["Boy 1"]),
        ("The tire is red, with its bounding box at [[0.1, 0.1, 0.2, 0.2]].", ["The tire"]),
        ("A kite, with a bounding box of [[0.1, 0.1, 0.2, 0.2]], flies.", ["A kite"]),
        ("The ring is located at [[0.1, 0.1, 0.2, 0.2]].", ["The ring"]),
        ("In the upper right part [[0.6, 0.0, 1.0, 0.3]] lies a creature.", ["a creature"]),
        ("There are trees [[0.0, 0.0, 0.3, 0.5]] behind the wall.", ["trees"]),
        ("There are two glasses. One is at [[0.1, 0.1, 0.2, 0.2]].", ["two glasses"]),
        ("The most prominent object is a kart [[0.1, 0.1, 0.9, 0.9]].", ["a kart"]),
        ("Adjacent to the patch is a bicycle wheel [[0.2, 0.8, 0.6, 0.9]].", ["a bicycle wheel"]),
        ("A small piece of debris [[0.1, 0.1, 0.2, 0.2]] floats.", ["A small piece of debris"]),
        ("The woman on the left, positioned at [[0.1, 0.1, 0.2, 0.2]], smiles.", ["The woman"]),
        ("One pitcher is large and located at [[0.5, 0.3, 0.8, 0.8]].", ["One pitcher"]),
        ('The side has the word "TRASKO" [[0.1, 0.1, 0.2, 0.2]] in blue.', ['the word "TRASKO"']),
        (
            "A ladder extends from the left-center to the right-center of the image [[0, 0, 1, 1]].",
            ["A ladder"],
        ),
        ("dog <box>[[115, 334, 288, 903]]</box>, t-shirt <box>[[10, 10, 20, 20]]</box>", ["dog", "t-shirt"]),
        ("The coordinates of the lamp are [[0.1, 0.2, 0.3, 0.4]].", ["the lamp"]),
        ("The lamp's location is [[0.1, 0.2, 0.3, 0.4]].", ["The lamp"]),
        ("A vase, whose bounding box is [[0.1, 0.2, 0.3, 0.4]], holds roses.", ["A vase"]),
        ("A vase (box: [[0.1, 0.2, 0.3, 0.4]]) holds roses.", ["A vase"]),
        ("There is a bird at [[0.1, 0.2, 0.3, 0.4]] and another at [[0.5, 0.2, 0.6, 0.3]].", ["a bird"] * 2),
        ("- dog: [[0.1, 0.2, 0.3, 0.4]]\n- cat: [[0.5, 0.2, 0.7, 0.4]]", ["dog", "cat"]),
        ("A girl holding a red balloon [[0.3, 0.1, 0.4, 0.3]] smiles.", ["a red balloon"]),
    ],
)
def test_phrasings(caption, phrases):
    parsed = parse_caption(caption)
    assert [parsed.entities[g.entity].phrase for g in parsed.groups if g.entity is not None] == phrases


@pytest.mark.parametrize(
    ("phrase", "head"),
    [
        ("the second flower", "flower"),
        ("A small piece of debris", "debris"),
        ("One of his shoes", "shoes"),
        ("The main part of the church", "church"),
        ("the face of the woman", "face"),
        ("**Boy 1**", "boy"),
        ("person1", "person"),
        ('the word "TRASKO"', "word"),
        ("the dog's eyes", "eyes"),
        ("", ""),
    ],
)
def test_head_noun(phrase, head):
    assert head_noun(phrase) == head
