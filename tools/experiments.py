"""Experiments at CPU scale, each one resumable command.

--suite ablation: the ablation of Khungurn et al. 2025 (their CIFAR-10 table), and --recipe small beside it.
--suite recipes:  the decoders of the papers this repo teaches (DiffAE, Khungurn et al., epsilon-VAE,
                  DGAE, and the paper's recipe with a spatial latent, without and with Diffusability's
                  scale-equivariance term), decoded in 1, 3 and 50 steps.
The paper's open questions, as sweeps of its two-phase recipe (half the cpu-v1 preset's examples each,
500 / 100 held-out images, unless flags say otherwise):
--suite phase1:   the share of examples in phase 1: 0, 0.1, 0.25, 0.5, 0.75, 0.9, 1
--suite shift:    the shift S of SC-S: 1 (cosine), 2, 4, 8, 16
--suite zdim:     the latent's size: 32, 128, 512, 2048
--suite switch:   what happens at the phase switch: Adam's moments reset, the learning rate re-warmed,
                  both, and 10% of every phase-1 batch at a phase-2 t
--suite spatial:  the two-phase recipe with a spatial latent (the cpu-v1 preset's full budget): 4 or 8 latent
                  channels, SC-1 / SC-4 / rectified flow, decoded in 1, 2, 3, 5, 10 and 50 steps, and the
                  same network trained as phase 1 only (decoded in one step)
--suite decoding: DDIM steps 1-100 on uniform and reversed-log grids, of one model: the phase1 sweep's
                  two-phase frac-0.25 (its run folder runs/phase1/frac-0.25 is used, or trained)
Every variant is trained with the same preset (default cpu-v1, which every committed result used) and
budget of examples and evaluated the same way on held-out images. Results go to
results/<suite>/<variant>.json (with the training log beside it); a variant whose result exists is
skipped, and said so: --force re-runs it, and --results DIR writes elsewhere. An interrupted training
resumes from its checkpoint. A point that is the same training as another sweep's (shift sc4 and zdim
z512 are phase1 frac-0.25) copies that result when it exists.

    python -m tools.experiments --data ../shared/data/cifar10-jpeg/train
    python -m tools.experiments --suite recipes --data ../shared/data/cifar10-jpeg/train
"""
import argparse
import json
import os
import subprocess
import sys

from plumbing.cli import HelpFormatter, one_line, write_all
from plumbing.flags import PRESETS

# name: (train flags, decoding steps, eval flags). Phase 1 only has only ever seen t = 1: decode it in
# one step (x0_hat from pure noise and z), the only way that uses what it learned.
VARIANTS = {
    "1-diffae-linear-eps": (["--schedule", "linear", "--pred", "eps", "--phase1-frac", "0"], "50", []),
    "2-sc4-v-1phase": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", "0"], "50", []),
    "3-sc4-eps-2phase": (["--schedule", "sc4", "--pred", "eps", "--phase1-frac", "0.25"], "50", []),
    "4-sc4-v-2phase": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", "0.25"], "50", []),
    "5-phase1-only": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", "1"], "1", []),
    # not the paper's: the best found at this scale (the spatial suite), decoded at its best step count
    "6-small-spatial-sc1": (["--recipe", "small"], "10", []),
}
# the paper's recipe with DGAE's kind of latent: a 4 x 8 x 8 map instead of the 512-d vector
PAPER_SPATIAL = ["--recipe", "paper", "--latent", "spatial", "--z-map-channels", "0"]
# The related papers' decoders (flags.py RECIPES). LPIPS needs pretrained weights that cannot be had
# offline: these runs leave it out and say so in their names. epsilon-VAE decodes on its reversed-log grid.
RECIPE_VARIANTS = {
    "1-diffae": (["--recipe", "diffae"], "1,3,50", []),
    "2-paper": (["--recipe", "paper"], "1,3,50", []),
    "3-epsvae-no-lpips": (["--recipe", "epsvae", "--lpips-weight", "0"], "1,3,50", ["--time-grid", "reversed-log"]),
    "4-dgae-no-lpips": (["--recipe", "dgae", "--lpips-weight", "0"], "1,3,50", []),
    "5-paper-spatial": (PAPER_SPATIAL, "1,3,50", []),
    # Diffusability's scale-equivariance term on row 5's latent (2x, lambda 0.25: our choice, the paper's is unverified),
    # decoded at the main term's t (row 6: the reading before --se-t) and at t = 1, from Down_s(z) alone (row 7)
    "6-paper-spatial-se0.25": (PAPER_SPATIAL + ["--se-weight", "0.25", "--se-t", "same"], "1,3,50", []),
    "7-paper-spatial-se0.25-t1": (PAPER_SPATIAL + ["--se-weight", "0.25", "--se-t", "1"], "1,3,50", []),
}
TWO_PHASE = ["--schedule", "sc4", "--pred", "v", "--phase1-frac", "0.25"]
DECODING_STEPS = "1,2,5,10,20,50,100"
SWEEPS = {
    "phase1": {f"frac-{f:g}": (["--schedule", "sc4", "--pred", "v", "--phase1-frac", f"{f:g}"], "1" if f == 1 else "1,50", [])
               for f in (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1)},
    "shift": {f"sc{S}": (["--schedule", f"sc{S}", "--pred", "v", "--phase1-frac", "0.25"], "50", []) for S in (1, 2, 4, 8, 16)},
    "zdim": {f"z{z}": (TWO_PHASE + ["--z-dim", str(z)], "50", []) for z in (32, 128, 512, 2048)},
    # the phase switch: the without-it point is the phase1 sweep's frac-0.25 (the same run)
    "switch": {"reset-adam": (TWO_PHASE + ["--switch-reset-adam"], "1,50", []),
               "rewarm-5000": (TWO_PHASE + ["--switch-warmup", "5000"], "1,50", []),
               "reset-adam-rewarm-5000": (TWO_PHASE + ["--switch-reset-adam", "--switch-warmup", "5000"], "1,50", []),
               "mix-0.1": (TWO_PHASE + ["--phase1-mix", "0.1"], "1,50", [])},
    "decoding": {f"{grid}": (TWO_PHASE, DECODING_STEPS, ["--time-grid", grid])
                 for grid in ("uniform", "reversed-log")},
    # the two-phase recipe with a spatial latent (recipes row 5: 23.47 dB at 3 steps), at the full cpu budget:
    # its latent's channels and its schedule, decoded in 1 to 50 steps to find the best count
    "spatial": {f"c{c}-{sched}": (PAPER_SPATIAL + ["--latent-channels", str(c), "--schedule", sched], "1,2,3,5,10,50", [])
                for c, sched in ((4, "sc1"), (8, "sc1"), (4, "rf"), (8, "sc4"))}
               | {"c4-phase1-only": (PAPER_SPATIAL + ["--phase1-frac", "1"], "1", [])},  # how sharp phase 1 alone is
}
SUITES = {"ablation": VARIANTS, "recipes": RECIPE_VARIANTS, **SWEEPS}
# what a suite uses unless flags say otherwise: (examples, --n, --n-inversion, --runs)
SUITE_DEFAULTS = {"phase1": (40_000, 500, 100, None), "shift": (40_000, 500, 100, None), "zdim": (40_000, 500, 100, None),
                  "switch": (40_000, 500, 100, None), "spatial": (None, 500, 100, None),
                  "decoding": (40_000, 250, 100, "runs/phase1")}
# a suite whose variants share one trained model: the run folder's name
SHARED_RUN = {"decoding": "frac-0.25"}
# a sweep point that is another sweep's point (the same training and budget): its result is copied from
# there when that exists (results/<suite>/<variant>.json beside --results), not trained a second time
SAME_AS = {("shift", "sc4"): ("phase1", "frac-0.25"), ("zdim", "z512"): ("phase1", "frac-0.25")}


class StepFailed(Exception):
    pass


def run(cmd):
    """Run one step; a failure becomes one line (the step's own error is printed just above it)."""
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise StepFailed(f"{os.path.basename(cmd[1])} exited with status {code}: {' '.join(cmd[1:])} "
                         f"(re-run to resume)")


# What the paper reports for each variant on CIFAR-10 at full scale (../shared/PAPERS.md): PSNR, SSIM
PAPER = {"1-diffae-linear-eps": "26.89 / 0.905", "2-sc4-v-1phase": "sharp, structurally inaccurate",
         "3-sc4-eps-2phase": "≈ 15 (washed out)", "4-sc4-v-2phase": "30.35 / 0.955",
         "5-phase1-only": "≈ 30.5 (blurry, FID ≈ 37)", "6-small-spatial-sc1": "— (not in the paper)"}


def table(results, suite="ablation"):
    """The README's markdown table, from the committed JSON."""
    if suite != "ablation":
        return steps_table(results, SUITES[suite])
    lines = ["| variant | flags (each with `--preset cpu-v1`: a flattening encoder head, lr 1e-3 with cosine decay, EMA "
             "0.995 with its warm-up, and a vector z also fed as a 16-channel map concatenated to x_t, on top of AdaGN) "
             "| stochastic PSNR / SSIM, DiffAE's convention [ours] (/ sharpness) (fd_classifier) "
             "| inversion, the same | train time | paper (PSNR / SSIM; DiffAE's convention) |",
             "|---|---|---|---|---|---|"]
    for name, (flags, _, _) in VARIANTS.items():
        path = os.path.join(results, f"{name}.json")
        if not os.path.exists(path):
            continue
        recs = {r["mode"]: r for r in json.load(open(path))}
        cell = {m: (f"{r['psnr_diffae']:.2f} / {r['ssim_diffae']:.3f} " if "psnr_diffae" in r else "— / — ")
                + f"[{r['psnr']:.2f} / {r['ssim']:.3f}]" + (f" / {r['sharpness']:.2f}" if "sharpness" in r else "")
                + (f" (fd {r['fd_classifier']:.2f})" if r.get("fd_classifier") is not None else "")
                + f" ({r['steps']} steps, n = {r['n']})" for m, r in recs.items()}
        minutes = recs["stochastic"]["train_seconds"] / 60
        lines.append(f"| {name} | `{' '.join(flags)}` | {cell['stochastic']} | {cell.get('inversion', '—')} "
                     f"| {minutes:.1f} min | {PAPER[name]} |")
    return "\n".join(lines)


def steps_table(results, variants):
    """One row per variant and step count: random and inverted x_T (PSNR / SSIM / sharpness)."""
    lines = ["| variant | flags | steps | stochastic PSNR / SSIM / sharpness | inversion PSNR / SSIM / sharpness "
             "| train time |", "|---|---|---|---|---|---|"]
    for name, (flags, _, eval_flags) in variants.items():
        path = os.path.join(results, f"{name}.json")
        if not os.path.exists(path):
            continue
        records = json.load(open(path))
        cells = {(r["mode"], r["steps"]): f"{r['psnr']:.2f} / {r['ssim']:.3f} / "
                 + (f"{r['sharpness']:.2f}" if "sharpness" in r else "—") + f" (n = {r['n']})" for r in records}
        minutes = records[0]["train_seconds"] / 60
        shown = " ".join(flags + [f"(eval {' '.join(eval_flags)})"] if eval_flags else flags)
        for steps in sorted({s for _, s in cells}):
            lines.append(f"| {name} | `{shown}` | {steps} | {cells.get(('stochastic', steps), '—')} "
                         f"| {cells.get(('inversion', steps), '—')} | {minutes:.1f} min |")
    return "\n".join(lines)


def positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def stale_reason(result: str, args) -> str:
    """Why an existing result does not answer this invocation ('' if it does)."""
    try:
        with open(result) as f:
            recs = json.load(f)
        examples = recs[0]["examples"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "it is not a result written by this script"
    wanted = args.examples if args.examples is not None else PRESETS[args.preset]["examples"]
    if examples != wanted:
        return f"it is of {examples:,} training examples, not the {wanted:,} asked for"
    return ""


def done_command(path):
    """The training command recorded when a variant's training finished (None if unreadable)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def copy_same(name, args):
    """Copy the result of the same training from another sweep; False if it has none for this budget."""
    if (args.suite, name) not in SAME_AS:
        return False
    suite, variant = SAME_AS[args.suite, name]
    source = os.path.join(os.path.dirname(os.path.normpath(args.results)), suite, variant)
    if not os.path.exists(source + ".json") or stale_reason(source + ".json", args):
        return False
    with open(source + ".json", "rb") as f, open(source + ".log.jsonl", "rb") as g:
        result, log = f.read(), g.read()
    write_all({os.path.join(args.results, f"{name}.log.jsonl"): lambda f: f.write(log),
               os.path.join(args.results, f"{name}.json"): lambda f: f.write(result)})
    print(f"{name}: the same training as --suite {suite} {variant}: copied {source}.json", flush=True)
    return True


def run_variant(name, flags, steps, eval_flags, args):
    if copy_same(name, args):
        return
    run_name = SHARED_RUN.get(args.suite, name)
    out, result = os.path.join(args.runs, run_name), os.path.join(args.results, f"{name}.json")
    tag = "" if run_name == name else f"{name}-"  # variants sharing a run folder keep their own eval files
    ckpt, done = os.path.join(out, "ckpt.pt"), os.path.join(out, "done")
    py = sys.executable
    extra = ["--examples", str(args.examples)] if args.examples is not None else []
    command = ["train.py", "--preset", args.preset, "--data", os.path.realpath(args.data), "--precision",
               args.precision, *flags, *extra]
    if os.path.exists(done) and done_command(done) != command:
        if not args.force:
            raise StepFailed(f"{out} holds a finished training with other flags than {' '.join(command)}: "
                             f"pass --force to retrain it, or --runs DIR")
    if args.force and os.path.exists(done) and run_name == name:  # a shared run (decoding) is only re-evaluated
        os.remove(done)  # train again: train.py --overwrite sets the old run aside until its first checkpoint
        mode = ["--overwrite"]
    else:
        mode = ["--resume"] if os.path.exists(ckpt) else ["--overwrite"] if os.path.exists(out) else []
    if not os.path.exists(done):
        run([py, *command, "--out", out, "--device", args.device, *mode])
        with open(done, "w") as f:  # what was trained, so that a later call with other flags is not evaluated on it
            json.dump(command, f)
    records = []
    # inversion means nothing for a one-step decoder (phase 1 only)
    modes = [("stochastic", args.n)] + ([("inversion", args.n_inversion)] if steps != "1" else [])
    for mode, n in modes:
        tmp = os.path.join(out, f"eval-{tag}{mode}.json")
        run([py, "eval.py", "--ckpt", ckpt, "--data", args.data, "--split", "heldout", "--n", str(n),
             "--steps", steps, "--mode", mode, "--device", args.device, "--json", tmp, *eval_flags,
             "--grid", os.path.join(out, f"grid-{tag}{mode}.png"), "--save", os.path.join(out, f"eval-{tag}{mode}.npz")])
        with open(tmp) as f:
            record = json.load(f)
        records.extend(record if isinstance(record, list) else [record])  # a list: one record per step count
    with open(os.path.join(out, "log.jsonl"), "rb") as f:
        log = f.read()
    # the result and its training log replace the old ones together, and only now
    write_all({os.path.join(args.results, f"{name}.log.jsonl"): lambda f: f.write(log),
               result: lambda f: f.write(json.dumps(records, indent=2).encode())})
    print(f"{name}: wrote {result}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--suite", default="ablation", choices=list(SUITES), help="which experiment")
    p.add_argument("--data", help="image folder (its held-out part is used for evaluation); needed unless --table")
    p.add_argument("--preset", default="cpu-v1", choices=list(PRESETS),
                   help="train.py preset for every variant (cpu-v1: the one the committed results used)")
    p.add_argument("--examples", type=positive, default=None, help="training examples per variant (default: the preset's)")
    p.add_argument("--runs", help="where the run folders go (default: runs/<suite>)")
    p.add_argument("--results", help="where the eval JSON goes (default: results/<suite>)")
    p.add_argument("--n", type=positive, default=None, help="held-out images for the stochastic evaluation "
                   "(default 1000; 500 for the sweeps, 250 for --suite decoding)")
    p.add_argument("--n-inversion", type=positive, default=None, help="held-out images for the inversion evaluation "
                   "(default 250; 100 for the sweeps)")
    p.add_argument("--only", nargs="+", choices=[n for suite in SUITES.values() for n in suite], metavar="VARIANT",
                   help="variants of the suite to run (default: all): "
                        + "; ".join(f"{s}: " + ", ".join(v) for s, v in SUITES.items()))
    p.add_argument("--force", action="store_true", help="re-run variants whose results exist (each is replaced "
                   "only when its new result is complete)")
    p.add_argument("--device", default="auto", help="device for training and evaluation")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="train.py --precision (evaluation is always fp32)")
    p.add_argument("--table", action="store_true", help="print the results table (markdown) from --results and exit")
    args = p.parse_args(argv)
    variants = SUITES[args.suite]
    examples, n, n_inversion, runs = SUITE_DEFAULTS.get(args.suite, (None, 1000, 250, None))
    args.examples = args.examples if args.examples is not None else examples
    args.n, args.n_inversion = args.n or n, args.n_inversion or n_inversion
    args.runs = args.runs or runs or os.path.join("runs", args.suite)
    args.results = args.results or os.path.join("results", args.suite)
    if args.only and not set(args.only) <= set(variants):
        p.error(f"--only: {', '.join(sorted(set(args.only) - set(variants)))} is not in --suite {args.suite}")
    if args.table:
        if not any(os.path.exists(os.path.join(args.results, f"{name}.json")) for name in variants):
            sys.exit(f"error: --table: no results in {args.results} (run the experiments first)")
        try:
            print(table(args.results, args.suite))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            sys.exit(f"error: --table: {args.results} holds a result this script did not write ({type(e).__name__}: "
                     f"{one_line(e)}); move it away, or re-run that variant with --force")
        return
    if args.data is None:
        p.error("--data is required (the image folder to train and evaluate on)")
    if not os.path.isdir(args.data):
        sys.exit(f"error: --data {args.data} is not a folder of images")
    todo = []
    for name in args.only or variants:
        result = os.path.join(args.results, f"{name}.json")
        if os.path.exists(result) and not args.force:
            reason = stale_reason(result, args)
            if reason:
                sys.exit(f"error: {result} exists but {reason}: pass --force to replace it, or --results DIR")
            print(f"skip {name}: {result} exists (--force re-runs it; --results DIR writes elsewhere)")
        else:
            todo.append(name)
    if not todo:
        print(f"nothing to do: every variant asked for has its result in {args.results}")
        return
    try:
        for name in todo:
            run_variant(name, *variants[name], args)
    except StepFailed as e:
        sys.exit(f"error: {e}; nothing of this variant was written to {args.results}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted; re-run the same command to resume (finished variants are kept)")


if __name__ == "__main__":
    main()
