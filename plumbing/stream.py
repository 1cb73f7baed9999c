"""The training images, held in memory or streamed from their folder: one stream of batches either way.

data.py decodes an image folder once into one uint8 tensor on the training device, and a batch is an
index into it. That suits CIFAR-10 (154 MB) and fails for a folder larger than memory (ImageNet at
128 px is 1.28M x 3 x 128 x 128 bytes = 63 GB decoded). With --data-in-memory off, the worker
processes of a torch.utils.data.DataLoader decode the files of each batch instead, ahead of the
training step.

Both ways give the same batches: training step s uses data.batch_indices(s, B, N, seed), one fixed
permutation of the training split per epoch, and a rank keeps its slice of it (distributed.py). So a
streamed run sees the same images in the same order as an in-memory one, and a run resumed at step s
reads on from step s, exactly as an uninterrupted run would (tests/test_stream.py checks both).

--data-in-memory auto holds the images in memory when the decoded set takes at most half of the
memory available to this machine's ranks together (decoding stacks it once, so it briefly needs
twice its size) and, on CUDA, at most a quarter of the GPU's free memory (the rest is the network's);
otherwise it streams. It says which it chose and why.
"""
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data import batch_indices, list_images, load_image, load_images, split_files


class ImageFiles(Dataset):
    """Image i of a file list as a (3, size, size) uint8 tensor, decoded as data.py decodes it."""

    def __init__(self, files: list, size: int):
        self.files, self.size = files, size

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(load_image(self.files[i], self.size)))  # a writable copy


class StepBatches(Sampler):
    """The index lists of training steps start .. total - 1: this rank's slice of each global batch."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int, shard=(0, 1)):
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.rank, world = shard
        self.b = batch_size // world

    def __len__(self):
        return max(self.total - self.start, 0)

    def __iter__(self):
        for step in range(self.start, self.total):
            yield batch_indices(step, self.batch_size, self.n, self.seed)[self.rank * self.b:(self.rank + 1) * self.b].tolist()


class InMemory:
    """The decoded training split as one uint8 tensor on the device; a batch is an index into it."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self):
        return self.data.shape[0]

    def head(self, k):
        return self.data[:k]

    def batches(self, batch_size, seed, start, total, shard=(0, 1)):
        """uint8 batches (b, 3, H, W) on the device, for steps start .. total - 1."""
        for idx in StepBatches(len(self), batch_size, seed, start, total, shard):
            yield self.data[torch.tensor(idx, device=self.data.device)]


class Streamed:
    """The training split's files, decoded batch by batch by DataLoader workers."""

    def __init__(self, files: list, size: int, device: torch.device, workers: int):
        self.images, self.device, self.workers = ImageFiles(files, size), device, workers

    def __len__(self):
        return len(self.images)

    def head(self, k):
        return torch.stack([self.images[i] for i in range(min(k, len(self)))])

    def batches(self, batch_size, seed, start, total, shard=(0, 1)):
        """uint8 batches (b, 3, H, W) on the device, for steps start .. total - 1."""
        loader = DataLoader(self.images, batch_sampler=StepBatches(len(self), batch_size, seed, start, total, shard),
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            prefetch_factor=4 if self.workers else None,
                            # a generator of its own: starting the loader draws a seed from it, and the
                            # global generator must stay as it is (it draws the training's noise)
                            generator=torch.Generator())
        for x in loader:
            yield x.to(self.device, non_blocking=True)


def available_memory() -> int:
    """Bytes of host memory available to new allocations (Linux's MemAvailable), or -1 if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def choose(mode: str, n: int, size: int, device: torch.device, local_ranks: int = 1):
    """(hold in memory?, a sentence saying why) for --data-in-memory `mode` and n images of size^2 px."""
    need = n * 3 * size * size
    gb = f"{n:,} images of {size} px are {need / 1e9:.2f} GB decoded"
    if mode != "auto":
        return mode == "on", f"--data-in-memory {mode}: {gb}; " + ("held in memory" if mode == "on" else "streamed")
    host = available_memory()
    if host < 0:
        return True, f"--data-in-memory auto: {gb}; available memory unknown, so held in memory"
    if need * local_ranks > host / 2:
        return False, (f"--data-in-memory auto: {gb}, more than half of the {host / 1e9:.1f} GB available"
                       + (f" to {local_ranks} processes" if local_ranks > 1 else "") + ": streamed from the folder")
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        if need > free / 4:
            return False, (f"--data-in-memory auto: {gb}, more than a quarter of the GPU's {free / 1e9:.1f} GB free: "
                           "streamed from the folder")
    return True, f"--data-in-memory auto: {gb}; held in memory"


def training_images(args, device: torch.device, local_ranks: int = 1):
    """The training split of --data as InMemory or Streamed, and the sentence saying which and why."""
    if args.data.endswith(".npz"):
        raise ValueError(f"--data {args.data} is an image set of held-out images (for eval.py, sample.py): train on "
                         f"a folder of images, or cifar10")
    if args.data == "cifar10":
        if args.data_in_memory == "off":
            raise ValueError("--data-in-memory off streams an image folder; torchvision's CIFAR-10 comes as one "
                             "array and is always held in memory (154 MB)")
        return InMemory(load_images("cifar10", "train").to(device)), "CIFAR-10: held in memory"
    files = split_files(list_images(args.data), "train", args.holdout)
    in_memory, why = choose(args.data_in_memory, len(files), args.image_size, device, local_ranks)
    if in_memory:
        return InMemory(load_images(args.data, "train", args.holdout, args.image_size).to(device)), why
    return Streamed(files, args.image_size, device, args.data_workers), why


def local_world_size() -> int:
    """The processes of this run on this machine (torchrun sets LOCAL_WORLD_SIZE); 1 without torchrun."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
