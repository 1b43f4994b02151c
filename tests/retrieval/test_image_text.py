"""Image-text retrievers on tiny random-weight models of their real classes, saved and loaded back through the
real loader: features equal direct transformers calls, batches equal one by one, the long-text policy is applied
and reported (batched equals one by one: tests/contracts.py), and BLIP's ITM re-ranking orders as ITM + cosine computed directly."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from pancap_retrieval.errors import ModelLoadError, OptionError, RegistryError, RetrievalError
from pancap_retrieval.retrieval.image_text import RETRIEVERS, feature_tensor, get_retriever

SHORT = ["a photo of a cat on a mat", "a cup of coffee on a wooden table", "a red rocket under a blue sky"]
# Over every window below: 77 and 248 characters for the byte-level CLIP tokenizers, 64 SentencePiece pieces, and
# the 16-token window the BERT-tokenized entries are given.
LONG = (
    "a woman in a space suit stands in front of a flag. two dogs play in the grass beside her, 3 cats watch "
    "from a wooden table; a red rocket rises from its launch pad under a blue sky while a cup of coffee cools. "
    "zebras, quiet yaks and jumping kangaroos queue by 9 huge vans; fog wraps the pier, boats bob, gulls cry!"
)
TEXTS = [SHORT[0], LONG, SHORT[1], SHORT[2]]
# case -> (registry entry, options making LONG the only text over the window)
ENTRIES = {
    "clip": ("clip", {}),
    "longclip": ("longclip", {}),
    "align": ("align", {"max_length": 16}),
    "blip": ("blip", {"max_length": 16}),
    "siglip": ("siglip", {}),
    "siglip2": ("siglip", {}),
    "hf": ("hf", {}),
}


@pytest.fixture(scope="module")
def images():
    from skimage import data

    sizes = [(40, 30), (30, 40), (64, 48), (33, 33), (50, 20)]
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera"]
    return [Image.fromarray(getattr(data, n)()).convert("RGB").resize(s) for n, s in zip(names, sizes)]


def build(case, model_dirs, **options):
    entry, defaults = ENTRIES[case]
    return get_retriever(entry, model=str(model_dirs[case]), show_progress=False, **{**defaults, **options})


def normalised(x):
    x = feature_tensor(x).float()
    return torch.nn.functional.normalize(x, dim=-1).numpy()


def direct_features(name, directory, images, texts, window):
    """Image and text features as transformers' own classes give them for the same inputs, texts cut at ``window``."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(directory)
    vision = dict(processor.image_processor(images=images, return_tensors="pt"))  # SigLIP2: masks and shapes too
    pixels = vision["pixel_values"]
    tokenizer = processor.tokenizer
    with torch.inference_mode():
        if name == "blip":
            model = transformers.BlipForImageTextRetrieval.from_pretrained(directory).eval()
            ids = tokenizer(texts, padding=True, truncation=True, max_length=window, return_tensors="pt")
            image = model.vision_proj(model.vision_model(pixels)[0][:, 0])
            text = model.text_proj(model.text_encoder(ids["input_ids"], ids["attention_mask"])[0][:, 0])
            return normalised(image), normalised(text)
        model = transformers.AutoModel.from_pretrained(directory).eval()
        if name.startswith("siglip"):  # padded to the window, no attention mask: as SigLIP was trained
            ids = tokenizer(texts, padding="max_length", truncation=True, max_length=window, return_tensors="pt")
            text = model.get_text_features(input_ids=ids["input_ids"])
        else:
            ids = tokenizer(texts, padding=True, truncation=True, max_length=window, return_tensors="pt")
            text = model.get_text_features(**ids)
        return normalised(model.get_image_features(**vision)), normalised(text)


@pytest.mark.parametrize("name", ENTRIES)
def test_features_equal_a_direct_transformers_call(name, model_dirs, images):
    retriever = build(name, model_dirs)
    got_images, got_texts = retriever.encode_images(images), retriever.encode_texts(TEXTS)
    want_images, want_texts = direct_features(name, model_dirs[name], images, TEXTS, retriever.text_window)
    assert got_images.dtype == np.float32 and got_texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got_images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got_images, want_images, atol=2e-5)
    np.testing.assert_allclose(got_texts, want_texts, atol=2e-5)
    assert len({tuple(np.round(row, 4)) for row in got_images}) == len(images)  # images tell apart


@pytest.mark.parametrize("name", ENTRIES)
def test_long_text_policy_is_applied_and_reported(name, model_dirs):
    truncate = build(name, model_dirs, long_text="truncate")
    chunk = build(name, model_dirs, long_text="chunk")
    cut, chunked = truncate.encode_texts(TEXTS), chunk.encode_texts(TEXTS)
    short = [0, 2, 3]
    np.testing.assert_allclose(cut[short], chunked[short], atol=2e-5)  # texts within the window: one policy
    assert np.abs(cut[1] - chunked[1]).max() > 1e-3  # the long one: the windows after the first count
    window = truncate.text_window
    assert truncate.text_stats == {
        "text_window": window,
        "long_text": "truncate",
        "n_texts": 4,
        "n_over_window": 1,
        "over_window_rate": 0.25,
        "truncated_rate": 0.25,
        "n_windows": 4,
    }
    stats = chunk.text_stats
    assert (stats["long_text"], stats["n_over_window"], stats["truncated_rate"]) == ("chunk", 1, 0.0)
    assert stats["n_windows"] > 4
    manifest = chunk.manifest()
    assert (manifest["name"], manifest["text_window"], manifest["long_text"]) == (ENTRIES[name][0], window, "chunk")
    assert manifest["fingerprint"] == truncate.fingerprint and len(manifest["fingerprint"]) == 16
    assert {"model", "revision", "dtype", "device"} <= set(manifest)
    json.dumps(manifest)


def test_chunk_is_the_token_weighted_mean_of_its_windows(model_dirs):
    chunk = build("clip", model_dirs, long_text="chunk", overlap=8)
    pieces, owners, weights, counts = chunk.plan_texts([LONG])
    assert len(pieces) > 1 and set(owners) == {0} and counts[0] > chunk.text_window
    assert all(w <= chunk.text_window - 2 for w in weights) and sum(weights) > counts[0] - 2  # overlap counted
    windows = build("clip", model_dirs).encode_texts(pieces)
    mean = (windows * np.asarray(weights, dtype=np.float32)[:, None]).sum(0)
    np.testing.assert_allclose(chunk.encode_texts([LONG])[0], mean / np.linalg.norm(mean), atol=2e-5)


def test_windows_are_the_model_s_unless_given(model_dirs):
    assert {name: build(name, model_dirs, max_length=None).text_window for name in ENTRIES} == {
        "clip": 77,
        "longclip": 248,
        "align": 64,  # as its processor pads, not the 512 positions
        "blip": 512,
        "siglip": 64,
        "siglip2": 64,
        "hf": 77,
    }
    assert build("align", model_dirs, max_length=512).text_window == 512
    with pytest.raises(OptionError, match="max_length 78 is over the model's 77 text positions; use at most 77"):
        build("clip", model_dirs, max_length=78)
    with pytest.raises(OptionError, match="long_text"):
        build("clip", model_dirs, long_text="drop")
    with pytest.raises(RegistryError, match="has no option window"):
        build("clip", model_dirs, window=5)


# ---------------------------------------------------------------------------------------------- BLIP ITM


def direct_itm_and_cosine(directory, images, texts, window):
    """(ITM match logit, cosine), images x texts, from BlipForImageTextRetrieval's forward, one pair at a time."""
    import transformers

    model = transformers.BlipForImageTextRetrieval.from_pretrained(directory).eval()
    processor = transformers.AutoProcessor.from_pretrained(directory)
    itm = np.zeros((len(images), len(texts)))
    cosine = np.zeros((len(images), len(texts)))
    with torch.inference_mode():
        for i, image in enumerate(images):
            for j, text in enumerate(texts):
                inputs = processor(images=image, text=text, truncation=True, max_length=window, return_tensors="pt")
                itm[i, j] = model(**inputs, use_itm_head=True).itm_score[0, 1]
                cosine[i, j] = model(**inputs, use_itm_head=False).itm_score[0, 0]
    return itm, cosine


def test_blip_rerank_orders_by_itm_plus_cosine_computed_directly(model_dirs, images):
    texts = [*SHORT, "two dogs playing in the grass", LONG]
    blip = build("blip", model_dirs, rerank_k=len(texts), rerank_batch_size=3, batch_size=2)
    vectors = blip.encode_images(images), blip.encode_texts(texts)
    itm, cosine = direct_itm_and_cosine(model_dirs["blip"], images, texts, blip.text_window)
    np.testing.assert_allclose(vectors[0] @ vectors[1].T, cosine, atol=2e-5)
    pairs = np.array([(i, j) for i in range(len(images)) for j in range(len(texts))])
    np.testing.assert_allclose(blip.itm_scores(images, texts, pairs[::-1]), itm.ravel()[::-1], atol=1e-4)
    image_to_text = blip.score_matrix(*vectors, images=images, texts=texts)
    assert np.argsort(-image_to_text, axis=1).tolist() == np.argsort(-(itm + cosine), axis=1).tolist()
    text_to_image = blip.score_matrix(*vectors, images=images, texts=texts, queries="texts")
    assert np.argsort(-text_to_image, axis=0).tolist() == np.argsort(-(itm + cosine), axis=0).tolist()
    assert blip.manifest()["reranked_pairs"] == len(pairs) + 2 * len(pairs)
    cosine_only = build("blip", model_dirs, rerank_k=0)
    scores = cosine_only.score_matrix(*vectors)
    assert np.argsort(-scores, axis=1).tolist() == np.argsort(-cosine, axis=1).tolist()


def test_blip_rerank_k_reorders_only_the_top_k(model_dirs, images):
    texts = [*SHORT, "two dogs playing in the grass", LONG]
    blip = build("blip", model_dirs)
    image_vectors, text_vectors = blip.encode_images(images), blip.encode_texts(texts)
    cosine = image_vectors @ text_vectors.T
    out = blip.rerank(images, texts, cosine, k=2)
    itm, _ = direct_itm_and_cosine(model_dirs["blip"], images, texts, blip.text_window)
    for row in range(len(images)):
        by_cosine = np.argsort(-cosine[row]).tolist()
        top = sorted(by_cosine[:2], key=lambda j: -(itm[row, j] + cosine[row, j]))
        assert np.argsort(-out[row]).tolist() == top + by_cosine[2:]
    with pytest.raises(RetrievalError, match="needs the images and the texts"):
        build("blip", model_dirs, rerank_k=2).score_matrix(image_vectors, text_vectors)
    with pytest.raises(OptionError, match="rerank_k must be >= 0"):
        build("blip", model_dirs, rerank_k=-1)


# ---------------------------------------------------------------------------------------------- loading


REMOTE_CODE = textwrap.dedent(
    '''
    from transformers import CLIPModel


    class TensorClipModel(CLIPModel):
        """Features as tensors, the way transformers 4.x and remote-code ports return them."""

        def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None):
            out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            return self.text_projection(out.pooler_output)

        def get_image_features(self, pixel_values=None):
            return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)
    '''
)


def test_remote_code_port_returning_tensors(model_dirs, images, tmp_path):
    import shutil

    directory = tmp_path / "remote-longclip"
    shutil.copytree(model_dirs["longclip"], directory)
    (directory / "modeling_tensor_clip.py").write_text(REMOTE_CODE)
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_tensor_clip.TensorClipModel"}
    (directory / "config.json").write_text(json.dumps(config))
    remote = get_retriever("longclip", model=str(directory), trust_remote_code=True, show_progress=False)
    assert type(remote.model).__name__ == "TensorClipModel"
    stock = build("longclip", model_dirs)
    np.testing.assert_allclose(remote.encode_images(images), stock.encode_images(images), atol=2e-5)
    np.testing.assert_allclose(remote.encode_texts(TEXTS), stock.encode_texts(TEXTS), atol=2e-5)
    assert remote.text_window == 248 and remote.fingerprint != stock.fingerprint


def test_feature_tensor_reads_output_objects_and_tensors():
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    x = torch.ones(2, 3)
    assert feature_tensor(x) is x
    assert feature_tensor(BaseModelOutputWithPooling(last_hidden_state=torch.zeros(2, 4, 3), pooler_output=x)) is x
    with pytest.raises(RetrievalError, match="no tensor or pooler_output"):
        feature_tensor({"logits": 1})


def test_offline_missing_model_and_a_model_without_features_are_one_line(monkeypatch, model_dirs):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        get_retriever("clip", model="nobody-xyz/no-such-clip-123")
    assert "\n" not in str(info.value) and "pass a local" in str(info.value)
    with pytest.raises(ModelLoadError, match="needs a model"):
        get_retriever("hf")
    with pytest.raises(ModelLoadError, match="cannot load BlipForImageTextRetrieval from"):
        get_retriever("blip", model=str(model_dirs["clip"]), show_progress=False)


def test_a_captioning_checkpoint_is_refused_by_the_blip_retriever(tmp_path):
    """BLIP's captioning checkpoints hold no ITC projections or ITM head: loading one would leave them random."""
    from pancap_retrieval.testing import random_blip_captioner, save_pretrained

    directory = save_pretrained(tmp_path / "blip-captioning", *random_blip_captioner())
    with pytest.raises(ModelLoadError, match=r"has no weights for \d+ tensors of BlipForImageTextRetrieval") as info:
        get_retriever("blip", model=str(directory), show_progress=False)
    assert str(info.value).endswith("pass a checkpoint of that class")


def test_registry_lists_every_entry_with_its_window_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys; from pancap_retrieval.retrieval.image_text import RETRIEVERS; "
        "print(RETRIEVERS.names()); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [str(sorted({entry for entry, _ in ENTRIES.values()})), "False"]
    for name, description in RETRIEVERS.describe():
        assert "text window" in description, name
    from click.testing import CliRunner

    from pancap_retrieval.cli import cli

    listed = CliRunner().invoke(cli, ["list", "retrievers"]).output
    assert "zer0int/LongCLIP-L-Diffusers" in listed and "Salesforce/blip-itm-large-coco" in listed
    options = CliRunner().invoke(cli, ["list", "retrievers", "--options"]).output
    assert "    rerank_k: int = 0" in options and "    long_text: 'truncate' | 'chunk' = 'truncate'" in options
