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


def matmul_gflops(device, dtype=torch.float32, n=2048, seconds=1.0, best=False) -> float:
    """Sustained rate of an n x n matrix product, in GFLOP/s (2 n^3 FLOPs each); best: the fastest single
    product instead, which other work on the machine can only slow, never speed up (a robust rate)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, fastest, t0 = 0, float("inf"), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        a @ b
        sync(device)
        reps, fastest = reps + 1, min(fastest, time.perf_counter() - t)
    return 2 * n ** 3 / 1e9 * (1 / fastest if best else reps / (time.perf_counter() - t0))


def train_flops_per_image(model, image_size, device, batch=2) -> float:
    """FLOPs of one training example (forward + backward of the loss), by torch's FLOP counter."""
    x0 = torch.randn(batch, model.cfg.net.in_channels, image_size, image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model.loss(x0, 0)[0].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


# A run is refused only far past what a CPU session is for: a day at the estimate below. README's CPU run is
# about 1.5e14 FLOP, under an hour at the estimate on any CPU that multiplies matrices at 4 GFLOP/s or more.
LIMIT_HOURS = 24


def estimate_hours(model, image_size, examples, device):
    """(GFLOP per training image, hours, the rate assumed in GFLOP/s) of a training run on this device: the
    step at half the fastest matrix product measured now (it ran at 0.45-1.05 of the sustained rate:
    results/bench-*.json)."""
    flops = train_flops_per_image(model, image_size, device)
    rate = 0.5 * matmul_gflops(device, best=True)
    return flops / 1e9, flops * examples / (rate * 1e9) / 3600, rate


def slow_run_problem(gflop: float, examples: int, hours: float, rate: float, device_type: str):
    """The sentence that refuses a run estimated at `hours`, or None if it fits."""
    if hours <= LIMIT_HOURS:
        return None
    return (f"this run is {examples:,} examples at {gflop:.1f} GFLOP each: about {hours:,.0f} hours "
            f"({hours / 24:.1f} days) on this {device_type}, at {rate:.0f} GFLOP/s (half the fastest matrix "
            f"product measured just now). Use --preset cpu for a run of minutes, a GPU for the paper's run, or "
            f"--allow-slow to start anyway")


def check_run_fits(model, args, device) -> None:
    """Refuse, before any work, a run that would take days on this CPU (--allow-slow starts it anyway)."""
    if device.type == "cuda" or args.allow_slow:
        return
    gflop, hours, rate = estimate_hours(model, args.image_size, args.examples, device)
    problem = slow_run_problem(gflop, args.examples, hours, rate, device.type)
    if problem:
        raise ValueError(problem)
