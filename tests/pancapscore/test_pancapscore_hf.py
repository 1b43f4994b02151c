"""The ``hf:`` judge end to end with a tiny random-weight causal LM saved to disk and loaded by the real loader."""

from __future__ import annotations

import pytest

from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import CaptionRecord
from pancap_retrieval.data.sapancap import caption_file
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.pancapscore import TagSimilarity, score_pancapscore
from pancap_retrieval.pancapscore.judges import HFJudge, get_judge


@pytest.mark.slow
def test_hf_judge_runs_end_to_end_and_counts_garbage(tiny_chat_lm, tmp_path):
    refs = read_captions(caption_file("test"))[:2]
    preds = [CaptionRecord(r.example_id, r.caption.replace("[[", "[[0.0", 1)) for r in refs]
    similarity = TagSimilarity("minilm")
    runs = []
    for _ in range(2):
        result = score_pancapscore(
            preds,
            refs,
            f"hf:{tiny_chat_lm}",
            tmp_path,
            similarity=similarity,
            device="cpu",
            judge_kwargs={"max_new_tokens": 12},
        )
        assert result["judge"]["name"] == f"hf:{tiny_chat_lm}" and result["judge"]["decoding"] == "greedy"
        assert result["judge"]["generations"] == 4  # two captions per image, extraction only
        counts = result["counts"]
        # random weights write no usable JSON: every extraction fails, is counted, and nothing is scored
        assert counts["judge_failed"]["ref"]["count"] == 2 and counts["scored"] == 0
        assert all(entry["status"] == "judge failed" for entry in result["per_image"])
        assert result["overall"] is None and result["dimensions"]["tag"]["status"] == "not computed"
        result.pop("meta")
        runs.append(result)
    assert runs[0] == runs[1]  # greedy decoding: the same output twice
    assert (tmp_path / "pancapscore.json").is_file()


def test_hf_judge_generation_is_greedy_and_cached(tiny_chat_lm, tmp_path):
    judge = get_judge(f"hf:{tiny_chat_lm}", device="cpu", max_new_tokens=10, cache_dir=tmp_path)
    assert isinstance(judge, HFJudge)
    first = judge.generate("Describe a dog.")
    assert judge.generate("Describe a dog.") == first and judge.n_generations == 1
    again = HFJudge(str(tiny_chat_lm), device="cpu", max_new_tokens=10, cache_dir=tmp_path)
    assert again.generate("Describe a dog.") == first and again.n_generations == 0  # read from the disk cache
    fresh = HFJudge(str(tiny_chat_lm), device="cpu", max_new_tokens=10)
    assert fresh.generate("Describe a dog.") == first  # recomputed: identical
    answers = judge.answer("A dog [[0.1, 0.1, 0.5, 0.5]].", [], [("Is it a dog?", "Is it a cat?")])
    assert len(answers) == 1 and all(a in (None, "yes", "no") for a in answers[0])


def test_missing_judge_model_is_a_clear_error(tmp_path):
    judge = HFJudge(str(tmp_path / "no_such_model"), device="cpu")
    with pytest.raises(ModelLoadError, match="local cache only"):
        judge.generate("hello")
