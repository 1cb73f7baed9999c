"""What a training run costs: FLOPs per training example (torch's FLOP counter) and this machine's
matrix-product rate, from which train.py estimates the hours a run would take before starting it.
`python cost.py [BENCH_JSON]` prints every preset's size, FLOPs and hours at the rate a GPU bench measured.
"""
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


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
        model.loss(x0, 0).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def estimate_hours(model, image_size, examples, device):
    """(GFLOP per training image, hours) of a training run on this device, assuming the step runs at
    half the matmul rate (it ran at 0.9-1.4x on the test machine: results/bench-*.json)."""
    flops = train_flops_per_image(model, image_size, device)
    return flops / 1e9, flops * examples / (0.5 * matmul_gflops(device) * 1e9) / 3600


def preset_table(bench_json: str) -> str:
    """A markdown row per preset: parameters, GFLOP per training image, examples, and the hours on one
    GPU and on 8 at the training rate (FLOP/s) that `bench_json` (bench.py on that GPU) measured."""
    import json

    import flags
    from dae import DiffusionAutoencoder, count_params
    with open(bench_json) as f:
        r = json.load(f)
    rate = max(m["train_gflops_per_s"] for m in r["precisions"].values()) * 1e9
    rows = ["| preset | image | params | GFLOP / train image | examples | hours, 1 GPU | hours, 8 GPUs |",
            "|---|---|---|---|---|---|---|"]
    for name in flags.PRESETS:
        args = flags.parse_args(["--preset", name])
        model = DiffusionAutoencoder(flags.model_config(args)).to("meta")  # counts FLOPs without computing
        flops = train_flops_per_image(model, args.image_size, torch.device("meta"))
        hours = flops * args.examples / rate / 3600
        rows.append(f"| {name} | {args.image_size} px | {count_params(model) / 1e6:.1f}M | {flops / 1e9:.1f} "
                    f"| {args.examples / 1e6:g}M | {hours:.1f} | {hours / 8:.1f} |")
    return "\n".join(rows) + (f"\n\n(at the {rate / 1e12:.0f} TFLOP/s that bench.py measured for the paper step on "
                              f"{r['device_model']}: {bench_json}; 8 GPUs assume linear scaling)")


if __name__ == "__main__":
    import sys
    try:
        print(preset_table(sys.argv[1] if len(sys.argv) > 1 else "results/gpu/bench-paper-cuda.json"))
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: cannot read the bench JSON ({type(e).__name__}: {e}); pass one written by bench.py --json")
