"""The ablation of Khungurn et al. 2025 (their CIFAR-10 table) at CPU scale: five training recipes,
each trained with the same preset and budget of examples, each evaluated the same way on held-out
images. Re-running skips what is done; results go to results/ablation/<variant>.json.

    python experiments.py --data ../shared/data/cifar10-jpeg/train
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

# name: (train flags, decoding steps). Phase 1 only has only ever seen t = 1: decode it in one step
# (x0_hat from pure noise and z), the only way that uses what it learned.
VARIANTS = {
    "1-diffae-linear-eps": (["--schedule", "linear", "--pred", "eps", "--phase1-frac", "0"], 50),
    "2-sc4-v-1phase": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", "0"], 50),
    "3-sc4-eps-2phase": (["--schedule", "sc4", "--pred", "eps", "--phase1-frac", "0.25"], 50),
    "4-sc4-v-2phase": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", "0.25"], 50),
    "5-phase1-only": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", "1"], 1),
}


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


# What the paper reports for each variant on CIFAR-10 at full scale (../shared/PAPERS.md): PSNR, SSIM
PAPER = {"1-diffae-linear-eps": "26.89 / 0.905", "2-sc4-v-1phase": "sharp, structurally inaccurate",
         "3-sc4-eps-2phase": "≈ 15 (washed out)", "4-sc4-v-2phase": "30.35 / 0.955",
         "5-phase1-only": "≈ 30.5 (blurry, FID ≈ 37)"}


def table(results):
    """The README's markdown table, from the committed JSON."""
    lines = ["| variant | flags | stochastic PSNR / SSIM | inversion PSNR / SSIM | train time | paper (PSNR / SSIM) |",
             "|---|---|---|---|---|---|"]
    for name, (flags, _) in VARIANTS.items():
        path = os.path.join(results, f"{name}.json")
        if not os.path.exists(path):
            continue
        recs = {r["mode"]: r for r in json.load(open(path))}
        cell = {m: f"{r['psnr']:.2f} / {r['ssim']:.3f} ({r['steps']} steps, n = {r['n']})" for m, r in recs.items()}
        minutes = recs["stochastic"]["train_seconds"] / 60
        lines.append(f"| {name} | `{' '.join(flags)}` | {cell['stochastic']} | {cell.get('inversion', '—')} "
                     f"| {minutes:.1f} min | {PAPER[name]} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="image folder (its held-out part is used for evaluation)")
    p.add_argument("--preset", default="cpu", help="train.py preset for every variant")
    p.add_argument("--examples", type=int, default=None, help="training examples per variant (default: the preset's)")
    p.add_argument("--runs", default="runs/ablation", help="where the run folders go")
    p.add_argument("--results", default="results/ablation", help="where the eval JSON goes")
    p.add_argument("--n", type=int, default=1000, help="held-out images for the stochastic evaluation")
    p.add_argument("--n-inversion", type=int, default=250, help="held-out images for the inversion evaluation")
    p.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    p.add_argument("--device", default="auto", help="device for training and evaluation")
    p.add_argument("--table", action="store_true", help="print the results table (markdown) and exit")
    args = p.parse_args()
    if args.table:
        print(table(args.results))
        return
    os.makedirs(args.results, exist_ok=True)
    py = sys.executable
    for name, (flags, steps) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        out, result = os.path.join(args.runs, name), os.path.join(args.results, f"{name}.json")
        if os.path.exists(result):
            continue
        ckpt = os.path.join(out, "ckpt.pt")
        extra = ["--examples", str(args.examples)] if args.examples else []
        if not os.path.exists(os.path.join(out, "done")):
            resume = ["--resume"] if os.path.exists(ckpt) else []
            run([py, "train.py", "--preset", args.preset, "--data", args.data, "--out", out, "--device", args.device,
                 *flags, *extra, *resume])
            open(os.path.join(out, "done"), "w").close()
        shutil.copy(os.path.join(out, "log.jsonl"), os.path.join(args.results, f"{name}.log.jsonl"))
        records = []
        modes = [("stochastic", args.n)] + ([("inversion", args.n_inversion)] if steps > 1 else [])
        for mode, n in modes:
            tmp = os.path.join(out, f"eval-{mode}.json")
            run([py, "eval.py", "--ckpt", ckpt, "--data", args.data, "--split", "heldout", "--n", str(n),
                 "--steps", str(steps), "--mode", mode, "--device", args.device, "--json", tmp,
                 "--grid", os.path.join(out, f"grid-{mode}.png"), "--save", os.path.join(out, f"eval-{mode}.npz")])
            records.append(json.load(open(tmp)))
        with open(result, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
