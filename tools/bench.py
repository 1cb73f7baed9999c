"""Speed of a preset: parameters, FLOPs per training image, training and decoding throughput in fp32
and in bf16 autocast side by side, and this machine's matrix-product rate in each measured in the
same run, so that utilisation = FLOPs per image x images/s / matmul rate is a ratio that means
something. The JSON records the CPU model and whether it computes bf16 natively.

    python -m tools.bench --preset cpu --recipe small          # README's CPU run's network
    python -m tools.bench --preset cpu-v1 --json results/bench-cpu.json   # the committed one (cpu-v1 was cpu then)
    python -m tools.bench --table results/bench-*.json      # the README's table
"""
import argparse
import copy
import json
import resource
import sys
import time

import torch

from dae import DiffusionAutoencoder, count_params
from plumbing import flags
from plumbing.cli import HelpFormatter, check_output, write_all
from plumbing.device import (device_model, matmul_gflops, native_bf16, optimizer_kwargs, pick_device, pick_precision,
                             sync, train_flops_per_image, use_channels_last)
from sample import ddim_step


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS (Linux: KiB)


def table(paths) -> str:
    """A markdown table of bench JSON files (the README's Speed table), a row per precision measured."""
    rows = ["| file | preset | device | precision | batch | params | GFLOP / train image | train images/s "
            "| train GFLOP/s | matmul GFLOP/s | ratio | decode images/s per step | peak memory |", "|" + "---|" * 13]
    for path in paths:
        try:
            with open(path) as f:
                r = json.load(f)
            for name, m in r["precisions"].items():
                rows.append(f"| `{path}` | {r['preset']} | {r['device']} | {name} | {r['batch_size']} "
                            f"| {r['params'] / 1e6:.2f}M | {r['flops_per_train_image'] / 1e9:.2f} "
                            f"| {m['train_images_per_s']:.2f} | {m['train_gflops_per_s']:.0f} "
                            f"| {m['matmul_gflops']:.0f} | {m['utilisation']:.2f} | {m['decode_images_per_s']:.1f} "
                            f"| {r['peak_memory_mb'] / 1024:.1f} GB |")
        except OSError as e:
            raise OSError(f"--table: cannot read {path}: {e.strerror or e}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"--table: {path} is not a JSON file written by this bench.py --json "
                             f"({type(e).__name__}: {e})") from None
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description="Throughput of a preset's training step and DDIM decoding.",
                                formatter_class=HelpFormatter)
    p.add_argument("--preset", default="cpu", choices=list(flags.PRESETS), help="network and training preset")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the measured training step")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="memory format of the step (auto: what train.py uses on this device)")
    p.add_argument("--recipe", choices=list(flags.RECIPES), help="the recipe whose latent the network gets "
                   "(README's CPU run: --preset cpu --recipe small); default: train.py's")
    p.add_argument("--compile", nargs="?", const="default", default=None, choices=flags.COMPILE_MODES,
                   help="torch.compile the loss in this mode, as train.py --compile (compilation is not timed)")
    p.add_argument("--precision", default="both", choices=["both", "fp32", "bf16"],
                   help="what to measure (both: fp32, then bf16 autocast where the device has it)")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--table", nargs="+", metavar="JSON", help="print a markdown table of these bench JSON files "
                   "(the README's Speed table) and exit, measuring nothing")
    args = p.parse_args(argv)
    try:
        if args.table:
            print(table(args.table))
            return
        device = pick_device(args.device)
        if args.batch_size < 1 or args.steps < 1:
            raise ValueError("--batch-size and --steps must be positive")
        check_output(args.json, "--json")
        result = measure(args, device)
        print(json.dumps(result, indent=2))
        if args.json:
            write_all({args.json: lambda f: f.write(json.dumps(result, indent=2).encode())})
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


def time_precision(model, ema, opt, x0, dtype, args, device) -> dict:
    """Training and DDIM-decoding throughput with the network autocast to `dtype` (fp32: no autocast)."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    loss_fn = torch.compile(model.loss, mode=args.compile) if args.compile else model.loss
    n_phase1 = args.batch_size // 4  # a mix of both phases, as at the switch
    for i in range(2 + args.steps):
        if i == 2:
            sync(device)
            t0 = time.perf_counter()
        if args.compile:
            torch.compiler.cudagraph_mark_step_begin()  # as train.py: a new step for CUDA graphs
        with autocast:  # train.py's step: forward, backward, clip, Adam, EMA
            loss, _ = loss_fn(x0, n_phase1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        torch._foreach_lerp_(ema_params, params, 0.001)
    sync(device)
    train_ips = args.batch_size * args.steps / (time.perf_counter() - t0)
    z = ema.encode(x0)
    with torch.inference_mode(), autocast:
        for i in range(2 + args.steps):
            if i == 2:
                sync(device)
                t0 = time.perf_counter()
            ddim_step(ema, x0, z, 0.5, 0.4, clip=1.0)
        sync(device)
    decode_ips = args.batch_size * args.steps / (time.perf_counter() - t0)
    return {"train_images_per_s": train_ips, "decode_images_per_s": decode_ips,
            "matmul_gflops": matmul_gflops(device, dtype)}


def measure(args, device) -> dict:
    targs = flags.parse_args(["--preset", args.preset] + (["--recipe", args.recipe] if args.recipe else []))
    torch.manual_seed(0)
    model = DiffusionAutoencoder(flags.model_config(targs)).to(device)
    channels_last = use_channels_last(device) if args.channels_last == "auto" else args.channels_last == "on"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    size = targs.image_size
    flops = train_flops_per_image(model, size, device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, **optimizer_kwargs(device))
    x0 = (torch.rand(args.batch_size, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    names = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    if device.type not in ("cpu", "cuda"):
        names = [n for n in names if n == "fp32"]
        if not names:
            raise ValueError(f"--precision bf16 runs on cpu and cuda, not on {device.type}")
    precisions = {}
    for name in names:  # one after the other in this process, on the same model and batch
        m = time_precision(model, ema, opt, x0, torch.bfloat16 if name == "bf16" else torch.float32, args, device)
        m["train_gflops_per_s"] = flops * m["train_images_per_s"] / 1e9
        m["utilisation"] = m["train_gflops_per_s"] / m["matmul_gflops"]
        precisions[name] = m
    return {"preset": args.preset, "recipe": targs.recipe, "device": str(device), "device_model": device_model(device),
            "native_bf16": native_bf16(device), "auto_precision": pick_precision("auto", device),
            "batch_size": args.batch_size, "threads": torch.get_num_threads(), "channels_last": channels_last,
            "compile": args.compile, "params": count_params(model), "flops_per_train_image": flops,
            "precisions": precisions, "peak_memory_mb": peak_memory_mb(device), "torch": torch.__version__}


if __name__ == "__main__":
    main()
