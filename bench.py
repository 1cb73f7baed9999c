"""Speed of a preset: parameters, FLOPs per training image, training and decoding throughput, and
this machine's fp32 (and on CUDA bf16) matrix-product rate measured in the same run, so that
utilisation = FLOPs per image x images/s / matmul rate is a ratio that means something.

    python bench.py --preset cpu --json results/bench-cpu.json
    python bench.py --table results/bench-*.json      # the README's table
"""
import argparse
import copy
import json
import resource
import sys
import time

import torch

import flags
import train
from cli import HelpFormatter, check_output, pick_device, write_all
from cost import matmul_gflops, sync, train_flops_per_image
from dae import DiffusionAutoencoder, count_params
from sample import ddim_step


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS (Linux: KiB)


def table(paths) -> str:
    """A markdown table of bench JSON files (the README's Speed table)."""
    rows = ["| file | preset | device | batch | params | GFLOP / train image | train images/s | train GFLOP/s "
            "| matmul GFLOP/s | ratio | decode images/s per step | peak memory |", "|" + "---|" * 12]
    for path in paths:
        try:
            with open(path) as f:
                r = json.load(f)
            rows.append(f"| `{path}` | {r['preset']} | {r['device']} | {r['batch_size']} | {r['params'] / 1e6:.2f}M "
                        f"| {r['flops_per_train_image'] / 1e9:.2f} | {r['train_images_per_s']:.2f} "
                        f"| {r['train_gflops_per_s']:.0f} | {r['matmul_gflops']:.0f} | {r['utilisation']:.2f} "
                        f"| {r['decode_images_per_s']:.1f} | {r['peak_memory_mb'] / 1024:.1f} GB |")
        except OSError as e:
            raise OSError(f"--table: cannot read {path}: {e.strerror or e}") from None
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"--table: {path} is not a JSON file written by bench.py --json "
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
    p.add_argument("--compile", action="store_true", help="torch.compile the loss, as train.py --compile")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
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


def measure(args, device) -> dict:
    targs = flags.parse_args(["--preset", args.preset])
    torch.manual_seed(0)
    model = DiffusionAutoencoder(flags.model_config(targs)).to(device)
    channels_last = train.use_channels_last(device) if args.channels_last == "auto" else args.channels_last == "on"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    size = targs.image_size
    flops = train_flops_per_image(model, size, device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, **train.optimizer_kwargs(device))
    params, ema_params = list(model.parameters()), list(ema.parameters())
    loss_fn = torch.compile(model.loss) if args.compile else model.loss
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
    x0 = (torch.rand(args.batch_size, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    n_phase1 = args.batch_size // 4  # a mix of both phases, as at the switch
    for i in range(2 + args.steps):
        if i == 2:
            sync(device)
            t0 = time.perf_counter()
        train.train_step(loss_fn, opt, params, ema_params, 0.999, x0, n_phase1, autocast)
    sync(device)
    train_ips = args.batch_size * args.steps / (time.perf_counter() - t0)

    z = ema.encode(x0)
    with torch.inference_mode(), autocast:
        for i in range(2 + args.steps):
            if i == 2:
                sync(device)
                t0 = time.perf_counter()
            ddim_step(ema, x0, z, 0.5, 0.4, clip=True)
        sync(device)
    decode_ips = args.batch_size * args.steps / (time.perf_counter() - t0)
    mm = matmul_gflops(device)
    result = {"preset": args.preset, "device": str(device), "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "channels_last": channels_last, "compile": args.compile,
              "amp": args.amp, "params": count_params(model), "flops_per_train_image": flops,
              "train_images_per_s": train_ips, "decode_images_per_s": decode_ips,
              "train_gflops_per_s": flops * train_ips / 1e9, "matmul_gflops": mm,
              "utilisation": flops * train_ips / 1e9 / mm, "peak_memory_mb": peak_memory_mb(device),
              "torch": torch.__version__}
    if device.type == "cuda":
        result["matmul_bf16_gflops"] = matmul_gflops(device, torch.bfloat16)
    return result


if __name__ == "__main__":
    main()
