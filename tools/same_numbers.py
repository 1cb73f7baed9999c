"""Proof that a refactor changed no number: tiny training runs of every recipe and option, fingerprinted.

    python -m tools.same_numbers --repo . --json results/refactor/after.json
    git worktree add /tmp/before 48ef550 && python tools/same_numbers.py --repo /tmp/before --json before.json
    python -m tools.same_numbers --compare results/refactor/before.json results/refactor/after.json
    python -m tools.same_numbers --repo . --preset cpu-v1 --json after.json   # a preset renamed since BEFORE

Each run trains train.py of the checkout --repo (as a user would, in a subprocess, one thread) on a small
synthetic image folder, then records every logged loss exactly (the float's repr) and a SHA-256 of the
final weights, EMA weights, discriminator and grid PNG. Two checkouts compute the same numbers if and only
if --compare finds every field equal. Run both sides on one machine: bits differ between CPU kinds.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

from plumbing.checkpoint import weights_digest
from plumbing.cli import check_output, write_all

BASE = ["--image-size", "16", "--base-channels", "16", "--channel-mult", "1,2",
        "--enc-channel-mult", "1,2", "--num-res-blocks", "1", "--enc-num-res-blocks", "1", "--z-dim", "32",
        "--batch-size", "8", "--warmup", "0", "--holdout", "8", "--device", "cpu", "--examples", "64",
        "--log-every", "1", "--ckpt-every", "32", "--sample-every", "32", "--precision", "fp32"]
VECTOR, SPATIAL = ["--z-map-channels", "4"], ["--z-map-channels", "0"]
RUNS = {
    "paper": ["--recipe", "paper", *VECTOR],
    "diffae": ["--recipe", "diffae", *VECTOR],
    "epsvae-no-lpips": ["--recipe", "epsvae", "--lpips-weight", "0", *SPATIAL],
    "dgae-no-lpips": ["--recipe", "dgae", "--lpips-weight", "0", *SPATIAL],
    "small": ["--recipe", "small", *SPATIAL],
    "kl": ["--recipe", "paper", "--kl-weight", "1e-3", *VECTOR],
    "kl-dropout": ["--recipe", "paper", "--kl-weight", "1e-3", "--dropout", "0.1", *VECTOR],
    "se": ["--recipe", "small", "--se-weight", "0.25", *SPATIAL],
    "se-dropout": ["--recipe", "small", "--se-weight", "0.25", "--se-scales", "2,4", "--dropout", "0.1", *SPATIAL],
    "adv": ["--recipe", "paper", "--adv-weight", "0.5", "--adv-start", "16", *VECTOR],
    "phase1-mix": ["--recipe", "paper", "--phase1-mix", "0.25", *VECTOR],
    "switch": ["--recipe", "paper", "--switch-reset-adam", "--switch-warmup", "16", "--warmup", "16", *VECTOR],
    "bf16": ["--recipe", "paper", "--precision", "bf16", *VECTOR],
    "torchrun-2": ["--recipe", "paper", *VECTOR],
    "epsvae-lpips-random": ["--recipe", "epsvae", "--image-size", "32", *SPATIAL],  # LPIPS, random backbone (AlexNet needs 32 px)
}
# train.py with LPIPS's untrained-backbone mode: the same code path as the pretrained one, with no download
# (seeded: a fresh process's default generator is not)
RANDOM_LPIPS = ("import sys, torch, perceptual, train; train.load_lpips = lambda device: (torch.manual_seed(1234), "
                "perceptual.load_lpips(device, random_backbone=True))[1]; train.main(sys.argv[1:])")


def image_folder(root: str) -> str:
    """40 smooth random images in two class folders (as tests/conftest.py makes them)."""
    rng = np.random.default_rng(0)
    for i in range(40):
        d = os.path.join(root, "a" if i % 2 else "b")
        os.makedirs(d, exist_ok=True)
        yy, xx = np.mgrid[0:16, 0:16] / 16
        c = rng.uniform(0, 1, size=(3, 3))
        img = np.stack([c[k, 0] + c[k, 1] * yy + c[k, 2] * xx for k in range(3)], -1)
        Image.fromarray((np.clip(img / img.max(), 0, 1) * 255).astype(np.uint8)).save(os.path.join(d, f"{i:03d}.png"))
    return root


def fingerprint(repo: str, name: str, flags: list, data: str, out: str, preset: str = "cpu") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": repo}
    cmd = [sys.executable, "train.py", "--preset", preset, *BASE, *flags, "--data", data, "--out", out]
    if name.startswith("torchrun"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *cmd[1:]]
    if name == "epsvae-lpips-random":
        cmd = [sys.executable, "-c", RANDOM_LPIPS, *cmd[2:]]
    p = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if p.returncode:
        last = [line for line in p.stderr.splitlines() if line.strip()][-1:] or ["no message"]
        raise SystemExit(f"error: the {name} run failed in {repo} (exit {p.returncode}): {last[0]}")
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True, map_location="cpu")
    lines = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    grids = sorted(os.listdir(os.path.join(out, "samples")))
    return {"losses": [repr(r["loss"]) for r in lines], "lr": [repr(r["lr"]) for r in lines],
            "model": weights_digest(ckpt["model"]), "ema": weights_digest(ckpt["ema"]),
            "disc": weights_digest(ckpt["disc"]) if "disc" in ckpt else None,
            "grid": hashlib.sha256(open(os.path.join(out, "samples", grids[-1]), "rb").read()).hexdigest()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repo", default=".", help="the checkout whose train.py runs")
    p.add_argument("--json", help="write the fingerprints here")
    p.add_argument("--only", nargs="+", choices=list(RUNS), help="these runs only")
    p.add_argument("--preset", default="cpu", help="the preset every run starts from (a renamed preset: its "
                   "old name on the checkout before, e.g. cpu there and cpu-v1 after)")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two fingerprint files instead")
    args = p.parse_args(argv)
    if args.compare:
        try:
            a, b = (json.load(open(f)) for f in args.compare)
        except (OSError, ValueError) as e:
            sys.exit(f"error: --compare: {e.filename if isinstance(e, OSError) else 'a file'} is not a fingerprint "
                     f"file written by --json ({type(e).__name__})")
        same = True
        for name in (k for k in a if isinstance(a[k], dict)):
            ok = name in b and a[name] == {k: v for k, v in b[name].items() if k in a[name]}
            same &= ok
            print(f"{name:18s} {'identical' if ok else 'DIFFERENT'} ({len(a[name]['losses'])} losses, weights, EMA, grid)")
        print("bit-identical" if same else "NOT bit-identical")
        sys.exit(0 if same else 1)
    repo = os.path.abspath(args.repo)
    if not os.path.isfile(os.path.join(repo, "train.py")):
        sys.exit(f"error: --repo {args.repo} is not a checkout of this repository (no train.py in it)")
    try:
        check_output(args.json, "--json")  # before minutes of training, not after
    except ValueError as e:
        sys.exit(f"error: {e}")
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "preset": args.preset}
    with tempfile.TemporaryDirectory() as tmp:
        data = image_folder(os.path.join(tmp, "images"))
        for name in args.only or [n for n in RUNS if n != "epsvae-lpips-random" or importlib.util.find_spec("lpips")]:
            result[name] = fingerprint(repo, name, RUNS[name], data, os.path.join(tmp, name), args.preset)
            print(f"{name:18s} final loss {result[name]['losses'][-1]}  ema {result[name]['ema'][:12]}", flush=True)
    if args.json:
        write_all({args.json: lambda f: f.write(json.dumps(result, indent=1).encode())})


if __name__ == "__main__":
    main()
