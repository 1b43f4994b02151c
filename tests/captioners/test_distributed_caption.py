"""Sharded captioning: two CPU processes (torchrun, gloo) each caption a shard; rank 0 merges in dataset order."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from pancap_retrieval.captioners.distributed import merge_rank_stores, rank_store_path
from pancap_retrieval.captions.store import CaptionRecord, CaptionStore

WORKER = """
import json
import os
import sys
from pathlib import Path

from PIL import Image
from skimage import data
from pancap_retrieval.captioners.distributed import run_captioning
from pancap_retrieval.data.records import dataset_from_images

names = ["astronaut", "camera", "chelsea", "coffee", "rocket"]
images = [Image.fromarray(getattr(data, n)()).convert("RGB").resize((40, 30)) for n in names]
dataset = dataset_from_images(dict(zip(names, images)))
stats, manifest = run_captioning("pancapchain", dataset, sys.argv[2], batch_size=2, progress=False,
                                 model=sys.argv[1], max_new_tokens=6)
report = Path(sys.argv[2]).parent / f"stats.rank{os.environ['RANK']}.json"
report.write_text(json.dumps([manifest["world_size"], stats.ok, stats.failed]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_caption_their_shards_and_merge(tiny_llava, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(WORKER))
    store = tmp_path / "captions" / "pancapchain__sample__test.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(worker),
        str(tiny_llava),
        str(store),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((store.parent / f"stats.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert reports == [[2, 3, 0], [2, 2, 0]]  # world 2; contiguous shards of 5 images: 3 and 2, none failed
    records = CaptionStore(store).records()
    assert [r.example_id for r in records] == ["astronaut", "camera", "chelsea", "coffee", "rocket"]
    assert all(r.status == "ok" and set(r.stages) >= {"stage1", "stage4"} for r in records)
    assert not list(store.parent.glob("*.jsonl.rank*"))
    # one process, same model: the same captions (greedy, fp32)
    from PIL import Image
    from skimage import data

    from pancap_retrieval.captioners.base import Example
    from pancap_retrieval.captioners.pancapchain import PancapChainCaptioner

    image = Image.fromarray(data.camera()).convert("RGB").resize((40, 30))
    alone = PancapChainCaptioner(model=str(tiny_llava), max_new_tokens=6).caption_batch(
        [Example("camera", image, 40, 30)]
    )
    assert alone[0].stages == records[1].stages


def test_merge_keeps_one_record_per_id_in_dataset_order(tmp_path):
    store = tmp_path / "c.jsonl"
    CaptionStore(store).append(CaptionRecord("b", "old b"))
    CaptionStore(rank_store_path(store, 0)).append(CaptionRecord("c", "c from rank 0"))
    CaptionStore(rank_store_path(store, 1)).append(CaptionRecord.failed("b", "out of memory"))
    CaptionStore(rank_store_path(store, 1)).append(CaptionRecord("a", "a from rank 1"))
    assert merge_rank_stores(store, ["a", "b", "c"]) == 3
    lines = [json.loads(line) for line in store.read_text().splitlines()]
    assert [(d["example_id"], d["caption"], d["status"]) for d in lines] == [
        ("a", "a from rank 1", "ok"),
        ("b", "old b", "ok"),  # a failed retry never replaces a finished caption
        ("c", "c from rank 0", "ok"),
    ]
    assert not rank_store_path(store, 0).exists() and not rank_store_path(store, 1).exists()
