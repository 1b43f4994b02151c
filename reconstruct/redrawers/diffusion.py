"""Diffusers redrawers: GLIGEN (layout-to-image) and any text-to-image pipeline.

``StableDiffusionGLIGENPipeline`` is deprecated in diffusers (no fixes after 0.33.1) but still importable; the
project pins ``diffusers>=0.30,<0.44`` for it and is tested with 0.42. Its ``__call__`` takes one layout per call
(the boxes are broadcast over the batch), so :class:`GLIGENRedrawer` samples with its own loop over the pipeline's
components: the same steps as ``__call__`` (prompt encoding, phrase embeddings from the pooled CLIP output, the
gated attention switched off after ``gligen_scheduled_sampling_beta`` of the steps, classifier-free guidance with
the boxes masked out of the unconditional half), with one layout and one generator per batch row. A test checks that
it gives the pipeline's own images. A layout without boxes is drawn text-only: the plain Stable Diffusion loop over
the same components (no gated attention), from the same seed.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import choose_device, choose_dtype, resolve_model
from pancap_retrieval.registry import Fraction, NonNegative
from reconstruct.layout import MAX_BOXES, MAX_TOKENS
from reconstruct.redrawers.base import Redrawer

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from reconstruct.layout import Layout

log = logging.getLogger(__name__)

DEFAULT_GLIGEN = "masterful/gligen-1-4-generation-text-box"
DEFAULT_TEXT2IMAGE = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"


def resolve_device_dtype(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """This process's GPU in fp16 when present, else CPU in fp32; either can be forced (dtype: fp16, bf16, fp32)."""
    dev = choose_device(device)
    return dev, choose_dtype(dev, dtype, gpu_default="fp16")


def load_pipeline(loader: Any, model: str | Path, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(model)``; a model that cannot be had gives one clear line (ModelLoadError)."""
    local = Path(model).expanduser()
    model = resolve_model(model, "model_index.json", f"{what} pipeline")
    try:
        return loader.from_pretrained(model, **kwargs)
    except Exception as exc:
        if local.exists():
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{what}: cannot load the pipeline in {local}: {first}") from None
        raise ModelLoadError(
            f"{what}: cannot load {str(model)!r}: not a local folder, and the Hub is unreachable or has no such "
            f"pipeline ({type(exc).__name__}); pass a local folder holding the pipeline (model_index.json)"
        ) from None


def _generators(seeds: list[int]) -> list[torch.Generator]:
    """CPU generators, so the initial noise of a seed is the same on every device."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


def _group_by_canvas(layouts: list[Layout]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, layout in enumerate(layouts):
        groups.setdefault(tuple(layout.canvas), []).append(i)
    return groups


# torch.compile settings that pay for UNets on GPUs (the published Stable Diffusion recipes of diffusers and
# PyTorch): GEMM and convolution autotuning with CUDA graphs, 1x1 convolutions as matmuls, coordinate-descent tuning
# of the kernels' block sizes, and no epilogue fusion into the autotuned GEMMs.
AUTOTUNE_OPTIONS = {
    "max_autotune": True,
    "triton.cudagraphs": True,
    "conv_1x1_as_mm": True,
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "epilogue_fusion": False,
}


def compile_module(module: Any, mode: bool | str, device: torch.device) -> Any:
    """``torch.compile`` with one graph per input shape (CUDA graphs need static shapes).

    ``mode``: True for the default mode, or a ``torch.compile`` mode; ``"max-autotune"`` on a GPU also applies
    :data:`AUTOTUNE_OPTIONS`.
    """
    import torch

    if mode == "max-autotune" and device.type == "cuda":
        return torch.compile(module, options=dict(AUTOTUNE_OPTIONS), dynamic=False)
    return torch.compile(module, mode=None if mode is True else mode, dynamic=False)


class GLIGENRedrawer(Redrawer):
    """Layouts drawn by GLIGEN (hub id or local folder), batched, one seed per image.

    Speed (each on by default on a GPU, each off by default on a CPU, each settable): ``channels_last`` memory
    format for the UNet and the VAE; ``fuse_qkv``: the query, key and value projections of each attention as one
    matmul (diffusers' ``fuse_qkv_projections``); ``compile``: the UNet through ``torch.compile`` (off by default:
    it pays on long runs; ``"reduce-overhead"`` = CUDA graphs, ``"max-autotune"`` = :data:`AUTOTUNE_OPTIONS`).
    Classifier-free guidance runs the unconditional and conditional rows of a batch as one UNet call, attention
    goes through PyTorch's SDPA kernels, and the VAE decodes ``vae_batch_size`` images at a time.
    """

    name = "gligen"
    default_batch_size = 8

    def __init__(
        self,
        model: str | Path = DEFAULT_GLIGEN,
        *,
        device: str | None = None,
        dtype: str | None = None,
        steps: int = 50,
        guidance_scale: NonNegative = 7.5,
        gligen_scheduled_sampling_beta: Fraction = 0.3,
        negative_prompt: str = "",
        canvas_size: int = 512,
        revision: str | None = None,
        channels_last: bool | None = None,
        fuse_qkv: bool | None = None,
        compile: bool | str = False,
        vae_batch_size: int = 8,
        progress: bool = False,
    ) -> None:
        from diffusers import StableDiffusionGLIGENPipeline

        if not 0.0 <= gligen_scheduled_sampling_beta <= 1.0:
            raise ValueError(
                f"gligen_scheduled_sampling_beta must be in [0, 1], got {gligen_scheduled_sampling_beta}"
            )
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if vae_batch_size < 1:
            raise ValueError(f"vae_batch_size must be >= 1, got {vae_batch_size}")
        self.model = str(model)
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        kwargs: dict[str, Any] = {
            "torch_dtype": self.dtype,
            "safety_checker": None,
            "requires_safety_checker": False,
        }
        if revision:
            kwargs["revision"] = revision
        self.pipe = load_pipeline(StableDiffusionGLIGENPipeline, model, "gligen", **kwargs)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=not progress)
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.beta = gligen_scheduled_sampling_beta
        self.negative_prompt = negative_prompt
        self.canvas_size = canvas_size
        self.revision = revision
        self.tokenizer = self.pipe.tokenizer
        self.max_prompt_tokens = min(MAX_TOKENS, int(self.tokenizer.model_max_length))
        self.max_phrase_tokens = self.max_prompt_tokens
        self.vae_batch_size = vae_batch_size
        self._speed_up(channels_last, fuse_qkv, compile)

    def _speed_up(self, channels_last: bool | None, fuse_qkv: bool | None, compile: bool | str) -> None:
        import torch

        on_gpu = self.device.type == "cuda"
        self.channels_last = on_gpu if channels_last is None else bool(channels_last)
        self.fuse_qkv = on_gpu if fuse_qkv is None else bool(fuse_qkv)
        self.compiled = compile
        if self.channels_last:
            self.pipe.unet.to(memory_format=torch.channels_last)
            self.pipe.vae.to(memory_format=torch.channels_last)
        if self.fuse_qkv:
            self.pipe.unet.fuse_qkv_projections()
        if compile:
            self.pipe.unet = compile_module(self.pipe.unet, compile, self.device)

    def redraw(self, layouts: list[Layout], seeds: list[int]) -> list[Image.Image]:
        if len(layouts) != len(seeds):
            raise ValueError(f"{len(layouts)} layouts but {len(seeds)} seeds")
        out: list[Any] = [None] * len(layouts)
        for _, rows in _group_by_canvas(layouts).items():
            for grounded in (True, False):
                part = [i for i in rows if layouts[i].is_text_only != grounded]
                if part:
                    images = self.sample([layouts[i] for i in part], [seeds[i] for i in part], grounded)
                    for i, image in zip(part, images):
                        out[i] = image
        return out

    def sample(self, layouts: list[Layout], seeds: list[int], grounded: bool = True) -> list[Image.Image]:
        """One batch of layouts of one canvas size: GLIGEN when ``grounded``, else the text-only SD loop."""
        import torch

        if any(tuple(layout.canvas) != tuple(layouts[0].canvas) for layout in layouts):
            raise ValueError("a batch must share one canvas size")
        cfg = self.guidance_scale > 1.0
        with torch.inference_mode():
            prompt_embeds = self.encode(layouts, cfg)
            latents = self.denoise(layouts, seeds, prompt_embeds, grounded, cfg)
            image = self.decode(latents)
            return self.pipe.image_processor.postprocess(
                image, output_type="pil", do_denormalize=[True] * len(layouts)
            )

    def encode(self, layouts: list[Layout], cfg: bool) -> torch.Tensor:
        """The prompts' CLIP embeddings; with CFG the negative prompt's rows first, as one batch."""
        import torch

        batch = len(layouts)
        prompt_embeds, negative_embeds = self.pipe.encode_prompt(
            [layout.prompt for layout in layouts],
            self.device,
            1,
            cfg,
            [self.negative_prompt] * batch if cfg else None,
        )
        return torch.cat([negative_embeds, prompt_embeds]) if cfg else prompt_embeds

    def denoise(
        self, layouts: list[Layout], seeds: list[int], prompt_embeds: torch.Tensor, grounded: bool, cfg: bool
    ) -> torch.Tensor:
        """The sampling loop: one UNet call per step on the unconditional and conditional rows together.

        The boxes are passed to the UNet for the first ``gligen_scheduled_sampling_beta`` of the steps only, which
        is what the pipeline's fuser switch does. The scheduler gets each timestep as a host tensor, so no step
        waits for the GPU to read it back.
        """
        import torch

        pipe = self.pipe
        width, height = layouts[0].canvas
        pipe.scheduler.set_timesteps(self.steps, device=self.device)
        timesteps = pipe.scheduler.timesteps
        generators = _generators(seeds)
        latents = pipe.prepare_latents(
            len(layouts), pipe.unet.config.in_channels, height, width, prompt_embeds.dtype, self.device, generators
        )
        grounding = {"gligen": self._grounding(layouts, cfg)} if grounded else None
        n_grounded = int(self.beta * len(timesteps)) if grounded else 0
        if grounded:
            pipe.enable_fuser(True)  # a call of the pipeline itself leaves it off
        extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
        for i, (t, t_host) in enumerate(zip(timesteps, timesteps.cpu())):
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = pipe.scheduler.scale_model_input(model_input, t)
            if self.channels_last:
                model_input = model_input.contiguous(memory_format=torch.channels_last)
            noise = pipe.unet(
                model_input,
                t,
                encoder_hidden_states=prompt_embeds,
                cross_attention_kwargs=dict(grounding) if grounding and i < n_grounded else None,
            ).sample
            if cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + self.guidance_scale * (cond - uncond)
            elif self.compiled:
                noise = noise.clone()  # a CUDA graph's output is overwritten by its next replay; schedulers keep it
            latents = pipe.scheduler.step(noise, t_host, latents, **extra).prev_sample
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents to images in [-1, 1], ``vae_batch_size`` at a time (the decoder's activations are large)."""
        import torch

        vae = self.pipe.vae
        scaled = latents / vae.config.scaling_factor
        if self.channels_last:
            scaled = scaled.contiguous(memory_format=torch.channels_last)
        parts = [vae.decode(part, return_dict=False)[0] for part in scaled.split(self.vae_batch_size)]
        return torch.cat(parts)

    def _grounding(self, layouts: list[Layout], cfg: bool) -> dict[str, torch.Tensor]:
        """Boxes, phrase embeddings and masks, ``[B, 30, ...]``; the unconditional half masked out."""
        import torch

        pipe = self.pipe
        dtype = pipe.text_encoder.dtype
        dim = pipe.unet.config.cross_attention_dim
        batch = len(layouts)
        boxes = torch.zeros(batch, MAX_BOXES, 4, device=self.device, dtype=dtype)
        embeddings = torch.zeros(batch, MAX_BOXES, dim, device=self.device, dtype=dtype)
        masks = torch.zeros(batch, MAX_BOXES, device=self.device, dtype=dtype)
        phrases = [phrase for layout in layouts for phrase in layout.phrases[:MAX_BOXES]]
        tokens = pipe.tokenizer(phrases, padding=True, return_tensors="pt").to(self.device)
        pooled = pipe.text_encoder(**tokens).pooler_output
        start = 0
        for row, layout in enumerate(layouts):
            n = min(len(layout.boxes), MAX_BOXES)
            boxes[row, :n] = torch.tensor(layout.boxes[:n], dtype=dtype, device=self.device)
            embeddings[row, :n] = pooled[start : start + n]
            masks[row, :n] = 1
            start += n
        if cfg:
            boxes = torch.cat([boxes] * 2)
            embeddings = torch.cat([embeddings] * 2)
            masks = torch.cat([torch.zeros_like(masks), masks])
        return {"boxes": boxes, "positive_embeddings": embeddings, "masks": masks}

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "revision": self.revision,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "gligen_scheduled_sampling_beta": self.beta,
            "negative_prompt": self.negative_prompt,
            "canvas_size": self.canvas_size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "scheduler": type(self.pipe.scheduler).__name__,
            "channels_last": self.channels_last,
            "fuse_qkv": self.fuse_qkv,
            "compile": self.compiled,
        }


class Text2ImageRedrawer(Redrawer):
    """The caption's prompt drawn by any diffusers text-to-image pipeline (boxes unused), batched by canvas."""

    name = "text2image"
    default_batch_size = 4

    def __init__(
        self,
        model: str | Path = DEFAULT_TEXT2IMAGE,
        *,
        device: str | None = None,
        dtype: str | None = None,
        steps: int = 20,
        guidance_scale: NonNegative = 4.5,
        negative_prompt: str = "",
        canvas_size: int | None = None,
        max_prompt_tokens: int | None = None,
        revision: str | None = None,
        progress: bool = False,
    ) -> None:
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        self.model = str(model)
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        kwargs: dict[str, Any] = {"torch_dtype": self.dtype}
        if revision:
            kwargs["revision"] = revision
        try:
            self.pipe = load_pipeline(AutoPipelineForText2Image, model, "text2image", **kwargs)
        except ModelLoadError as exc:
            if not Path(model).expanduser().exists():
                raise
            log.info("AutoPipelineForText2Image refused %s (%s); trying DiffusionPipeline", model, exc)
            self.pipe = load_pipeline(DiffusionPipeline, model, "text2image", **kwargs)
        if getattr(self.pipe, "safety_checker", None) is not None:
            self.pipe.safety_checker = None
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=not progress)
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.revision = revision
        self.tokenizer = getattr(self.pipe, "tokenizer", None)
        # CLIP pipelines stop at 77 tokens; T5 ones (PixArt-Sigma) take up to 300 (their max_sequence_length).
        limit = int(getattr(self.tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS)
        self.max_prompt_tokens = max_prompt_tokens or min(limit, 300)
        self.canvas_size = canvas_size or self._default_canvas()
        # PixArt pipelines rewrite prompts only when beautifulsoup4 and ftfy are installed: never, so that a prompt
        # is drawn the same on every machine.
        self.call_options: dict[str, Any] = {}
        if "clean_caption" in inspect.signature(self.pipe.__call__).parameters:
            self.call_options["clean_caption"] = False

    def _default_canvas(self) -> int:
        pipe = self.pipe
        factor = int(getattr(pipe, "vae_scale_factor", 8))
        if getattr(pipe, "default_sample_size", None):
            return int(pipe.default_sample_size) * factor
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
        return int(sample) * factor if isinstance(sample, int) else 512

    def redraw(self, layouts: list[Layout], seeds: list[int]) -> list[Image.Image]:
        import torch

        if len(layouts) != len(seeds):
            raise ValueError(f"{len(layouts)} layouts but {len(seeds)} seeds")
        out: list[Any] = [None] * len(layouts)
        for (width, height), rows in _group_by_canvas(layouts).items():
            with torch.inference_mode():
                images = self.pipe(
                    prompt=[layouts[i].prompt for i in rows],
                    negative_prompt=[self.negative_prompt] * len(rows) if self.guidance_scale > 1 else None,
                    height=height,
                    width=width,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=_generators([seeds[i] for i in rows]),
                    **self.call_options,
                ).images
            for i, image in zip(rows, images):
                out[i] = image
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "revision": self.revision,
            "pipeline": type(self.pipe).__name__,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt,
            "canvas_size": self.canvas_size,
            "max_prompt_tokens": self.max_prompt_tokens,
            "call_options": self.call_options,
            "dtype": str(self.dtype).removeprefix("torch."),
        }
