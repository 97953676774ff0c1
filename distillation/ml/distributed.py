"""Which process this is under ``torchrun`` or ``accelerate launch``, and the few collectives the commands need.

The rank and world size come from the launcher's environment (``RANK``, ``WORLD_SIZE``), so a single
process and the web server never import torch for them. The collectives initialise the process group through
accelerate's ``PartialState`` (NCCL on GPUs, gloo on CPUs), which the training run's ``Accelerator`` reuses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def process_count() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_index() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return process_index() == 0


def accelerate_options() -> dict[str, Any]:
    """Accelerate's options for this launch: several processes without a GPU must ask for the CPU (gloo)
    explicitly, or accelerate treats each of them as a run of its own."""
    if process_count() > 1:
        import torch

        if not torch.cuda.is_available():
            return {"cpu": True}
    return {}


def _state() -> Any:
    from accelerate import PartialState

    return PartialState(**accelerate_options())


def share_from_main(value: Any) -> Any:
    """The main process's ``value`` on every process (one process: ``value`` itself)."""
    if process_count() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    _state()
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def gather_in_order(mine: Sequence[Any], total: int) -> list[Any]:
    """Items sharded as ``items[rank::world]`` put back in their original order, on every process."""
    import torch.distributed as dist

    _state()
    parts: list[Any] = [None] * process_count()
    dist.all_gather_object(parts, list(mine))
    ordered: list[Any] = [None] * total
    for rank, part in enumerate(parts):
        ordered[rank :: len(parts)] = part
    return ordered


def wait_for_everyone() -> None:
    if process_count() > 1:
        _state().wait_for_everyone()
