"""Training on several processes (GPUs) with torch.distributed, as torchrun starts them.

``torchrun --nproc_per_node N -m napari_unetseg train ...`` starts N copies of the same
command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their
environment; :func:`init_from_environment` joins them into one process group (NCCL on
GPUs, gloo on CPUs). The trainer then changes in three places only, all here:

* each rank samples its own patches: its random generator is seeded with
  :func:`rank_seed` (rank 0 keeps the run's seed, so one process is the plain run);
* the network's gradients are averaged over the ranks at every step
  (``DistributedDataParallel`` around :class:`Heads`), so every rank holds the same
  weights, and the reported loss is the mean over the ranks;
* only rank 0 writes the run folder (:func:`is_main`); every rank reads it to resume.

With a batch size B and N ranks each step learns from N x B patches.
"""

from __future__ import annotations

import os

import torch
from torch import nn

_RANK_STRIDE = 1_000_003  # rank r's patches come from seed + r * stride: far from the tries' seeds


def init_from_environment() -> bool:
    """Join the process group torchrun (or srun + torchrun) describes in the environment;
    ``False`` (nothing done) for a plain single process. On GPUs each rank takes the GPU
    of its ``LOCAL_RANK``."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def finish() -> None:
    """Leave the process group (after the run)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of ranks (``(0, 1)`` without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes the run's files and prints its progress (rank 0)."""
    return rank_and_size()[0] == 0


def rank_seed(seed: int) -> int:
    """The seed of this rank's patches and flips: ``seed`` itself on rank 0."""
    return seed + rank_and_size()[0] * _RANK_STRIDE


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over the ranks (``value`` itself in a single process)."""
    import torch.distributed as dist

    rank, size = rank_and_size()
    if size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return float(total.item()) / size


class Heads(nn.Module):
    """``forward`` = the network's ``forward_heads`` (every deep-supervision head), so that
    ``DistributedDataParallel`` sees the call the training step makes."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor):
        return self.network.forward_heads(x)


def distributed_heads(network: nn.Module, device: torch.device) -> nn.Module | None:
    """``DistributedDataParallel`` around the network's heads when there are several ranks
    (the training step calls it instead of ``network.forward_heads``); ``None`` for one."""
    if rank_and_size()[1] == 1:
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(Heads(network), device_ids=ids)
