"""Data-parallel training across processes with PyTorch's own engine (torch.distributed, DDP, torchrun).

    torchrun --standalone --nproc_per_node 4 train.py --data PATH ...     # 4 GPUs of one machine
    python train.py --data PATH ...                                       # one process, as always

torchrun starts one process ("rank") per GPU and sets RANK, WORLD_SIZE and LOCAL_RANK; every rank
runs train.py. The design, in four rules:
  - --batch-size is the global batch: each rank trains on its b = B / world share of it.
  - Every rank draws the random numbers of the *whole* global batch (same seed, so the same numbers)
    and keeps its own slice (global_draw). The ranks' noise and t differ, as they must, and a run's
    numbers do not depend on how many ranks share it: torchrun with 2 ranks computes what one
    process computes, up to the order of floating-point sums.
  - DDP averages the gradients, so every rank takes the same optimizer step and keeps identical
    weights and EMA weights.
  - Rank 0 alone writes the run folder (checkpoints, log, grids) and shows progress.
"""
import os

import torch
import torch.distributed as dist
import torch.nn as nn


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def setup(device: torch.device):
    """(rank, world size, device) from torchrun's environment; (0, 1, device) without it. On CUDA each
    rank takes the GPU of its LOCAL_RANK; the process group is NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def global_draw(sample, shape, shard=(0, 1), *args, **kwargs):
    """This rank's slice of one draw for the whole global batch (module docstring): sample(m, ...) or
    sample((m, *shape[1:]), ...) with m = world x n, then rows rank n .. (rank + 1) n - 1, where n is shape
    (an int) or shape[0]. shard = (rank, world); (0, 1) is exactly sample(shape, ...)."""
    rank, world = shard
    n = shape if isinstance(shape, int) else shape[0]
    whole = n * world if isinstance(shape, int) else (n * world, *shape[1:])
    return sample(whole, *args, **kwargs)[rank * n:(rank + 1) * n]


def global_randn(like: torch.Tensor, shard=(0, 1)) -> torch.Tensor:
    """N(0, I) shaped like `like` (this rank's examples): its slice of the global batch's draw."""
    return global_draw(torch.randn, like.shape, shard, device=like.device, dtype=like.dtype)


def agree_to_stop(signalled: bool, step: int, every: int, world: int, device) -> bool:
    """Whether to stop after this step: at once in one process; with several, every rank stops at the same
    logging step if any of them got a signal."""
    if world == 1:
        return signalled
    return step % every == 0 and any_rank(signalled, world, device)


def mean_over_ranks(x: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of a tensor over the ranks (itself when there is one)."""
    if world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= world
    return x


def any_rank(flag: bool, world: int, device) -> bool:
    """True if any rank says so (a Ctrl-C that reached one rank stops them all at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item())


class LossModule(nn.Module):
    """DDP synchronises gradients of what runs through a module's forward: this forward is the
    model's training loss, so that DDP can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model.loss(*args, **kwargs)
