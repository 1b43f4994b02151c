"""The GLIGEN redrawer's GPU speed settings, run on a CPU: same images, recorded in the manifest."""

from __future__ import annotations

import numpy as np
import pytest

from reconstruct.layout import layout_from_caption
from reconstruct.redrawers import get_redrawer

CAPTION = "A dog [[0.1, 0.1, 0.5, 0.6]] and a cat [[0.5, 0.5, 0.9, 0.9]] play in a park."


@pytest.mark.slow
def test_gpu_settings_draw_the_cpu_images(tiny_gligen_dir):
    options = {"model": str(tiny_gligen_dir), "device": "cpu", "steps": 3, "canvas_size": 32}
    plain = get_redrawer("gligen", **options)
    fast = get_redrawer("gligen", **options, channels_last=True, fuse_qkv=True, vae_batch_size=1)
    assert (plain.channels_last, plain.fuse_qkv) == (False, False)  # a CPU's defaults
    assert {type(p).__name__ for p in fast.pipe.unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}
    assert fast.manifest()["fuse_qkv"] is True and fast.manifest()["channels_last"] is True
    layouts = [layout_from_caption(CAPTION, f"a{i}", **plain.layout_options()) for i in range(2)]
    layouts.append(layout_from_caption("A red car on a wet street.", "b", **plain.layout_options()))
    seeds = [1, 2, 3]
    for ours, theirs in zip(fast.redraw(layouts, seeds), plain.redraw(layouts, seeds)):
        difference = np.abs(np.asarray(ours, dtype=np.int16) - np.asarray(theirs, dtype=np.int16))
        assert difference.max() <= 2  # the same images, up to float rounding of the fused matmuls


def test_max_autotune_on_a_gpu_uses_options_this_torch_knows():
    import torch

    from reconstruct.redrawers.diffusion import AUTOTUNE_OPTIONS, compile_module

    linear = torch.nn.Linear(2, 2)
    # torch.compile checks option names when called and compiles on the first forward only: no GPU is needed.
    compiled = compile_module(linear, "max-autotune", torch.device("cuda"))
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert AUTOTUNE_OPTIONS["triton.cudagraphs"] and AUTOTUNE_OPTIONS["max_autotune"]
    assert isinstance(compile_module(linear, True, torch.device("cpu")), torch._dynamo.eval_frame.OptimizedModule)


def test_vae_batch_size_below_one_is_refused(tiny_gligen_dir):
    with pytest.raises(ValueError, match="vae_batch_size must be >= 1"):
        get_redrawer("gligen", model=str(tiny_gligen_dir), device="cpu", vae_batch_size=0)
