"""Benchmark exact top-k search: FAISS flat vs torch vs numpy (full matmul + full argsort); prints JSON.

Every (size, backend) runs in a fresh subprocess, so its peak resident memory (``VmHWM``, which sees the native
allocations of faiss, torch and BLAS) is its own. Vectors are seeded, 384-d, L2-normalised float32. ``faiss`` and
``torch`` go through :func:`pancap_retrieval.retrieval.index.search` (candidates, canonical re-rank, tie rule);
``numpy`` is the naive reference: one full Nq x Ng float32 matmul and a full stable argsort of each row (then the
same canonical re-rank of its top k + 16), skipped when its matrices (4 bytes of score + 8 of argsort index per
pair) exceed ``--numpy-budget-gb``. ``numpy_raw_rows_identical`` is the share of rows whose plain float32 argsort
top-k equals the tie-ruled result (rows differ only where two scores lie within float32 rounding of each other).

    python scripts/bench_retrieval.py --quick
    python scripts/bench_retrieval.py --sizes 20000x20000,200000x10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QUICK_SIZES = "5000x1000,20000x20000"
CPU_SIZES = "20000x20000,100000x10000,200000x10000"
GPU_EXTRA = ",1000000x10000"
BACKENDS = ("faiss", "torch", "numpy")


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def max_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM (reset at exec, unlike ru_maxrss), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def worker(
    backend: str, n_gallery: int, n_queries: int, dim: int, k: int, seed: int, out: Path
) -> dict[str, Any]:
    """One timed search in this process; top-k ids are saved to ``out`` for the parent to compare."""
    gallery = vectors(n_gallery, dim, seed)
    queries = vectors(n_queries, dim, seed + 1)
    rss_data = max_rss_mb()
    extra: dict[str, Any] = {}
    if backend == "numpy":
        from pancap_retrieval.retrieval.index import rank_candidates

        start = time.perf_counter()
        scores = queries @ gallery.T
        order = np.argsort(-scores, axis=1, kind="stable")
        n_cand = min(k + 16, n_gallery)
        cand_ids = order[:, :n_cand]
        cand_scores = np.take_along_axis(scores, cand_ids, axis=1)
        del scores, order
        _, ids = rank_candidates(queries, gallery, k, cand_scores, cand_ids)
        seconds = time.perf_counter() - start
        np.save(out.with_suffix(".raw.npy"), cand_ids[:, :k])
    else:
        from pancap_retrieval.retrieval.index import search

        if backend == "torch":
            import torch

            extra["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            import faiss

            extra["faiss_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        start = time.perf_counter()
        _, ids = search(queries, gallery, k, backend=backend)
        seconds = time.perf_counter() - start
        if backend == "torch" and extra["device"] == "cuda":
            extra["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    np.save(out, ids)
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(max_rss_mb(), 1),
        "rss_after_data_mb": round(rss_data, 1),
        **extra,
    }


def run_worker(args: argparse.Namespace, backend: str, ng: int, nq: int, out: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", backend, "--sizes", f"{ng}x{nq}"]
    command += ["--dim", str(args.dim), "--k", str(args.k), "--seed", str(args.seed), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        gallery, _, queries = item.strip().lower().partition("x")
        if not gallery.isdigit() or not queries.isdigit():
            raise SystemExit(f"bad size {item!r}: expected GALLERYxQUERIES, e.g. 20000x20000")
        sizes.append((int(gallery), int(queries)))
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated GALLERYxQUERIES (default: CPU sizes, + 1M on GPU)")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES}")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of " + ", ".join(BACKENDS))
    parser.add_argument("--dim", type=int, default=384, help="vector dimension (MiniLM's by default)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random vectors")
    parser.add_argument("--numpy-budget-gb", type=float, default=6.0, help="skip numpy where its matrices need more")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure_size(args: argparse.Namespace, backends: list[str], ng: int, nq: int, tmp: Path) -> dict[str, Any]:
    """Every backend on one gallery x queries size, each in its own process; then how their top-k lists agree."""
    entry: dict[str, Any] = {"gallery": ng, "queries": nq, "backends": {}}
    ids: dict[str, np.ndarray] = {}
    for backend in backends:
        need_gb = ng * nq * 12 / 2**30
        if backend == "numpy" and need_gb > args.numpy_budget_gb:
            entry["backends"][backend] = {
                "skipped": f"needs {need_gb:.1f} GB for the full score and argsort matrices "
                f"> budget {args.numpy_budget_gb} GB"
            }
            continue
        out = tmp / f"{backend}-{ng}-{nq}.npy"
        entry["backends"][backend] = run_worker(args, backend, ng, nq, out)
        if out.exists():
            ids[backend] = np.load(out)
        raw = out.with_suffix(".raw.npy")
        if raw.exists() and out.exists():
            entry["numpy_raw_rows_identical"] = float(np.mean(np.all(np.load(raw) == ids[backend], axis=1)))
        print(f"{ng}x{nq} {backend}: {entry['backends'][backend]}", file=sys.stderr)
    entry.update(agreement(ids, entry["backends"]))
    return entry


def agreement(ids: dict[str, np.ndarray], timed: dict[str, Any]) -> dict[str, Any]:
    """Whether the backends' top-k lists are identical (all, and per pair of rows), and their time ratios."""
    out: dict[str, Any] = {}
    names = sorted(ids)
    if len(names) > 1:
        out["top_k_identical"] = all(np.array_equal(ids[names[0]], ids[b]) for b in names[1:])
        out["rows_identical_fraction"] = {
            f"{a}~{b}": float(np.mean(np.all(ids[a] == ids[b], axis=1)))
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        }
    faiss_seconds = timed.get("faiss", {}).get("seconds")
    if faiss_seconds and "seconds" in timed.get("numpy", {}):
        out["numpy_over_faiss_speedup"] = round(timed["numpy"]["seconds"] / faiss_seconds, 2)
    if faiss_seconds and "seconds" in timed.get("torch", {}):
        out["torch_over_faiss_time_ratio"] = round(timed["torch"]["seconds"] / faiss_seconds, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        ((ng, nq),) = parse_sizes(args.sizes)
        print(json.dumps(worker(args.worker, ng, nq, args.dim, args.k, args.seed, Path(args.out))))
        return 0

    import torch

    has_gpu = torch.cuda.is_available()
    sizes_text = args.sizes or (QUICK_SIZES if args.quick else CPU_SIZES + (GPU_EXTRA if has_gpu else ""))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if has_gpu else None,
        },
        "dim": args.dim,
        "k": args.k,
        "seed": args.seed,
        "numpy_budget_gb": args.numpy_budget_gb,
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for ng, nq in parse_sizes(sizes_text):
            report["results"].append(measure_size(args, backends, ng, nq, Path(tmp)))
    target = next((r for r in report["results"] if (r["gallery"], r["queries"]) == (20000, 20000)), None)
    if target is not None and "numpy_over_faiss_speedup" in target:
        report["target_20k_x_20k"] = {
            "faiss_speedup_over_numpy": target["numpy_over_faiss_speedup"],
            "top_k_identical": target.get("top_k_identical"),
            "met": target["numpy_over_faiss_speedup"] >= 5 and bool(target.get("top_k_identical")),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
