"""What each preset's training run costs on GPUs, at the rate a GPU bench measured.

    python -m tools.cost [BENCH_JSON]      # params, GFLOP per training image, hours on 1 and 8 GPUs
"""
import argparse
import json
import sys

import torch

from dae import DiffusionAutoencoder, count_params
from plumbing import flags
from plumbing.device import train_flops_per_image


def preset_table(bench_json: str) -> str:
    """A markdown row per preset: parameters, GFLOP per training image, examples, and the hours on one
    GPU and on 8 at the training rate (FLOP/s) that `bench_json` (bench.py on that GPU) measured."""
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


def main(argv=None):
    p = argparse.ArgumentParser(description="Each preset's size and GPU hours at a measured training rate.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bench_json", nargs="?", default="results/gpu/bench-paper-cuda.json",
                   help="a JSON written by python -m tools.bench --json on a GPU")
    args = p.parse_args(argv)
    try:
        print(preset_table(args.bench_json))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        sys.exit(f"error: cannot read the bench JSON {args.bench_json} ({type(e).__name__}: {e}); pass one written by "
                 f"python -m tools.bench --json")


if __name__ == "__main__":
    main()
