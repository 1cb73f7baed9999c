"""What the latent holds: a linear probe on z, and DiffAE's class manipulation along the probe's direction.

Linear probe (Preechakul et al. 2022, "attribute manipulation"; Khungurn et al. 2025 claim two-phase
training keeps z manipulable): z = Enc(x_0) of the training images, normalised per dimension with
the training set's mean and std (DiffAE's "z-normalize"), then multinomial logistic regression
    p(y | z) = softmax(W z_norm + b),   minimise  mean_i -log p(y_i | z_i) + (l2 / 2) ||W||^2
by full-batch L-BFGS, and its accuracy on the held-out images. Chance is 1 / classes.

Manipulation (DiffAE §4.3): move the normalised latent along the probe's direction of class c,
    z'_norm = z_norm + s w_c / ||w_c||,    z' = mean + std * z'_norm
and decode it from the image's own DDIM-inverted x_T (so that everything z does not hold stays).
Whether it worked is measured, not only shown: the decoded images are encoded again and the probe's
logit of class c on them is reported for each strength s (it should rise with s).

    python probe.py --ckpt runs/recipes/2-paper/ckpt.pt --data ../shared/data/cifar10-jpeg/train \\
        --json results/probe/2-paper.json --manipulate 0 --grid figures/manipulation.png
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

from plumbing.checkpoint import build_model, load_checkpoint
from plumbing.cli import HelpFormatter, check_apart, check_numbers, check_output, write_all
from plumbing.run_folder import refuse_busy
from plumbing.device import pick_device
from data import heldout_problem, load_images, load_labels, to_float, to_uint8
from sample import ddim_decode, ddim_encode
from schedules import time_grid


@torch.inference_mode()
def encode_all(model, images_u8, batch_size=500, desc="encoding"):
    """z = Enc(x_0) of a uint8 image set, flattened: (N, D) float32 on the CPU (z = mu for a KL latent)."""
    device = next(model.parameters()).device
    out = [model.encode(to_float(images_u8[i:i + batch_size]).to(device)).flatten(1).float().cpu()
           for i in tqdm(range(0, len(images_u8), batch_size), desc=desc, unit="batch", leave=False,
                         dynamic_ncols=True)]
    return torch.cat(out)                                                        # (N, D)


def fit_probe(z, y, classes, l2=1e-3, iters=200):
    """Logistic regression on z (N, D) -> (W (classes, D), b (classes,), mean (D,), std (D,))."""
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    z_norm = ((z - mean) / std).double()
    W = torch.zeros(classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        # cross-entropy of softmax(W z + b) plus (l2 / 2) ||W||^2
        loss = F.cross_entropy(z_norm @ W.T + b, y) + 0.5 * l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().float(), b.detach().float(), mean, std


def logits(probe, z):
    W, b, mean, std = probe
    return ((z - mean) / std) @ W.T + b                                          # (N, classes)


def accuracy(probe, z, y) -> float:
    return float((logits(probe, z).argmax(1) == y).float().mean())


def manipulate(probe, z, c, s):
    """z' = mean + std (z_norm + s w_c / ||w_c||): z (N, D) moved s standard units towards class c."""
    W, _, mean, std = probe
    w = W[c] / W[c].norm()
    return mean + std * ((z - mean) / std + s * w)


@torch.inference_mode()
def manipulation(model, probe, images_u8, c, strengths, steps):
    """Decoded images (len(strengths), N, 3, H, W) uint8 and the probe's mean logit of class c on their
    re-encoded latents, one per strength."""
    device = next(model.parameters()).device
    ts = time_grid(steps)
    x0 = to_float(images_u8).to(device)
    z = model.encode(x0)
    x_T = ddim_encode(model, model.to_diffusion(x0), z, ts)
    rows, moved = [], []
    for s in strengths:
        z_s = manipulate(probe, z.flatten(1).float().cpu(), c, s).view(z.shape).to(z.device, z.dtype)
        x = to_uint8(model.to_data(ddim_decode(model, x_T, z_s, ts, clip=model.cfg.gamma))).cpu()
        rows.append(x)
        moved.append(float(logits(probe, encode_all(model, x, desc=f"re-encoding s={s}"))[:, c].mean()))
    return torch.stack(rows), moved


def floats(s: str) -> list:
    try:
        return [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def main(argv=None):
    p = argparse.ArgumentParser(description="Linear probe of the latent and class manipulation (DiffAE).",
                                formatter_class=HelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--data", default="cifar10", help="'cifar10' or a folder of images in class sub-folders")
    p.add_argument("--weights", default="ema", choices=["ema", "model"], help="EMA or raw weights")
    p.add_argument("--n-train", type=int, default=None, help="training images the probe is fitted on (default: all)")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the probe's weights")
    p.add_argument("--manipulate", default=None, metavar="CLASS",
                   help="also move held-out latents towards this class (its sub-folder name, or its index) and decode them")
    p.add_argument("--strengths", type=floats, default=[0, 1, 2, 4], help="manipulation strengths s (std units)")
    p.add_argument("--n-manipulate", type=int, default=8, help="held-out images to manipulate")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the inversion and decoding")
    p.add_argument("--grid", help="PNG of the manipulation: a row per strength")
    p.add_argument("--json", help="write the accuracies (and the manipulation's logits) here")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    args = p.parse_args(argv)
    try:
        check_numbers(args)
        check_apart({"--grid": args.grid, "--json": args.json}, {"--ckpt": args.ckpt, "--data": args.data})
        refuse_busy([args.grid, args.json])
        for flag, v in [("--n-train", 1 if args.n_train is None else args.n_train),
                        ("--n-manipulate", args.n_manipulate), ("--steps", args.steps)]:
            if v < 1:
                raise ValueError(f"{flag} must be positive, got {v}")
        if args.l2 < 0:
            raise ValueError(f"--l2 must be >= 0, got {args.l2}")
        if args.grid and args.manipulate is None:
            raise ValueError("--grid shows the manipulation: pass --manipulate CLASS too")
        for flag in ("json", "grid"):
            check_output(getattr(args, flag), "--" + flag)
        ckpt = load_checkpoint(args.ckpt)
        holdout = ckpt["args"].get("holdout", 1000)
        problem = ckpt.get("split") and args.data != "cifar10" and heldout_problem(ckpt["split"], args.data, holdout)
        if problem:
            raise ValueError(problem)
        # the checkpoint's own held-out split: images it was never trained on
        y_train, classes = load_labels(args.data, "train", holdout)
        y_test, _ = load_labels(args.data, "heldout", holdout)
        if len(classes) < 2:
            raise ValueError(f"{args.data} has {len(classes)} class: a probe needs two or more")
        if args.manipulate is not None:
            if args.manipulate in classes:
                args.manipulate = classes.index(args.manipulate)
            elif args.manipulate.isdigit() and int(args.manipulate) < len(classes):
                args.manipulate = int(args.manipulate)
            else:
                raise ValueError(f"--manipulate {args.manipulate} is neither a class nor a class index "
                                 f"(0..{len(classes) - 1}: {', '.join(classes)})")
        model = build_model(ckpt, args.weights).to(pick_device(args.device))
        size = model.cfg.net.image_size
        n_train = min(args.n_train or len(y_train), len(y_train))
        train_images, y_train = load_images(args.data, "train", holdout, size)[:n_train], y_train[:n_train]
        test_images = load_images(args.data, "heldout", holdout, size)
        z_train, z_test = encode_all(model, train_images), encode_all(model, test_images)
        probe = fit_probe(z_train, y_train, len(classes), args.l2)
        result = {"checkpoint": args.ckpt, "data": args.data, "classes": classes, "n_train": len(z_train),
                  "n_test": len(z_test), "z_dims": z_train.shape[1], "l2": args.l2,
                  "train_accuracy": accuracy(probe, z_train, y_train), "test_accuracy": accuracy(probe, z_test, y_test),
                  "majority": float(torch.bincount(y_test).max()) / len(y_test), "recipe": ckpt["args"].get("recipe"),
                  "schedule": ckpt["args"]["schedule"], "pred": ckpt["args"]["pred"],
                  "phase1_frac": ckpt["args"]["phase1_frac"], "latent": ckpt["args"].get("latent", "vector"),
                  "examples": ckpt["examples"]}
        print(f"probe accuracy {result['test_accuracy']:.3f} held-out, {result['train_accuracy']:.3f} train "
              f"(majority class {result['majority']:.3f}; {len(classes)} classes, z of {result['z_dims']} numbers)")
        writers = {}
        if args.manipulate is not None:
            c = args.manipulate
            rows, moved = manipulation(model, probe, test_images[:args.n_manipulate], c, args.strengths, args.steps)
            result["manipulation"] = {"class": classes[c], "strengths": args.strengths, "logit_after_reencoding": moved,
                                      "steps": args.steps, "n": rows.shape[1]}
            print(f"class {classes[c]!r}: probe logit of the re-encoded images " +
                  ", ".join(f"s={s:g}: {m:.2f}" for s, m in zip(args.strengths, moved)))
            if args.grid:
                from torchvision.utils import save_image
                grid = rows.flatten(0, 1).float() / 255
                writers[args.grid] = lambda f: save_image(grid, f, format="png", nrow=rows.shape[1], padding=1)
        if args.json:
            writers[args.json] = lambda f: f.write(json.dumps(result, indent=2).encode())
        write_all(writers)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
