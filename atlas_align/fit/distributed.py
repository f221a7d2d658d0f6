"""Data-parallel alignment under ``torchrun``: every rank pools its share of the corpus, one all_reduce merges.

Sample i goes to rank ``i % world_size`` (``collect_statistics``); one ``all_reduce(SUM)`` of the
ranks' co-moments and (gathered) counts and means gives every rank what a single process would
have accumulated, up to float64 round-off (``all_reduce_statistics`` has the maths). gloo on CPU, NCCL (one GPU per
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


# Per-rank state that is gathered (one slot per rank), not summed: the count and the means.
_GATHERED = ("ref_s", "ref_c", "mean_offset_s", "mean_offset_c", "ref_norm_s", "ref_norm_c", "mean_offset_norm_s", "mean_offset_norm_c")
# Co-moments about each rank's own means: these are summed.
_SUMMED = ("m2_s", "m2_c", "comoment", "comoment_norm", "gram_comoment_norm", "gram_comoment_norm_s")


def all_reduce_statistics(shards: Sequence[AlignmentStatistics], device: torch.device | str = "cpu") -> list[AlignmentStatistics]:
    """Merge each statistics object over all ranks with a single all_reduce of one packed float64 buffer.

    Chan et al.'s merge of k parts is ``C = Σ_r C_r + Σ_r n_r (x̄_r − x̄)(ȳ_r − ȳ)ᵀ``: the ranks'
    co-moments about their own means sum as they are (no cancellation), and the between-rank
    term needs only the k counts and means. So the buffer holds the co-moments (summed, d_s·d_c
    each) and, in one slot per rank, that rank's n and means (zeros in the other ranks' slots, so
    the SUM is an exact all-gather of O(world_size·(d_s + d_c)) numbers). Every rank then computes
    the global means and the between-rank term locally, in the frame of one reference point, where
    every difference is of the size of the spread, not of the mean. ``n`` travels as float64
    (exact up to 2**53).
    """
    world_size, rank = dist.get_world_size(), dist.get_rank()
    parts: list[torch.Tensor] = []
    for shard in shards:
        state = shard.tensors()
        parts.extend(state[name].reshape(-1) for name in _SUMMED if name in state)
        slot = torch.cat([torch.tensor([float(shard.n)], dtype=torch.float64)] + [state[name] for name in _GATHERED])
        slots = torch.zeros(world_size, slot.numel(), dtype=torch.float64)
        slots[rank] = slot
        parts.append(slots.reshape(-1))
    buffer = torch.cat([p.to(torch.float64) for p in parts]).to(device)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    buffer = buffer.cpu()
    merged, offset = [], 0
    for shard in shards:
        summed: dict[str, torch.Tensor] = {}
        for name, tensor in shard.tensors().items():
            if name in _SUMMED:
                summed[name] = buffer[offset : offset + tensor.numel()].view(tensor.shape).clone()
                offset += tensor.numel()
        widths = [shard.tensors()[name].numel() for name in _GATHERED]
        slots = buffer[offset : offset + world_size * (1 + sum(widths))].view(world_size, -1)
        offset += slots.numel()
        per_rank = [dict(zip(_GATHERED, row[1:].split(widths))) | {"n": int(row[0].item())} for row in slots]
        merged.append(_combine(shard, summed, [r for r in per_rank if r["n"] > 0]))
    return merged


def _combine(shard: AlignmentStatistics, summed: dict[str, torch.Tensor], ranks: list[dict]) -> AlignmentStatistics:
    """Global statistics from the summed within-rank co-moments and every rank's count and means."""
    total = AlignmentStatistics(shard.d_s, shard.d_c, shard.with_gram)
    if not ranks:
        return total
    n = sum(r["n"] for r in ranks)
    counts = torch.tensor([float(r["n"]) for r in ranks], dtype=torch.float64)

    def in_first_frame(side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first rank's reference; every rank's mean offset from it (small numbers, exact differences);
        their count-weighted mean; and each rank's mean minus the global mean."""
        ref = ranks[0][f"ref_{side}"].clone()
        offsets = torch.stack([(r[f"ref_{side}"] - ref) + r[f"mean_offset_{side}"] for r in ranks])
        mean = counts @ offsets / n
        return ref, offsets, mean, offsets - mean

    total.n = n
    total.ref_s, _, total.mean_offset_s, ds = in_first_frame("s")
    total.ref_c, _, total.mean_offset_c, dc = in_first_frame("c")
    total.ref_norm_s, _, total.mean_offset_norm_s, dns = in_first_frame("norm_s")
    total.ref_norm_c, _, total.mean_offset_norm_c, dnc = in_first_frame("norm_c")
    total.m2_s = summed["m2_s"] + counts @ (ds * ds)
    total.m2_c = summed["m2_c"] + counts @ (dc * dc)
    total.comoment = summed["comoment"] + (ds * counts[:, None]).T @ dc
    total.comoment_norm = summed["comoment_norm"] + (dns * counts[:, None]).T @ dnc
    if shard.with_gram:
        total.gram_comoment_norm = summed["gram_comoment_norm"] + (dnc * counts[:, None]).T @ dnc
        total.gram_comoment_norm_s = summed["gram_comoment_norm_s"] + (dns * counts[:, None]).T @ dns
    return total
