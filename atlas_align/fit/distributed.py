"""Data-parallel alignment under ``torchrun``: every rank pools its share of the corpus, one all_reduce sums.

Sample i goes to rank ``i % world_size`` (``collect_statistics``); because the statistics are
plain sums, one ``all_reduce(SUM)`` over all of them (and n) gives every rank exactly what a single
process would have accumulated, up to float64 summation order. gloo on CPU, NCCL (one GPU per
rank, ``cuda:LOCAL_RANK``) when CUDA is available. The workflow that uses this
(``align_distributed``: fit on rank 0, write the artifact) is in ``atlas_align.alignment.pipeline``.

    torchrun --nproc_per_node 2 -m atlas_align.cli.main align --distributed --subject smollm2 --out runs/x
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from atlas_align.errors import ConfigError
from atlas_align.fit.statistics import AlignmentStatistics

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def reduce(self, shards: Sequence[AlignmentStatistics]) -> list[AlignmentStatistics]:
        return all_reduce_statistics(shards, self.device)

    def shard_checkpoint(self, checkpoint: str | Path | None) -> Path | None:
        """Each rank checkpoints its own shard; the name carries the world size, as the shard depends on it."""
        if checkpoint is None:
            return None
        path = Path(checkpoint)
        return path.with_name(f"{path.stem}.rank{self.rank}-of-{self.world_size}{path.suffix}")


def init_from_env() -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment (idempotent)."""
    missing = [key for key in TORCHRUN_ENV if key not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed must run under torchrun (missing {', '.join(missing)} in the environment), e.g. "
            f"torchrun --nproc_per_node 2 -m atlas_align.cli.main align --distributed ..."
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def all_reduce_statistics(shards: Sequence[AlignmentStatistics], device: torch.device | str = "cpu") -> list[AlignmentStatistics]:
    """Sum each statistics object over all ranks with a single all_reduce of one packed float64 buffer.

    ``n`` travels in the same buffer (float64 holds integers exactly up to 2**53).
    """
    parts: list[torch.Tensor] = []
    for shard in shards:
        parts.append(torch.tensor([float(shard.n)], dtype=torch.float64))
        parts.extend(t.reshape(-1).to(torch.float64) for t in shard.tensors().values())
    buffer = torch.cat(parts).to(device)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    buffer = buffer.cpu()
    merged, offset = [], 0
    for shard in shards:
        total = AlignmentStatistics(shard.d_s, shard.d_c, shard.with_gram, n=int(buffer[offset].item()))
        offset += 1
        for name, tensor in shard.tensors().items():
            size = tensor.numel()
            setattr(total, name, buffer[offset : offset + size].view(tensor.shape).clone())
            offset += size
        merged.append(total)
    return merged
