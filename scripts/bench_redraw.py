"""Benchmark GLIGEN redrawing: plain diffusers against our batched sampler, on random weights of the real size.

The GLIGEN (SD-1.4) UNet, VAE and CLIP text encoder are built from their configs with random weights
(:mod:`pancap_retrieval.testing`), saved, and loaded back with ``from_pretrained``; sampling cost does not
depend on the weights' values. Rows, side by side in one process, all drawing one layout with the same seeds:

- ``diffusers-eager-fp32-b1``: ``StableDiffusionGLIGENPipeline.__call__``, fp32, one image per call;
- ``diffusers-eager-fp16-batched``: the same call in fp16 (``-fp32-`` on CPU) with ``--eager-batch`` prompts;
- ``ours-bN`` for each of ``--batches``: :class:`reconstruct.redrawers.diffusion.GLIGENRedrawer` in fp16, one
  layout per row, channels-last UNet and VAE, fused QKV projections, SDPA attention and ``torch.compile`` on GPU
  (``--compile-mode``: ``reduce-overhead`` = CUDA graphs; ``max-autotune`` adds GEMM/conv autotuning and the
  inductor settings known to pay for UNets); its images are compared with the eager half-precision ones (PSNR).

Each row: images/s, UNet steps/s (denoising steps of one batch per second; with CFG each step is one UNet forward on
2 x batch rows), warm-up seconds (the first call: compilation for the compiled rows), peak GPU memory, and FLOP
utilisation: UNet FLOPs (``torch.utils.flop_counter.FlopCounterMode``, one forward with attention counted as matmuls,
times 2 x steps per image) per second over ``--peak-tflops`` (800 by default: H100/H200 dense bf16/fp16 order of
magnitude). ``summary`` holds the best batch's utilisation and images/s, batch-1 UNet steps/s and the lowest PSNR;
``equivalence`` the PSNR of ours against eager per batch size. A full-size GPU run, or any run with
``--check-targets``, adds ``targets`` and ``meets_targets``. ``--profile`` adds where one sampling step goes: UNet
time with and without the GLIGEN fuser, with and without the CFG rows, VAE decode and text encoding per image, and
the UNet's time by operator kind (torch profiler). ``--out`` receives one JSON line per step as it finishes, so an
interrupted run keeps every finished row. ``--tiny`` runs the same code with the tiny preset on CPU in seconds.

    python scripts/bench_redraw.py --out bench_redraw.jsonl            # GPU, 512x512, 50 steps
    python scripts/bench_redraw.py --tiny --check-targets              # CPU: every line of the GPU branch
    python scripts/bench_redraw.py --tiny --compile-any-device         # CPU, ours compiled as on a GPU
    python scripts/bench_redraw.py --size 256 --steps 2 --batches 1 --eager-batch 1 --profile   # full UNet, CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pancap_retrieval.artifacts import StepLog, to_jsonable  # noqa: E402

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

# Operator kinds of the profile: the first pattern found in an operator's name decides.
OP_KINDS = (
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "_cudnn_attention")),
    ("convolution", ("conv",)),
    ("matmul", ("addmm", "::mm", "bmm", "matmul", "linear", "gemm", "cublas")),
    ("group_norm", ("group_norm",)),
    ("layer_norm", ("layer_norm",)),
    ("copy_layout", ("copy_", "contiguous", "clone", "cat", "to_copy", "_to_copy")),
)


class Recorder(StepLog):
    """The results so far: the rows, and every other step's fields; each step is also a JSON line of ``path``."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path)
        self.results: dict[str, Any] = {"rows": []}

    def add(self, step: str, **fields: Any) -> None:
        fields = self.step(step, **fields)
        if step == "row":
            self.results["rows"].append(fields["row"])
        else:
            self.results.update(fields)

    def text(self) -> str:
        return json.dumps(to_jsonable(self.results), indent=2)


@dataclass
class Plan:
    """What one run measures, from the arguments and the machine."""

    preset: str
    steps: int
    batches: list[int]
    eager_batch: int
    size: int
    guidance_scale: float
    device: Any
    half: Any
    compile_mode: str | None
    check_targets: bool
    peak_tflops: float
    dtype_name: dict[Any, str] = field(default_factory=dict)

    @property
    def full_gpu(self) -> bool:
        return self.device.type == "cuda" and self.preset != "tiny"

    @property
    def cfg_rows(self) -> int:
        return 2 if self.guidance_scale > 1 else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny preset on CPU: a smoke run of the same code"
    )
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (50; tiny: 4, one of them grounded)")
    parser.add_argument(
        "--batches", default=None, help="batch sizes of the 'ours' rows, comma-separated (1,16,32; tiny: 1,2)"
    )
    parser.add_argument(
        "--eager-batch", type=int, default=None, help="batch of the eager half-precision row (32; tiny: 2)"
    )
    parser.add_argument("--size", type=int, default=None, help="canvas side in pixels (512; tiny: 32)")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument(
        "--compile-mode",
        default="reduce-overhead",
        help="torch.compile mode of the 'ours' rows on a GPU: reduce-overhead (CUDA graphs) or max-autotune",
    )
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--compile-any-device", action="store_true", help="compile the 'ours' UNet on a CPU too (default mode)"
    )
    parser.add_argument("--peak-tflops", type=float, default=800.0)
    parser.add_argument(
        "--flops-only",
        action="store_true",
        help="count the UNet FLOPs of one CFG step (and --profile) and stop (any device)",
    )
    parser.add_argument(
        "--check-targets",
        action="store_true",
        help="judge the targets on any device (as a full-size GPU run does), to exercise that branch",
    )
    parser.add_argument("--profile", action="store_true", help="add where one sampling step's time goes")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per finished step here")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    compile_mode = None if args.no_compile or device.type != "cuda" else args.compile_mode
    if args.compile_any_device and device.type != "cuda" and not args.no_compile:
        compile_mode = "default"
    return Plan(
        preset="tiny" if args.tiny else "sd-1.4",
        steps=args.steps or (4 if args.tiny else 50),
        batches=_batches(args.batches or ("1,2" if args.tiny else "1,16,32")),
        eager_batch=args.eager_batch or (2 if args.tiny else 32),
        size=args.size or (32 if args.tiny else 512),
        guidance_scale=args.guidance_scale,
        device=device,
        half=torch.float16 if device.type == "cuda" else torch.float32,
        compile_mode=compile_mode,
        check_targets=args.check_targets,
        peak_tflops=args.peak_tflops,
        dtype_name={torch.float16: "fp16", torch.float32: "fp32"},
    )


def _batches(text: str) -> list[int]:
    sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    if not sizes or sizes[0] < 1:
        raise SystemExit(f"--batches needs positive integers, got {text!r}")
    return sizes


def unet_flops(pipe: Any, height: int, width: int, rows: int, device: Any, dtype: Any) -> int:
    """FLOPs of one UNet forward on ``rows`` latent rows with GLIGEN grounding (30 objects)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)  # the eager module under a compiled one
    inputs = _unet_inputs(unet, pipe.vae_scale_factor, height, width, rows, device, dtype)
    counter = FlopCounterMode(display=False)
    # Attention through the math backend: its matmuls are counted on every device, whereas a fused kernel the
    # counter has no formula for (the CPU flash kernel, for one) would count as zero.
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        unet(*inputs[:2], **inputs[2])
    return int(counter.get_total_flops())


def _unet_inputs(
    unet: Any, factor: int, height: int, width: int, rows: int, device: Any, dtype: Any, grounded: bool = True
) -> tuple[Any, Any, dict[str, Any]]:
    """Random UNet inputs of one step: latents, timestep, and the keyword arguments (30 grounding objects)."""
    import torch

    dim = unet.config.cross_attention_dim
    latents = torch.randn(rows, unet.config.in_channels, height // factor, width // factor, device=device)
    kwargs: dict[str, Any] = {"encoder_hidden_states": torch.randn(rows, 77, dim, device=device, dtype=dtype)}
    if grounded:
        gligen = {
            "boxes": torch.rand(rows, 30, 4, device=device, dtype=dtype),
            "positive_embeddings": torch.randn(rows, 30, dim, device=device, dtype=dtype),
            "masks": torch.ones(rows, 30, device=device, dtype=dtype),
        }
        kwargs["cross_attention_kwargs"] = {"gligen": gligen}
    timestep = torch.tensor(500, device=device)
    return latents.to(dtype=dtype, memory_format=torch.channels_last), timestep, kwargs


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(name: str, run: Any, n_images: int, n_batches: int, steps: int, torch: Any, device: Any) -> tuple:
    """Time ``run`` after one warm-up call (compilation for the compiled rows); returns the row and run's output."""
    started = time.perf_counter()
    run()
    _sync(torch, device)
    warmup = time.perf_counter() - started
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
        "warmup_seconds": round(warmup, 3),
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
    return 100.0 if mse == 0 else float(min(100.0, 10 * np.log10(255.0**2 / mse)))


def utilisation(row: dict[str, Any], flops_per_image: float, peak_tflops: float) -> dict[str, Any]:
    """The row's achieved UNet TFLOP/s and its share of the peak."""
    achieved = flops_per_image * row["images_per_s"]
    return {
        "unet_tflops_per_s": round(achieved / 1e12, 4),
        "flop_utilisation": round(achieved / (peak_tflops * 1e12), 6),
    }


def eager_rows(plan: Plan, model_dir: Path, layout: Any, seeds: list[int], record: Recorder, flops: float) -> list:
    """The plain diffusers rows (fp32 one by one; half precision batched); returns the half-precision images."""
    import diffusers
    import torch

    images: list[Any] = []
    for name, dtype, per_call, n_images in (
        ("diffusers-eager-fp32-b1", torch.float32, 1, 2),
        (f"diffusers-eager-{plan.dtype_name[plan.half]}-batched", plan.half, plan.eager_batch, plan.eager_batch),
    ):
        pipe = diffusers.StableDiffusionGLIGENPipeline.from_pretrained(
            model_dir, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
        ).to(plan.device)
        pipe.set_progress_bar_config(disable=True)

        def call(pipe: Any = pipe, per_call: int = per_call, n_images: int = n_images) -> list[Any]:
            out = []
            for start in range(0, n_images, per_call):
                out += pipe(
                    [layout.prompt] * per_call,
                    gligen_phrases=layout.phrases,
                    gligen_boxes=layout.boxes,
                    num_inference_steps=plan.steps,
                    guidance_scale=plan.guidance_scale,
                    height=plan.size,
                    width=plan.size,
                    generator=[torch.Generator("cpu").manual_seed(s) for s in seeds[start : start + per_call]],
                ).images
            return out

        row, images = _measure(name, call, n_images, n_images // per_call, plan.steps, torch, plan.device)
        row.update({"dtype": plan.dtype_name[dtype], "batch": per_call, "distinct_layouts_per_batch": 1})
        row.update(utilisation(row, flops, plan.peak_tflops))
        record.add("row", row=row)
        del pipe
        if plan.device.type == "cuda":
            torch.cuda.empty_cache()
    return images


def ours_rows(
    plan: Plan, ours: Any, layouts: list, seeds: list[int], eager_images: list, record: Recorder, flops: float
) -> None:
    """One row per batch size of our sampler, with the PSNR of its images against the eager half-precision ones."""
    import torch

    manifest = ours.manifest()
    processors = sorted({type(p).__name__ for p in ours.pipe.unet.attn_processors.values()})
    for batch in plan.batches:
        calls = max(1, 4 // batch)  # a few images at small batch sizes

        def redraw(batch: int = batch, calls: int = calls) -> list[Any]:
            images = []
            for _ in range(calls):
                images += ours.redraw(layouts[:batch], seeds[:batch])
            return images

        row, images = _measure(f"ours-b{batch}", redraw, batch * calls, calls, plan.steps, torch, plan.device)
        shared = min(batch, len(eager_images))
        row.update(
            {
                "dtype": plan.dtype_name[plan.half],
                "batch": batch,
                "distinct_layouts_per_batch": batch,
                "channels_last": manifest["channels_last"],
                "fused_qkv": manifest.get("fuse_qkv"),
                "attention": "SDPA (" + ", ".join(processors) + ")",
                "compile": plan.compile_mode,
                "min_psnr_db_vs_eager": round(
                    min(psnr(a, b) for a, b in zip(images[:shared], eager_images[:shared])), 2
                ),
            }
        )
        row.update(utilisation(row, flops, plan.peak_tflops))
        record.add("row", row=row)


def summarise(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of the 'ours' rows, PSNR per batch size, and the targets judged (full-size GPU or --check-targets)."""
    ours = [row for row in rows if row["name"].startswith("ours-")]
    best = max(ours, key=lambda row: row["flop_utilisation"])
    batch1 = next((row for row in ours if row["batch"] == 1), None)
    summary = {
        "best_batch": best["batch"],
        "best_flop_utilisation": best["flop_utilisation"],
        "best_images_per_s": best["images_per_s"],
        "batch1_unet_steps_per_s": batch1["unet_steps_per_s"] if batch1 else None,
        "min_psnr_db_vs_eager": min(row["min_psnr_db_vs_eager"] for row in ours),
    }
    threshold = TARGETS["min_psnr_db_vs_eager"]
    out: dict[str, Any] = {
        "summary": summary,
        "equivalence": {
            "psnr_db_vs_eager_by_batch": {str(row["batch"]): row["min_psnr_db_vs_eager"] for row in ours},
            "threshold_db": threshold,
            "equivalent": bool(summary["min_psnr_db_vs_eager"] >= threshold),
        },
    }
    if plan.full_gpu or plan.check_targets:
        out["targets"] = TARGETS
        out["meets_targets"] = {
            key: bool(summary[key] is not None and summary[key] >= target) for key, target in TARGETS.items()
        }
        out["targets_judged_on"] = "full-size GPU run" if plan.full_gpu else f"{plan.preset} on {plan.device.type}"
    return out


def _timed(fn: Any, torch: Any, device: Any, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls of ``fn`` after one warm-up call, in seconds (the least disturbed one)."""
    fn()
    _sync(torch, device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        _sync(torch, device)
        best = min(best, time.perf_counter() - started)
    return best


def op_kind_shares(unet: Any, inputs: tuple, torch: Any, device: Any, top: int = 8) -> dict[str, Any]:
    """Share of the UNet's self time by operator kind, and its top operators (torch profiler, one forward)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        unet(*inputs[:2], **_fresh(inputs[2]))
        _sync(torch, device)
        with profile(activities=activities) as prof:
            unet(*inputs[:2], **_fresh(inputs[2]))
            _sync(torch, device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [(e.key, float(getattr(e, attr, 0.0))) for e in prof.key_averages()]
    total = sum(t for _, t in events) or 1.0
    shares: dict[str, float] = {}
    for name, spent in events:
        kind = next((k for k, marks in OP_KINDS if any(m in name for m in marks)), "elementwise_and_other")
        shares[kind] = shares.get(kind, 0.0) + spent / total
    ranked = sorted(events, key=lambda e: -e[1])[:top]
    return {
        "time": "device" if device.type == "cuda" else "cpu",
        "share_by_kind": {k: round(v, 4) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": name, "share": round(spent / total, 4)} for name, spent in ranked],
    }


def _fresh(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy of the UNet keyword arguments: the UNet pops its ``gligen`` entry out of the dict it is given."""
    out = dict(kwargs)
    if "cross_attention_kwargs" in out:
        out["cross_attention_kwargs"] = dict(out["cross_attention_kwargs"])
    return out


def profile_step(plan: Plan, ours: Any, layouts: list, record: Recorder) -> None:
    """Where one sampling step goes at the largest batch: leave-one-out timings and the operator kinds."""
    import torch

    pipe = ours.pipe
    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    batch = max(plan.batches)
    rows = batch * plan.cfg_rows
    factor = pipe.vae_scale_factor
    args = (unet, factor, plan.size, plan.size)
    grounded = _unet_inputs(*args, rows, plan.device, plan.half)
    plain = _unet_inputs(*args, rows, plan.device, plan.half, grounded=False)
    cond_only = _unet_inputs(*args, batch, plan.device, plan.half)
    latents = torch.randn(batch, 4, plan.size // factor, plan.size // factor, device=plan.device, dtype=plan.half)

    def forward(inputs: tuple) -> Any:
        with torch.inference_mode():
            return unet(*inputs[:2], **_fresh(inputs[2]))

    def decode() -> Any:
        with torch.inference_mode():
            return ours.decode(latents)

    def encode() -> Any:
        with torch.inference_mode():
            return ours.encode(layouts[:batch], cfg=plan.cfg_rows == 2)

    seconds = {
        "unet_step_grounded": _timed(lambda: forward(grounded), torch, plan.device),
        "unet_step_without_fuser": _timed(lambda: forward(plain), torch, plan.device),
        "unet_step_without_cfg_rows": _timed(lambda: forward(cond_only), torch, plan.device),
        "vae_decode_batch": _timed(decode, torch, plan.device),
        "text_encode_batch": _timed(encode, torch, plan.device),
    }
    step = seconds["unet_step_grounded"]
    per_image = {
        "unet_all_steps": step * plan.steps / batch,
        "vae_decode": seconds["vae_decode_batch"] / batch,
        "text_encode": seconds["text_encode_batch"] / batch,
    }
    record.add(
        "profile",
        profile={
            "batch": batch,
            "module": "eager UNet (the compiled one wraps it)",
            "milliseconds": {k: round(v * 1e3, 3) for k, v in seconds.items()},
            "fuser_share_of_unet_step": round(1 - seconds["unet_step_without_fuser"] / step, 4),
            "cfg_rows_share_of_unet_step": round(1 - seconds["unet_step_without_cfg_rows"] / step, 4),
            "share_of_image_time": {k: round(v / sum(per_image.values()), 4) for k, v in per_image.items()},
            "unet_by_operator": op_kind_shares(unet, grounded, torch, plan.device),
        },
    )


def setup_fields(plan: Plan) -> dict[str, Any]:
    import diffusers
    import torch

    return {
        "preset": plan.preset,
        "size": plan.size,
        "steps": plan.steps,
        "guidance_scale": plan.guidance_scale,
        "device": torch.cuda.get_device_name() if plan.device.type == "cuda" else platform.processor() or "cpu",
        "torch": str(torch.__version__),
        "diffusers": diffusers.__version__,
        "peak_tflops": plan.peak_tflops,
        "compile_mode": plan.compile_mode,
    }


def build_ours(plan: Plan, model_dir: Path) -> tuple[Any, list, list[int]]:
    """Our redrawer with the GPU settings, the benchmark's layouts (one content, one id each) and their seeds."""
    from reconstruct.layout import layout_from_caption
    from reconstruct.redrawers import example_seed
    from reconstruct.redrawers.diffusion import GLIGENRedrawer

    ours = GLIGENRedrawer(
        model_dir,
        device=str(plan.device),
        dtype=plan.dtype_name[plan.half],
        steps=plan.steps,
        guidance_scale=plan.guidance_scale,
        canvas_size=plan.size,
        channels_last=True,
        fuse_qkv=True,
        compile=plan.compile_mode or False,
    )
    n_layouts = max(plan.eager_batch, *plan.batches, 2)
    layouts = [
        layout_from_caption(CAPTION, f"bench-{i}", image_size=(plan.size, plan.size), **ours.layout_options())
        for i in range(n_layouts)
    ]
    return ours, layouts, [example_seed(0, layout.example_id) for layout in layouts]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    from pancap_retrieval.testing import save_random_gligen

    plan = make_plan(args)
    record = Recorder(args.out)
    record.add("setup", **setup_fields(plan))
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = save_random_gligen(Path(scratch) / f"gligen-{plan.preset}", plan.preset, seed=0)
        ours, layouts, seeds = build_ours(plan, model_dir)
        flops_per_row = unet_flops(ours.pipe, plan.size, plan.size, 1, plan.device, plan.half)
        flops_per_image = flops_per_row * plan.cfg_rows * plan.steps
        record.add(
            "flops",
            unet_gflops_per_forward_row=round(flops_per_row / 1e9, 3),
            unet_tflops_per_cfg_step_batch1=round(flops_per_row * plan.cfg_rows / 1e12, 4),
            unet_tflops_per_image=round(flops_per_image / 1e12, 4),
        )
        if args.profile:
            profile_step(plan, ours, layouts, record)
        if not args.flops_only:
            eager = eager_rows(plan, model_dir, layouts[0], seeds, record, flops_per_image)
            ours_rows(plan, ours, layouts, seeds, eager, record, flops_per_image)
            record.add("summary", **summarise(plan, record.results["rows"]))
    print(record.text())
    return record.results


if __name__ == "__main__":
    main()
