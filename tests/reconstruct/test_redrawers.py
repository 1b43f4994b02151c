from __future__ import annotations

import numpy as np
import pytest

from pancap_retrieval.errors import ModelLoadError, RegistryError
from reconstruct.layout import build_layout, layout_from_caption
from reconstruct.redrawers import REDRAWERS, example_seed, get_redrawer

CAPTION = "A dog [[0.1, 0.1, 0.5, 0.6]] and a cat [[0.5, 0.5, 0.9, 0.9]] play in a park."


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_importing_the_package_and_the_run_module_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, reconstruct, reconstruct.run, reconstruct.layout; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_seed_is_a_stable_hash_of_run_seed_and_id():
    assert example_seed(0, "sa_507752") == 7587523392755661245
    assert example_seed(0, "sa_507752") != example_seed(1, "sa_507752") != example_seed(0, "sa_507753")
    assert 0 <= example_seed(123, "x") < 2**63


def test_registry_names_and_unknown_name():
    assert REDRAWERS.names() == ["gligen", "sketch", "text2image"]
    with pytest.raises(RegistryError, match="known: gligen, sketch, text2image"):
        get_redrawer("dalle")


def test_sketch_draws_the_layout_on_the_canvas():
    redrawer = get_redrawer("sketch", canvas_size=64)
    layout = layout_from_caption(
        "A cat [[0.0, 0.0, 1.0, 1.0]].", "c", image_size=(200, 100), **redrawer.layout_options()
    )
    (image,) = redrawer.redraw([layout], [example_seed(0, "c")])
    assert image.size == (64, 64)
    pixels = _pixels(image)
    assert pixels[2, 32].tolist() == [128, 128, 128]  # the letterbox bar above the 64x32 content
    assert pixels[60, 32].tolist() == [128, 128, 128]
    assert pixels[32, 40].tolist() != [236, 236, 236]  # inside the box: filled with the box colour


def test_gligen_hub_id_offline_is_one_clear_line():
    with pytest.raises(ModelLoadError) as info:
        get_redrawer("gligen", model="masterful/gligen-1-4-generation-text-box", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "masterful/gligen-1-4-generation-text-box" in message
    assert "local folder" in message


def test_folder_without_pipeline_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no model_index\.json"):
        get_redrawer("gligen", model=str(tmp_path), device="cpu")


@pytest.fixture(scope="module")
def gligen(tiny_gligen_dir):
    return get_redrawer("gligen", model=str(tiny_gligen_dir), device="cpu", steps=2, canvas_size=32)


@pytest.mark.slow
def test_tiny_gligen_loads_through_from_pretrained_and_is_deterministic(gligen):
    from diffusers import StableDiffusionGLIGENPipeline

    assert isinstance(gligen.pipe, StableDiffusionGLIGENPipeline)
    assert gligen.pipe.unet.config.attention_type == "gated"
    layout = layout_from_caption(CAPTION, "a", **gligen.layout_options())
    assert layout.canvas == (32, 32) and len(layout.boxes) == 2
    first = gligen.redraw([layout], [7])[0]
    again = gligen.redraw([layout], [7])[0]
    other = gligen.redraw([layout], [8])[0]
    assert first.size == (32, 32)
    assert np.array_equal(_pixels(first), _pixels(again))
    assert np.abs(_pixels(first) - _pixels(other)).max() > 10


def test_gligen_sampler_matches_the_pipeline_call(gligen):
    import torch

    layout = layout_from_caption(CAPTION, "a", **gligen.layout_options())
    ours = gligen.redraw([layout], [3])[0]
    theirs = gligen.pipe(
        layout.prompt,
        gligen_phrases=layout.phrases,
        gligen_boxes=layout.boxes,
        gligen_scheduled_sampling_beta=0.3,
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    assert np.array_equal(_pixels(ours), _pixels(theirs))


def test_caption_without_boxes_falls_back_to_text_only_sd(gligen):
    import torch
    from diffusers import StableDiffusionPipeline

    layout = layout_from_caption("A red car on a wet street.", "b", **gligen.layout_options())
    assert layout.is_text_only
    ours = gligen.redraw([layout], [5])[0]
    parts = dict(gligen.pipe.components)
    parts.pop("image_encoder", None)
    sd = StableDiffusionPipeline(**parts, image_encoder=None, requires_safety_checker=False)
    theirs = sd(
        layout.prompt, num_inference_steps=2, height=32, width=32, generator=torch.Generator().manual_seed(5)
    )
    assert np.array_equal(_pixels(ours), _pixels(theirs.images[0]))


def test_gligen_survives_the_limits(gligen):
    """200 boxes and a 500-word phrase: the layout keeps GLIGEN's tokenizer and max_objs within bounds."""
    entities = [
        {"phrase": f"object number {i}", "boxes": [[0.0, 0.0, (i + 1) / 200, 0.5]]} for i in range(200)
    ]
    entities.append({"phrase": " ".join(["enormous"] * 500), "boxes": [[0.1, 0.1, 0.9, 0.9]]})
    layout = build_layout("x", "Many objects. " * 40, entities, **gligen.layout_options())
    assert len(layout.boxes) == 30 and layout.counts["dropped_over_limit"] == 171
    assert layout.counts["truncated_phrases"] == 1 and layout.counts["prompt_truncated"] == 1
    assert max(len(gligen.tokenizer(p)["input_ids"]) for p in layout.phrases) <= 77
    (image,) = gligen.redraw([layout], [0])
    assert image.size == (32, 32)


@pytest.mark.slow
def test_text2image_loads_any_pipeline_by_folder(tiny_sd_dir):
    redrawer = get_redrawer("text2image", model=str(tiny_sd_dir), device="cpu", steps=2, canvas_size=32)
    assert type(redrawer.pipe).__name__ == "StableDiffusionPipeline"
    assert redrawer.max_prompt_tokens == 77
    layouts = [
        layout_from_caption(CAPTION, "a", **redrawer.layout_options()),
        layout_from_caption(
            "A quiet lake.", "b", image_size=(300, 150), mode="aspect", **redrawer.layout_options()
        ),
    ]
    first = redrawer.redraw(layouts, [1, 2])
    again = redrawer.redraw(layouts, [1, 2])
    assert [im.size for im in first] == [(32, 32), (32, 16)]
    assert all(np.array_equal(_pixels(a), _pixels(b)) for a, b in zip(first, again))


@pytest.mark.slow
def test_text2image_draws_with_pixart_sigma_the_papers_redrawer(tiny_pixart_sigma_dir):
    redrawer = get_redrawer("text2image", model=str(tiny_pixart_sigma_dir), device="cpu", steps=2)
    assert type(redrawer.pipe).__name__ == "PixArtSigmaPipeline"
    assert (redrawer.max_prompt_tokens, redrawer.canvas_size) == (300, 64)  # T5 takes 300 tokens; 32 latents x 2
    assert redrawer.manifest()["call_options"] == {"clean_caption": False}
    long_caption = CAPTION + " " + " ".join(["A small boat drifts past the old stone bridge."] * 12)
    layouts = [
        layout_from_caption(long_caption, "a", **redrawer.layout_options()),
        layout_from_caption(
            "A quiet lake.", "b", image_size=(300, 150), mode="aspect", **redrawer.layout_options()
        ),
    ]
    assert len(redrawer.tokenizer(layouts[0].prompt)["input_ids"]) > 77  # not cut at CLIP's limit
    first = redrawer.redraw(layouts, [1, 2])
    again = redrawer.redraw(layouts, [1, 2])
    assert [im.size for im in first] == [(64, 64), (64, 32)]
    assert all(np.array_equal(_pixels(a), _pixels(b)) for a, b in zip(first, again))
