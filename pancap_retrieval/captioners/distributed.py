"""Multi-GPU and multi-node captioning: each rank captions its shard into its own store file, merged at the end.

Run under ``accelerate launch`` or ``torchrun``; a single process works the same way without a launcher. Rank R
captions ``dataset.shard(num_shards=world, index=R, contiguous=True)`` into ``<store>.rank{R}``; after a barrier
rank 0 merges every rank file and the records already in the store, one record per id (an ok record is never
replaced by a failed one of the same input), in dataset order, writes the store atomically and removes the rank
files. A rerun skips ids already in the store or in a rank file made from the same input, whatever the number of
processes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import atomic_write
from pancap_retrieval.captioners.base import Captioner, CaptionRunStats, caption_dataset, input_keys
from pancap_retrieval.captions.store import CaptionRecord, CaptionStore
from pancap_retrieval.ranks import process_state


def rank_store_path(path: str | Path, rank: int) -> Path:
    """The store file of one rank.

    >>> rank_store_path("runs/x/captions/a.jsonl", 1).name
    'a.jsonl.rank1'
    """
    path = Path(path)
    return path.with_name(f"{path.name}.rank{rank}")


def merge_rank_stores(store_path: str | Path, order: list[str]) -> int:
    """Merge ``<store>.rank*`` files into ``store_path``, one record per id in ``order`` (unknown ids after it).

    Returns the number of records written. The store is replaced atomically; the rank files are then removed.
    """
    store_path = Path(store_path)
    pattern = f"{store_path.name}.rank*"
    rank_files = sorted(
        (p for p in store_path.parent.glob(pattern) if p.name.rsplit("rank", 1)[-1].isdigit()),
        key=lambda p: int(p.name.rsplit("rank", 1)[-1]),
    )
    latest: dict[str, CaptionRecord] = {}
    for source in [store_path, *rank_files]:
        for record in CaptionStore(source).records():
            previous = latest.get(record.example_id)
            same_input = previous is not None and previous.input == record.input
            if same_input and previous.status == "ok" and record.status != "ok":
                continue
            latest[record.example_id] = record
    position = {example_id: index for index, example_id in enumerate(order)}
    ordered = sorted(latest.values(), key=lambda r: (position.get(r.example_id, len(order)), r.example_id))
    atomic_write(store_path, "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in ordered))
    for path in rank_files:
        path.unlink()
    return len(ordered)


def _done_ids(store_path: Path, retry_failed: bool, inputs: dict[str, str]) -> set[str]:
    """Ids finished in the store or in any rank file from the input their row has now (read without repairing:
    other ranks own those files)."""
    done: set[str] = set()
    for path in [store_path, *store_path.parent.glob(f"{store_path.name}.rank*")]:
        for record in CaptionStore(path).records() if path.is_file() else []:
            if (record.status == "ok" or not retry_failed) and inputs.get(record.example_id) == record.input:
                done.add(record.example_id)
    return done


def caption_sharded(
    captioner: Captioner,
    dataset: Any,
    store_path: str | Path,
    batch_size: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    state: Any = None,
) -> CaptionRunStats:
    """Caption this rank's shard of ``dataset`` into its rank store and, on rank 0, merge all ranks into the store.

    Every rank returns the stats of its own shard. With one process this is :func:`caption_dataset` on the store.
    """
    state = state or process_state()
    world, rank = state.num_processes, state.process_index
    store_path = Path(store_path)
    order = [str(i) for i in dataset["example_id"]]
    done = _done_ids(store_path, retry_failed, input_keys(dataset, captioner))
    if world > 1:  # every rank has read the rank files before any of them is appended to
        state.wait_for_everyone()
    shard = dataset.shard(num_shards=world, index=rank, contiguous=True) if world > 1 else dataset
    skipped = 0
    if done:
        keep = [index for index, example_id in enumerate(shard["example_id"]) if str(example_id) not in done]
        skipped = len(shard) - len(keep)
        shard = shard.select(keep)
    target = CaptionStore(rank_store_path(store_path, rank) if world > 1 else store_path)
    stats = caption_dataset(
        captioner,
        shard,
        target,
        batch_size=batch_size,
        retry_failed=retry_failed,
        progress=progress and state.is_local_main_process,
    )
    stats.skipped_done += skipped
    stats.total += skipped
    if world > 1:
        state.wait_for_everyone()
        if state.is_main_process:
            merge_rank_stores(store_path, order)
        state.wait_for_everyone()
    return stats


def run_captioning(
    name: str,
    dataset: Any,
    store_path: str | Path,
    batch_size: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    **options: Any,
) -> tuple[CaptionRunStats, dict[str, Any]]:
    """Build captioner ``name`` on this rank's device and caption ``dataset`` into ``store_path`` (sharded when
    launched on several processes). Returns this rank's stats and the captioner's manifest."""
    import inspect

    from pancap_retrieval.captioners import CAPTIONERS

    state = process_state()
    cls = CAPTIONERS.get(name)
    accepted = inspect.signature(cls).parameters
    if "device" in accepted and options.get("device") is None and state.device.type == "cuda":
        options["device"] = str(state.device)
    captioner = CAPTIONERS.build(name, **options)
    stats = caption_sharded(captioner, dataset, store_path, batch_size, retry_failed, progress, state)
    manifest = {**captioner.manifest(), "world_size": state.num_processes}
    return stats, manifest
