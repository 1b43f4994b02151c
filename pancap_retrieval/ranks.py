"""The processes of a distributed run (``accelerate launch`` / ``torchrun``): who am I, my share, wait, gather.

One process is a world of one: every method then does the plain thing without touching torch.distributed, so the
same code runs with and without a launcher.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def launched() -> bool:
    """True under a launcher that started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state() -> Any:
    """accelerate's ``PartialState`` (initialises torch.distributed under a launcher: NCCL on GPUs, gloo on CPU)."""
    from accelerate import PartialState

    from pancap_retrieval.loading import choose_device

    return PartialState(cpu=choose_device().type != "cuda")


@dataclass
class Ranks:
    """This process's place among the processes of a run."""

    world: int = 1
    rank: int = 0
    state: Any = None

    @classmethod
    def current(cls) -> Ranks:
        if not launched():
            return cls()
        state = process_state()
        return cls(state.num_processes, state.process_index, state)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every ``world``-th one, starting at ``rank`` (balanced when costs drift along)."""
        return list(items[self.rank :: self.world])

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out
