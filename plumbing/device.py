"""The device a script runs on: which one (cuda > mps > cpu), which precision, and how fast it is.

Nothing here is part of the method. pick_device / pick_precision turn --device and --precision into a
torch.device and 'fp32' | 'bf16'; the rest measures the machine (a matrix product's rate, the FLOPs of
one training example by torch's FLOP counter), from which train.py estimates the hours a run would
take before starting it, and bench.py reports utilisation.
"""
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def pick_device(name: str) -> torch.device:
    """--device auto picks cuda, then mps, then cpu; anything else must exist on this machine."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise ValueError(f"--device {name!r} is not a device: choose auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name} was asked for, but no CUDA GPU is available here")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for, but this PyTorch build or machine has no MPS")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: an Ampere or later GPU, or a CPU with
    AVX-512 BF16 or AMX tiles. Without them a CPU converts bf16 in software: not measured here, so
    --precision auto keeps fp32 there."""
    if device.type == "cuda":  # compute capability 8 (Ampere) and later; ROCm GPUs all have it
        return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def pick_precision(name: str, device: torch.device) -> str:
    """--precision auto is bf16 where the device has it natively (measured faster: README, Speed), else
    fp32. bf16 is autocast: the weights, the loss, the EMA and Adam's state stay fp32."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"--precision bf16 runs on cpu and cuda, not on {device.type}: use --precision fp32")
    return name


def use_channels_last(device) -> bool:
    """channels_last (NHWC) suits cuDNN; on CPU it measured slower here (results/bench-*.json)."""
    return device.type == "cuda"


def optimizer_kwargs(device) -> dict:
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_model(device) -> str:
    """The GPU's name, or the CPU's model name (Linux: /proc/cpuinfo), for every speed record."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def matmul_gflops(device, dtype=torch.float32, n=2048, seconds=1.0) -> float:
    """Sustained rate of an n x n matrix product, in GFLOP/s (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def train_flops_per_image(model, image_size, device, batch=2) -> float:
    """FLOPs of one training example (forward + backward of the loss), by torch's FLOP counter."""
    x0 = torch.randn(batch, model.cfg.net.in_channels, image_size, image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model.loss(x0, 0)[0].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def estimate_hours(model, image_size, examples, device):
    """(GFLOP per training image, hours) of a training run on this device, assuming the step runs at
    half the matmul rate (it ran at 0.9-1.4x on the test machine: results/bench-*.json)."""
    flops = train_flops_per_image(model, image_size, device)
    return flops / 1e9, flops * examples / (0.5 * matmul_gflops(device) * 1e9) / 3600


def check_run_fits(model, args, device) -> None:
    """Refuse, before any work, a run that would take days on this CPU (--allow-slow starts it anyway)."""
    if device.type == "cuda" or args.allow_slow:
        return
    gflop, hours = estimate_hours(model, args.image_size, args.examples, device)
    if hours > 3:
        raise ValueError(f"this run is {args.examples:,} examples at {gflop:.1f} GFLOP each: about {hours:,.0f} "
                         f"hours ({hours / 24:.1f} days) on this {device.type}. Use --preset cpu for a ~15-minute "
                         f"run, a GPU for the paper's run, or --allow-slow to start anyway")
