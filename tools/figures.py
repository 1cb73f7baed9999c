"""Every figure in figures/, made from the schedules and from the experiments' committed outputs
(results/ablation, results/recipes, results/spatial, the sweeps' results, results/latent; probe.py
and latent_sampler.py write their own grids).

    python -m tools.figures                       # schedules only (needs nothing else)
    python -m tools.figures --data ../shared/data/cifar10-jpeg/train   # + ablation figures (after experiments.py)
"""
import argparse
import json
import os
import sys
from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from plumbing.cli import HelpFormatter  # noqa: E402
from tools.experiments import SWEEPS  # noqa: E402
from schedules import Schedule, time_grid  # noqa: E402

SCHEDULES = ["linear", "cosine", "sc2", "sc4", "sc8", "rf"]
LABELS = {"linear": "linear β (DDPM/DiffAE)", "cosine": "cosine", "sc2": "SC-2", "sc4": "SC-4 (paper)",
          "sc8": "SC-8", "rf": "rectified flow"}


def schedules_figure(path, steps=50):
    t = torch.linspace(0.0005, 0.9995, 2000, dtype=torch.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    shares = []
    for name in SCHEDULES:
        s = Schedule(name)
        ax1.plot(t, s.logsnr(t), label=LABELS[name])
        # where a 50-step uniform DDIM grid evaluates the model: the logsnr at each step's start
        lam = s.logsnr(time_grid(steps)[:-1].double())
        shares.append([(lam < -2).float().mean().item(), ((lam >= -2) & (lam < 2)).float().mean().item(),
                       (lam >= 2).float().mean().item()])
    ax1.set(xlabel="t", ylabel="log-SNR λ(t)", ylim=(-12, 14), title="log-SNR of each schedule")
    ax1.axhline(0, color="gray", lw=0.5)
    ax1.legend(fontsize=8)
    shares = np.array(shares)
    bottom = np.zeros(len(SCHEDULES))
    for j, (label, color) in enumerate([("high noise (λ < −2)", "#c44"), ("middle (−2 ≤ λ < 2)", "#ca4"),
                                        ("low noise (λ ≥ 2)", "#4a4")]):
        ax2.bar(range(len(SCHEDULES)), shares[:, j], bottom=bottom, label=label, color=color)
        bottom += shares[:, j]
    ax2.set_xticks(range(len(SCHEDULES)), [LABELS[n].split(" (")[0] for n in SCHEDULES], rotation=20, fontsize=8)
    ax2.set(ylabel=f"share of the {steps} DDIM steps", title="where the sampling steps fall")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves_figure(results, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in sorted(os.listdir(results)):
        if not name.endswith(".log.jsonl"):
            continue
        rows = [json.loads(line) for line in open(os.path.join(results, name)) if "loss" in line]
        x = [r["examples"] for r in rows]
        ax.plot(x, [r["loss"] for r in rows], label=name.replace(".log.jsonl", ""), lw=1)
        switch = [r["examples"] for r in rows if r["phase"] == 2]
        if switch and switch[0] > x[0]:
            ax.axvline(switch[0], color=ax.lines[-1].get_color(), ls=":", lw=1)
    ax.set(xlabel="training examples", ylabel="training loss (MSE of the target)", yscale="log",
           title="training curves (dotted: phase 1 → phase 2)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reconstructions_figure(rows, path, k=10):
    """Originals above reconstructions: rows is [(label, eval.py --save file, its key)], the originals
    taken from the first file that exists. False if none does."""
    found = [(label, np.load(f), key) for label, f, key in rows if os.path.exists(f)]
    if not found:
        return False
    images = [("original", found[0][1]["originals"][:k])] + [(label, d[key][:k]) for label, d, key in found]
    fig, axes = plt.subplots(len(images), 1, figsize=(k * 0.9, len(images) * 1.05))
    for ax, (label, row) in zip(axes, images):
        ax.imshow(np.concatenate(list(row.transpose(0, 2, 3, 1)), axis=1))
        ax.set_axis_off()
        ax.set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def recipes_figure(results, path, title="the recipes at CPU scale (80,000 examples each, held-out images)"):
    """PSNR, SSIM and sharpness against decoding steps for each variant of a suite (experiments.py
    --suite recipes or spatial); solid: random x_T, dashed: inverted x_T. False if there are no results."""
    files = sorted(f for f in os.listdir(results) if f.endswith(".json")) if os.path.isdir(results) else []
    if not files:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for f in files:
        records = json.load(open(os.path.join(results, f)))
        color = None
        for mode, style in (("stochastic", "-"), ("inversion", "--")):
            rs = sorted((r for r in records if r["mode"] == mode), key=lambda r: r["steps"])
            if not rs:
                continue
            for ax, key in zip(axes, ("psnr", "ssim", "sharpness")):
                if all(key in r for r in rs):
                    line, = ax.plot([r["steps"] for r in rs], [r[key] for r in rs], style, marker="o", ms=3,
                                    color=color, label=f"{f[:-5]} ({mode})")
                    color = line.get_color()
    for ax, label in zip(axes, ("PSNR (dB)", "SSIM", "sharpness (1 = as detailed as the data)")):
        ax.set(xscale="log", xlabel="DDIM steps", ylabel=label)
    axes[2].axhline(1, color="gray", lw=0.5)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"{title}; solid: random x_T, dashed: inverted", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def spectra_figure(latent_results, path):
    """Block-DCT spectra (spectrum.py): images against the spatial latents, and originals against
    reconstructions (50 random-x_T steps). False if there are no spectra."""
    prefixes = ("spectrum-", "latent-spectrum-")  # results/latent/run.sh: of an eval's .npz, of a checkpoint
    found = sorted(f for f in os.listdir(latent_results) if f.startswith(prefixes)) \
        if os.path.isdir(latent_results) else []
    if not found:
        return False
    reports = {f: json.load(open(os.path.join(latent_results, f))) for f in found}
    with_latents = any("latent" in r for r in reports.values())  # a vector latent has no spectrum
    fig, axes = plt.subplots(1, 2 if with_latents else 1, figsize=(11 if with_latents else 6, 3.8), squeeze=False)
    ax1, ax2 = (axes[0, 0], axes[0, 1]) if with_latents else (None, axes[0, 0])
    images_shown = False
    for f, r in reports.items():
        name = f[len("latent-spectrum-" if f.startswith("latent-") else "spectrum-"):-len(".json")]
        if "latent" in r:
            if not images_shown:
                ax1.plot(r["originals"]["spectrum"], color="k", lw=2, label="RGB images (8x8 blocks)")
                images_shown = True
            ax1.plot(r["latent"]["spectrum"], label=f"{name}: latent {r['latent_shape']} ({r['latent']['block']}x"
                     f"{r['latent']['block']} blocks)")
        if "reconstructions_50" in r:
            if not ax2.lines:
                ax2.plot(r["originals"]["spectrum"], color="k", lw=2, label="originals")
            ax2.plot(r["reconstructions_50"]["spectrum"],
                     label=f"{name} (sharpness {r['reconstructions_50']['sharpness']:.2f})")
    if with_latents:
        ax1.set(xlabel="zigzag index", ylabel="mean |D_uv| / mean |D_00|", yscale="log", title="images vs latents")
    ax2.set(xlabel="zigzag index", ylabel="mean |D_uv| / mean |D_00|", yscale="log",
            title="reconstructions, 50 steps, random x_T")
    for ax in axes[0]:
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def setting(record, suite):
    """The swept value of a sweep's eval record (the JSON alone rebuilds the figure)."""
    if suite == "phase1":
        return record["phase1_frac"]
    if suite == "shift":  # sc<S>; cosine is S = 1
        return 1.0 if record["schedule"] == "cosine" else float(record["schedule"][2:])
    if suite == "zdim":
        return record["z_dim"]
    return record["steps"]


SWEEP_AXES = {"phase1": "share of examples in phase 1", "shift": "shift S of SC-S (log scale)",
              "zdim": "z size (log scale)", "decoding": "DDIM steps (log scale)"}


def sweep_figure(results, suite, path):
    """PSNR, SSIM and sharpness against the swept setting (experiments.py --suite <suite>): a line per
    decoding step count (or, for the decoding sweep, per time grid), solid random x_T, dashed inverted."""
    files = sorted(f for f in os.listdir(results) if f.endswith(".json")) if os.path.isdir(results) else []
    records = [r for f in files for r in json.load(open(os.path.join(results, f)))]
    if not records:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    key = (lambda r: r["time_grid"]) if suite == "decoding" else (lambda r: f"{r['steps']} steps")
    for group in sorted({key(r) for r in records}):
        color = None
        for mode, style in (("stochastic", "-"), ("inversion", "--")):
            rs = sorted((r for r in records if key(r) == group and r["mode"] == mode), key=lambda r: setting(r, suite))
            if not rs:
                continue
            for ax, metric in zip(axes, ("psnr", "ssim", "sharpness")):
                line, = ax.plot([setting(r, suite) for r in rs], [r.get(metric, np.nan) for r in rs], style,
                                marker="o", ms=3, color=color, label=f"{group} ({mode})")
                color = line.get_color()
    for ax, label in zip(axes, ("PSNR (dB)", "SSIM", "sharpness (1 = as detailed as the data)")):
        ax.set(xlabel=SWEEP_AXES[suite], ylabel=label, xscale="linear" if suite == "phase1" else "log")
    axes[2].axhline(1, color="gray", lw=0.5)
    axes[2].set_yscale("log")  # noise can put it far above 1, blur below
    axes[0].legend(fontsize=6)
    n = {r["examples"] for r in records}
    fig.suptitle(f"--suite {suite}: {', '.join(f'{e:,}' for e in sorted(n))} training examples per model, "
                 f"held-out images; solid: random x_T, dashed: inverted", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def switch_figure(logs, path, before=2_000, after=15_000):
    """The training loss around the phase switch, one line per run ({label: log.jsonl path}), and each
    run's held-out PSNR at 50 steps (the eval JSON beside the log) in the legend."""
    runs = {label: log for label, log in logs.items() if os.path.exists(log)}
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, log in runs.items():
        rows = [json.loads(line) for line in open(log)]
        rows = [r for r in rows if "loss" in r]
        switch = next((r["examples"] for r in rows if r["phase"] == 2), None)
        if switch is None:
            continue
        near = [r for r in rows if -before <= r["examples"] - switch <= after]
        result = log.replace(".log.jsonl", ".json")
        psnr = [r["psnr"] for r in json.load(open(result)) if r["steps"] == 50 and r["mode"] == "stochastic"] \
            if os.path.exists(result) else []
        ax.plot([r["examples"] - switch for r in near], [r["loss"] for r in near], lw=1,
                label=label + (f" ({psnr[0]:.2f} dB at 50 steps)" if psnr else ""))
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="examples since the phase switch", ylabel="training loss (mean over 10 steps)", yscale="log",
           title="the loss around the phase switch (experiments.py --suite switch)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def interpolation_figure(ckpt_path, data, path, steps=50):
    from plumbing.checkpoint import build_model, load_checkpoint
    from data import load_images, to_float
    from sample import interpolate
    ckpt = load_checkpoint(ckpt_path)
    model = build_model(ckpt)
    images = to_float(load_images(data, "heldout", ckpt["args"]["holdout"], model.cfg.net.image_size))
    n = len(images)
    if n < 2:
        raise ValueError(f"the interpolation figure needs 2 held-out images; {data} has {n}")
    # two pairs spread over the held-out split (images 0-500 and 200-900 of CIFAR's 1,000)
    pairs = [(0, n // 2), (n // 5, 9 * n // 10)]
    rows = [interpolate(model, images[a], images[b], 8, time_grid(steps)) for a, b in pairs]
    strip = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)        # (3, 2H, 8W)
    fig, ax = plt.subplots(figsize=(8, 2.2))
    ax.imshow(((strip.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
    ax.set_axis_off()
    ax.set_title("two-phase model: lerp z, slerp inverted x_T (ends are reconstructions)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--data", help="the image folder the ablation used (for the interpolation figure)")
    p.add_argument("--runs", default="runs", help="tools/experiments.py's run folders (<suite>/<variant>/)")
    p.add_argument("--results", default="results", help="tools/experiments.py's results (<suite>/), every figure's source")
    p.add_argument("--out", default="figures", help="output folder")
    args = p.parse_args(argv)
    try:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a file; give a folder")
        os.makedirs(args.out, exist_ok=True)
        schedules_figure(os.path.join(args.out, "schedules.png"))
        ablation, ablation_runs = os.path.join(args.results, "ablation"), os.path.join(args.runs, "ablation")
        spatial_runs, ckpt = os.path.join(args.runs, "spatial"), os.path.join(ablation_runs, "4-sc4-v-2phase", "ckpt.pt")
        runs = sorted(os.listdir(ablation_runs)) if os.path.isdir(ablation_runs) else []
        target_rows = [("phase 1 only, 1 step", os.path.join(spatial_runs, "c4-phase1-only", "eval-stochastic.npz"),
                        "reconstructions")] + [
            (f"two-phase (c4-sc1), {s} steps", os.path.join(spatial_runs, "c4-sc1", "eval-stochastic.npz"),
             f"reconstructions_{s}") for s in (2, 10, 50)]
        switch_logs = {"without": os.path.join(args.results, "phase1", "frac-0.25.log.jsonl"),
                       **{name: os.path.join(args.results, "switch", f"{name}.log.jsonl") for name in SWEEPS["switch"]}}
        spatial_figure = partial(recipes_figure, title="the two-phase recipe with a spatial latent (80,000 examples "
                                                "each, held-out images)")
        # (figure, draw(path) -> whether it was drawn, why it was not)
        todo = [("training_curves.png", lambda p: os.path.isdir(ablation) and any(
                    f.endswith(".log.jsonl") for f in os.listdir(ablation)) and curves_figure(ablation, p) is None,
                 f"no training logs in {ablation}"),
                ("reconstructions.png", partial(reconstructions_figure, [(name, os.path.join(
                    ablation_runs, name, "eval-stochastic.npz"), "reconstructions") for name in runs]),
                 f"no eval-stochastic.npz in the run folders of {ablation_runs}; run tools/experiments.py first"),
                ("recipes.png", partial(recipes_figure, os.path.join(args.results, "recipes")), "no results/recipes"),
                ("spatial.png", partial(spatial_figure, os.path.join(args.results, "spatial")), "no results/spatial"),
                ("spectra.png", partial(spectra_figure, os.path.join(args.results, "latent")), "no results/latent"),
                *[(f"sweep-{suite}.png", partial(sweep_figure, os.path.join(args.results, suite), suite),
                   f"no results in {os.path.join(args.results, suite)}") for suite in SWEEP_AXES],
                ("target.png", partial(reconstructions_figure, target_rows),
                 f"no {spatial_runs}/*/eval-stochastic.npz: run tools/experiments.py --suite spatial"),
                ("switch.png", partial(switch_figure, switch_logs), f"no logs in {args.results}/switch or /phase1"),
                ("interpolation.png", lambda p: bool(args.data) and os.path.exists(ckpt) and interpolation_figure(
                    ckpt, args.data, p) is None, "needs --data" if not args.data else f"no checkpoint {ckpt}")]
        done, skipped = ["schedules.png"], []
        for name, draw, why in todo:
            if draw(os.path.join(args.out, name)):
                done.append(name)
            else:
                skipped.append(f"{name} ({why})")
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {', '.join(done)} to {args.out}/" + "".join(f"\nskipped {s}" for s in skipped))


if __name__ == "__main__":
    main()
