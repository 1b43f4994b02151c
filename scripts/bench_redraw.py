"""Benchmark GLIGEN redrawing: plain diffusers against our batched sampler, on random weights of the real size.

The GLIGEN (SD-1.4) UNet, VAE and CLIP text encoder are built from their configs with random weights
(:mod:`reconstruct.redrawers.random_weights`), saved, and loaded back with ``from_pretrained``; sampling cost does not
depend on the weights' values. Rows, side by side in one process, all drawing one layout with the same seeds:

- ``diffusers-eager-fp32-b1``: ``StableDiffusionGLIGENPipeline.__call__``, fp32, one image per call;
- ``diffusers-eager-fp16-batched``: the same call in fp16 (``-fp32-`` on CPU) with ``--eager-batch`` prompts;
- ``ours-bN`` for each of ``--batches``: :class:`reconstruct.redrawers.diffusion.GLIGENRedrawer` in fp16, one
  layout per row, channels-last UNet, SDPA attention (diffusers' default processor) and ``torch.compile``
  (``reduce-overhead``: CUDA graphs) on GPU; its images are compared with the eager half-precision ones (PSNR).

Each row: images/s, UNet steps/s (denoising steps of one batch per second; with CFG each step is one UNet forward on
2 x batch rows), peak GPU memory, and FLOP utilisation: UNet FLOPs (``torch.utils.flop_counter.FlopCounterMode``,
one forward with attention counted as matmuls, times 2 x steps per image) per second over ``--peak-tflops`` (800 by
default: H100/H200 dense bf16/fp16 order of magnitude). ``summary`` holds the best batch's utilisation and images/s,
batch-1 UNet steps/s and the lowest PSNR; a full-size GPU run adds ``targets`` and ``meets_targets``. ``--tiny`` runs
the same code with the tiny preset on CPU in seconds.

    python scripts/bench_redraw.py --out bench_redraw.json            # GPU, 512x512, 50 steps
    python scripts/bench_redraw.py --tiny                              # CPU smoke run
    python scripts/bench_redraw.py --tiny --compile-any-device         # CPU, ours compiled as on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The targets for the 'ours' rows on the GPU; PSNR against the eager half-precision images stands for
# "identical in content within half-precision tolerance".
TARGETS = {
    "best_flop_utilisation": 0.5,
    "best_images_per_s": 3.5,
    "batch1_unet_steps_per_s": 35.0,
    "min_psnr_db_vs_eager": 30.0,
}

CAPTION = (
    "A woman [[0.05, 0.1, 0.45, 0.95]] walks a dog [[0.5, 0.6, 0.75, 0.95]] past a red car [[0.55, 0.3, 0.98, 0.7]] "
    "on a wet street under a grey sky [[0.0, 0.0, 1.0, 0.3]]."
)


def unet_flops(pipe: Any, height: int, width: int, rows: int, device: Any, dtype: Any) -> int:
    """FLOPs of one UNet forward on ``rows`` latent rows with GLIGEN grounding (30 objects)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)  # the eager module under a compiled one
    factor = pipe.vae_scale_factor
    latents = torch.randn(
        rows, unet.config.in_channels, height // factor, width // factor, device=device, dtype=dtype
    )
    context = torch.randn(rows, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    gligen = {
        "boxes": torch.rand(rows, 30, 4, device=device, dtype=dtype),
        "positive_embeddings": torch.randn(
            rows, 30, unet.config.cross_attention_dim, device=device, dtype=dtype
        ),
        "masks": torch.ones(rows, 30, device=device, dtype=dtype),
    }
    pipe.enable_fuser(True)
    counter = FlopCounterMode(display=False)
    # Attention through the math backend: its matmuls are counted on every device, whereas a fused kernel the
    # counter has no formula for (the CPU flash kernel, for one) would count as zero.
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        unet(latents, 500, encoder_hidden_states=context, cross_attention_kwargs={"gligen": gligen})
    return int(counter.get_total_flops())


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(name: str, run: Any, n_images: int, n_batches: int, steps: int, torch: Any, device: Any) -> dict:
    """Time ``run`` after one warm-up call (compilation for the compiled rows); returns the row and run's output."""
    run()
    _sync(torch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    output = run()
    _sync(torch, device)
    elapsed = time.perf_counter() - started
    row = {
        "name": name,
        "images": n_images,
        "seconds": round(elapsed, 4),
        "images_per_s": round(n_images / elapsed, 4),
        "unet_steps_per_s": round(n_batches * steps / elapsed, 3),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)
        if device.type == "cuda"
        else None,
    }
    return row, output


def psnr(a: Any, b: Any) -> float:
    """PSNR in dB of two same-size RGB images (capped at 100 for identical images)."""
    import numpy as np

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse))


def _batches(text: str) -> list[int]:
    sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    if not sizes or sizes[0] < 1:
        raise SystemExit(f"--batches needs positive integers, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny preset on CPU: a smoke run of the same code"
    )
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (50; tiny: 2)")
    parser.add_argument(
        "--batches", default=None, help="batch sizes of the 'ours' rows, comma-separated (1,16,32; tiny: 1,2)"
    )
    parser.add_argument(
        "--eager-batch", type=int, default=None, help="batch of the eager half-precision row (32; tiny: 2)"
    )
    parser.add_argument("--size", type=int, default=None, help="canvas side in pixels (512; tiny: 32)")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument(
        "--compile-mode", default="reduce-overhead", help="torch.compile mode of the 'ours' rows"
    )
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--compile-any-device", action="store_true", help="compile the 'ours' UNet on a CPU too (default mode)"
    )
    parser.add_argument("--peak-tflops", type=float, default=800.0)
    parser.add_argument(
        "--flops-only", action="store_true", help="count the UNet FLOPs of one CFG step and stop (any device)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)

    import diffusers
    import torch

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()

    from pancap_retrieval.testing import save_random_gligen
    from reconstruct.layout import layout_from_caption
    from reconstruct.redrawers import example_seed
    from reconstruct.redrawers.diffusion import GLIGENRedrawer

    preset = "tiny" if args.tiny else "sd-1.4"
    steps = args.steps or (2 if args.tiny else 50)
    batches = _batches(args.batches or ("1,2" if args.tiny else "1,16,32"))
    eager_batch = args.eager_batch or (2 if args.tiny else 32)
    size = args.size or (32 if args.tiny else 512)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    half = torch.float16 if device.type == "cuda" else torch.float32
    compile_mode = None if args.no_compile or device.type != "cuda" else args.compile_mode
    if args.compile_any_device and device.type != "cuda" and not args.no_compile:
        compile_mode = "default"
    n_layouts = max(eager_batch, *batches, 2)

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = save_random_gligen(Path(scratch) / f"gligen-{preset}", preset, seed=0)
        results: dict[str, Any] = {
            "preset": preset,
            "size": size,
            "steps": steps,
            "guidance_scale": args.guidance_scale,
            "device": torch.cuda.get_device_name()
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "peak_tflops": args.peak_tflops,
            "targets": TARGETS if device.type == "cuda" and not args.tiny else None,
            "rows": [],
        }
        dtype_name = {torch.float16: "fp16", torch.float32: "fp32"}
        ours = GLIGENRedrawer(
            model_dir,
            device=str(device),
            dtype=dtype_name[half],
            steps=steps,
            guidance_scale=args.guidance_scale,
            canvas_size=size,
            channels_last=True,
            compile=compile_mode or False,
        )
        # One layout content, one seed per image: every row draws the same images.
        layouts = [
            layout_from_caption(CAPTION, f"bench-{i}", image_size=(size, size), **ours.layout_options())
            for i in range(n_layouts)
        ]
        seeds = [example_seed(0, layout.example_id) for layout in layouts]
        layout = layouts[0]
        cfg_rows = 2 if args.guidance_scale > 1 else 1
        flops_per_row = unet_flops(ours.pipe, size, size, 1, device, half)
        flops_per_image = flops_per_row * cfg_rows * steps
        results["unet_gflops_per_forward_row"] = round(flops_per_row / 1e9, 3)
        results["unet_tflops_per_cfg_step_batch1"] = round(flops_per_row * cfg_rows / 1e12, 4)
        results["unet_tflops_per_image"] = round(flops_per_image / 1e12, 4)
        if args.flops_only:
            print(json.dumps(results, indent=2))
            return results

        eager_images: list[Any] = []
        for name, dtype, per_call, n_images in (
            ("diffusers-eager-fp32-b1", torch.float32, 1, 2),
            (f"diffusers-eager-{dtype_name[half]}-batched", half, eager_batch, eager_batch),
        ):
            pipe = diffusers.StableDiffusionGLIGENPipeline.from_pretrained(
                model_dir, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
            ).to(device)
            pipe.set_progress_bar_config(disable=True)

            def call(pipe: Any = pipe, per_call: int = per_call, n_images: int = n_images) -> list[Any]:
                images = []
                for start in range(0, n_images, per_call):
                    images += pipe(
                        [layout.prompt] * per_call,
                        gligen_phrases=layout.phrases,
                        gligen_boxes=layout.boxes,
                        num_inference_steps=steps,
                        guidance_scale=args.guidance_scale,
                        height=size,
                        width=size,
                        generator=[
                            torch.Generator("cpu").manual_seed(s) for s in seeds[start : start + per_call]
                        ],
                    ).images
                return images

            row, eager_images = _measure(name, call, n_images, n_images // per_call, steps, torch, device)
            row.update({"dtype": dtype_name[dtype], "batch": per_call, "distinct_layouts_per_batch": 1})
            results["rows"].append(row)
            del pipe
            if device.type == "cuda":
                torch.cuda.empty_cache()

        for batch in batches:
            calls = max(1, 4 // batch)  # a few images at small batch sizes

            def redraw(batch: int = batch, calls: int = calls) -> list[Any]:
                images = []
                for _ in range(calls):
                    images += ours.redraw(layouts[:batch], seeds[:batch])
                return images

            row, images = _measure(f"ours-b{batch}", redraw, batch * calls, calls, steps, torch, device)
            shared = min(batch, len(eager_images))
            row.update(
                {
                    "dtype": dtype_name[half],
                    "batch": batch,
                    "distinct_layouts_per_batch": batch,
                    "channels_last": True,
                    "attention": "SDPA (diffusers AttnProcessor2_0)",
                    "compile": compile_mode,
                    "min_psnr_db_vs_eager": round(
                        min(psnr(a, b) for a, b in zip(images[:shared], eager_images[:shared])), 2
                    ),
                }
            )
            results["rows"].append(row)
        for row in results["rows"]:
            achieved = flops_per_image * row["images_per_s"]
            row["unet_tflops_per_s"] = round(achieved / 1e12, 4)
            row["flop_utilisation"] = round(achieved / (args.peak_tflops * 1e12), 6)

    ours_rows = [row for row in results["rows"] if row["name"].startswith("ours-")]
    best = max(ours_rows, key=lambda row: row["flop_utilisation"])
    batch1 = next((row for row in ours_rows if row["batch"] == 1), None)
    results["summary"] = {
        "best_batch": best["batch"],
        "best_flop_utilisation": best["flop_utilisation"],
        "best_images_per_s": best["images_per_s"],
        "batch1_unet_steps_per_s": batch1["unet_steps_per_s"] if batch1 else None,
        "min_psnr_db_vs_eager": min(row["min_psnr_db_vs_eager"] for row in ours_rows),
    }
    if device.type == "cuda" and not args.tiny:
        results["meets_targets"] = {
            key: results["summary"][key] is not None and results["summary"][key] >= target
            for key, target in TARGETS.items()
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
