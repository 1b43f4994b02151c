"""Caption preparation: strip, keep, and the causal-LM rewrite on a tiny random-weight model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pancap_retrieval.errors import ModelLoadError, RetrievalError
from pancap_retrieval.retrieval.textprep import REWRITE_PROMPT, prepare_texts

CAPTIONS = [
    "A Starbucks napkin (bounding box: [[0.5, 0.3, 0.8, 0.5]]) lies on a table, positioned at [[0, 0.5, 1, 1]].",
    "The sky [[0.003, 0.003, 0.996, 0.997]] is light blue with white clouds.",
]


def test_keep_returns_the_captions_unchanged() -> None:
    out = prepare_texts(CAPTIONS, "keep")
    assert out.texts == CAPTIONS
    assert out.manifest == {"mode": "keep", "n": 2}


def test_strip_removes_boxes() -> None:
    out = prepare_texts(CAPTIONS, "strip")
    assert out.texts[0] == "A Starbucks napkin lies on a table."
    assert "[[" not in out.texts[1] and out.texts[1].startswith("The sky")
    assert out.manifest["mode"] == "strip"


def test_unknown_mode_and_bad_input() -> None:
    with pytest.raises(RetrievalError, match=r"text_prep must be strip, keep or rewrite:hf:MODEL, not .summarise."):
        prepare_texts(CAPTIONS, "summarise")
    with pytest.raises(RetrievalError, match="list of captions"):
        prepare_texts("one caption", "keep")
    with pytest.raises(RetrievalError, match="caption 0 is NoneType"):
        prepare_texts([None], "keep")


def test_rewrite_needs_local_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="pass a local directory"):
        prepare_texts(CAPTIONS, "rewrite:hf:Qwen/Qwen2.5-14B-Instruct", cache_dir=tmp_path)


def test_rewrite_runs_is_deterministic_cached_and_reports_its_prompt(tiny_lm: Path, tmp_path: Path) -> None:
    mode = f"rewrite:hf:{tiny_lm}"
    first = prepare_texts(CAPTIONS, mode, cache_dir=tmp_path / "a", max_new_tokens=6, batch_size=2)
    again = prepare_texts(CAPTIONS, mode, cache_dir=tmp_path / "b", max_new_tokens=6, batch_size=2)
    assert len(first.texts) == 2 and all(isinstance(t, str) and t for t in first.texts)
    assert first.texts == again.texts  # greedy decoding: two fresh runs agree
    assert first.manifest["generate_calls"] == 1 and first.manifest["cache_hits"] == 0
    assert first.manifest["prompt"] == REWRITE_PROMPT
    assert first.manifest["decoding"] == {"do_sample": False, "num_beams": 1, "max_new_tokens": 6}

    cached = prepare_texts(CAPTIONS, mode, cache_dir=tmp_path / "a", max_new_tokens=6)
    assert cached.texts == first.texts
    assert cached.manifest["generate_calls"] == 0 and cached.manifest["cache_hits"] == 2

    other_prompt = prepare_texts(
        CAPTIONS[:1], mode, cache_dir=tmp_path / "a", max_new_tokens=6, prompt="Plain text please: {caption}"
    )
    assert other_prompt.manifest["generate_calls"] == 1 and other_prompt.manifest["cache_hits"] == 0


def test_rewrite_prompt_needs_the_caption_slot(tiny_lm: Path) -> None:
    with pytest.raises(RetrievalError, match=r"\{caption\}"):
        prepare_texts(CAPTIONS, f"rewrite:hf:{tiny_lm}", prompt="no slot")
