"""New images from a diffusion autoencoder: DiffAE's latent DDIM (Preechakul et al. 2022 §3.3; ../shared/PAPERS.md §6).

The autoencoder alone cannot generate: its decoder needs a z. DiffAE fits a second, small diffusion
model to the distribution of z over the training set and samples it:
  1. z of every training image, normalised per dimension:  z_norm = (z - mean) / std  ("z-normalize")
  2. an MLP eps-predictor on z_norm: linear beta schedule (T = 1000), x_t = alpha_t z_norm + sigma_t eps,
     loss || eps_hat(x_t, t) - eps ||^2
  3. z_norm ~ DDIM (20 steps, no clipping) from N(0, I);  z = mean + std * z_norm
  4. the image: the autoencoder's DDIM decoding of z from x_T ~ N(0, I).
The MLP (DiffAE's): `layers` blocks of Linear -> LayerNorm -> h (1 + emb_t) -> SiLU, the input z_norm
concatenated to every block's input (skip), the time embedding (sinusoidal, then an MLP) scaling each
block. DiffAE uses 10 x 2048 units and tens of millions of samples; the defaults here are CPU-sized.

A generator must not copy its training set: the report gives, for samples and for held-out images,
the pixel distance to the nearest training image (samples much closer than held-out images would be copies).

    python latent_sampler.py --ckpt runs/recipes/2-paper/ckpt.pt --data ../shared/data/cifar10-jpeg/train \\
        --out runs/recipes/2-paper/latent.pt --grid figures/samples.png --json results/samples.json
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from plumbing.checkpoint import build_model, load_checkpoint, weights_digest
from plumbing.cli import HelpFormatter, check_apart, check_numbers, check_output, write_all
from plumbing.device import pick_device
from plumbing.run_folder import refuse_busy
from data import load_images, to_float, to_uint8
from probe import encode_all
from sample import ddim_decode
from schedules import Schedule, bcast, time_grid, to_x0_eps
from unet import timestep_embedding


# the flags that decide what latent model is trained (a saved one is used only for the same)
TRAINING_FLAGS = ("examples", "hidden", "layers", "lr", "seed")


class LatentDenoiser(nn.Module):
    """eps_hat(x_t, t) for vectors: DiffAE's skip-connected MLP (module docstring)."""

    def __init__(self, dim: int, hidden: int = 512, layers: int = 4, emb_dim: int = 64):
        super().__init__()
        self.dim, self.hidden, self.layers, self.emb_dim = dim, hidden, layers, emb_dim
        self.schedule = Schedule("linear")  # DiffAE's latent DDIM: linear beta, T = 1000
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.scales = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.blocks = nn.ModuleList(nn.Linear((dim if i == 0 else hidden + dim), hidden) for i in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.out = nn.Linear(hidden + dim, dim)

    def forward(self, x_t, t):
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))                  # (B, hidden)
        h = x_t
        for i, (block, norm, scale) in enumerate(zip(self.blocks, self.norms, self.scales)):
            # the input is concatenated to every block's input but the first (which is the input)
            h = norm(block(h if i == 0 else torch.cat([h, x_t], 1)))              # (B, hidden)
            # the time embedding scales the block: h (1 + emb_t)
            h = F.silu(h * (1 + scale(emb)))
        return self.out(torch.cat([h, x_t], 1))                                    # (B, dim)

    def predict(self, x_t, t, z=None):
        """(x0_hat, eps_hat): the signature of DiffusionAutoencoder.predict, so that sample.ddim_decode runs it."""
        alpha, sigma = (bcast(a, x_t) for a in self.schedule.alpha_sigma(t))
        return to_x0_eps("eps", self(x_t, t), x_t, alpha, sigma, rf=False)

    def loss(self, x0):
        t = torch.rand(x0.shape[0], device=x0.device)
        eps = torch.randn_like(x0)
        alpha, sigma = (bcast(a, x0) for a in self.schedule.alpha_sigma(t))
        # x_t = alpha_t x_0 + sigma_t eps;  loss = || eps_hat - eps ||^2
        return F.mse_loss(self(alpha * x0 + sigma * eps, t), eps)

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "layers": self.layers, "emb_dim": self.emb_dim}


def train_latent(net, z_norm, examples, batch_size=128, lr=1e-4, seed=0):
    """Adam on the eps-prediction loss over random batches of z_norm (N, D); the losses, one per step.
    The learning rate decays linearly to 0 (DiffAE keeps it constant): near t = 1, x0_hat = (x_t - sigma eps_hat)
    / alpha multiplies the error of eps_hat by 1 / alpha_1 = 157, and on the toy test set a constant rate left
    the sampled covariance up to 77% off, the decayed one at most 26%."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = max(1, examples // batch_size)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(steps), desc="latent DDIM training", unit="step", leave=False, dynamic_ncols=True):
        batch = z_norm[torch.randint(len(z_norm), (batch_size,), generator=g)]
        loss = net.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay.step()
        losses.append(loss.item())
    return losses


@torch.inference_mode()
def sample_latents(net, n, steps=20, generator=None):
    """z_norm ~ DDIM (no clipping, as DiffAE) from x_T ~ N(0, I): (n, dim)."""
    x_T = torch.randn(n, net.dim, generator=generator).to(next(net.parameters()).device)
    return ddim_decode(net, x_T, None, time_grid(steps, device=x_T.device), clip=None)


def nearest(images_u8, train_u8, batch=64):
    """Per image, the root-mean-square pixel distance (0..255) to its nearest training image, and that image's index."""
    a, b = images_u8.flatten(1).float(), train_u8.flatten(1).float()
    found = [torch.cdist(a[i:i + batch], b).min(1) for i in range(0, len(a), batch)]
    return torch.cat([f.values for f in found]) / a.shape[1] ** 0.5, torch.cat([f.indices for f in found])


def main(argv=None):
    p = argparse.ArgumentParser(description="Sample new images with DiffAE's latent DDIM.",
                                formatter_class=HelpFormatter)
    p.add_argument("--ckpt", required=True, help="the autoencoder: a train.py checkpoint")
    p.add_argument("--data", required=True, help="the images it was trained on ('cifar10' or a folder)")
    p.add_argument("--out", required=True, help="the latent model's file: trained and written if absent, else loaded")
    p.add_argument("--overwrite", action="store_true", help="train again even if --out exists (replaced at the end)")
    p.add_argument("--examples", type=int, default=2_000_000, help="training examples of the latent model")
    p.add_argument("--hidden", type=int, default=512, help="MLP width (DiffAE: 2048)")
    p.add_argument("--layers", type=int, default=4, help="MLP blocks (DiffAE: 10 or 20)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (DiffAE's)")
    p.add_argument("--n", type=int, default=64, help="images to sample")
    p.add_argument("--latent-steps", type=int, default=20, help="DDIM steps of the latent model (DiffAE: 20)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the image decoder")
    p.add_argument("--seed", type=int, default=0, help="seed for training batches and for sampling")
    p.add_argument("--grid", help="PNG: the samples, each above its nearest training image")
    p.add_argument("--json", help="write the report (nearest-neighbour distances, losses) here")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    args = p.parse_args(argv)
    try:
        check_numbers(args)
        check_apart({"--out": args.out, "--grid": args.grid, "--json": args.json}, {"--ckpt": args.ckpt, "--data": args.data})
        refuse_busy([args.out, args.grid, args.json])
        for flag in ("examples", "hidden", "layers", "n", "latent_steps", "steps"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
        if not args.lr > 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        for flag in ("json", "grid"):
            check_output(getattr(args, flag), "--" + flag)
        check_output(args.out, "--out")
        ckpt = load_checkpoint(args.ckpt)
        # what a latent model is trained for: this checkpoint's EMA weights, and these flags
        identity = {"ema_sha256": weights_digest(ckpt["ema"]), **{k: getattr(args, k) for k in TRAINING_FLAGS}}
        if os.path.exists(args.out) and not args.overwrite:  # checked before any work: whose latent model is it?
            try:
                saved = torch.load(args.out, map_location="cpu", weights_only=True)
                owner, trained_for = saved.get("checkpoint", ""), saved.get("trained_for", {})
            except Exception:  # any unreadable file: not ours
                raise ValueError(f"--out {args.out} is not a latent model written by latent_sampler.py: "
                                 f"pass --overwrite to replace it, or another --out") from None
            if trained_for.get("ema_sha256") != identity["ema_sha256"]:
                raise ValueError(f"--out {args.out} holds the latent model of {owner or 'another checkpoint'}, not of "
                                 f"{args.ckpt} as it is now: pass --overwrite to train one for it, or another --out")
            differ = [f"--{k.replace('_', '-')} {trained_for.get(k)}" for k in TRAINING_FLAGS if trained_for.get(k) != identity[k]]
            if differ:
                raise ValueError(f"--out {args.out} was trained with {', '.join(differ)}: pass those flags to use it, "
                                 f"or --overwrite to train it again with these")
        device = pick_device(args.device)
        torch.manual_seed(args.seed)
        model = build_model(ckpt, "ema").to(device)
        holdout, size = ckpt["args"].get("holdout", 1000), model.cfg.net.image_size
        train_u8 = load_images(args.data, "train", holdout, size)
        report = {"checkpoint": args.ckpt, "data": args.data, "n": args.n, "latent_steps": args.latent_steps,
                  "steps": args.steps, "seed": args.seed}
        if os.path.exists(args.out) and not args.overwrite:
            saved = torch.load(args.out, map_location="cpu", weights_only=True)
            net = LatentDenoiser(**saved["config"])
            net.load_state_dict(saved["net"])
            mean, std, losses = saved["mean"], saved["std"], saved["losses"]
            print(f"loaded the latent model {args.out} (--overwrite trains it again)")
        else:
            z = encode_all(model, train_u8)                                       # (N, D)
            # DiffAE's z-normalize: per dimension, over the training set
            mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
            net = LatentDenoiser(z.shape[1], args.hidden, args.layers).to(device)
            losses = train_latent(net, ((z - mean) / std).to(device), args.examples, lr=args.lr, seed=args.seed)
            if not all(math.isfinite(v) for v in losses):
                raise ValueError("the latent model's loss became non-finite: nothing was written; try a lower --lr")
            state = {"config": net.config(), "net": net.state_dict(), "mean": mean, "std": std, "losses": losses,
                     "checkpoint": args.ckpt, "examples": args.examples, "trained_for": identity}
            write_all({args.out: lambda f: torch.save(state, f)})
        net = net.to(device).eval()
        g = torch.Generator().manual_seed(args.seed)
        z = mean + std * sample_latents(net, args.n, args.latent_steps, g).cpu()
        if not torch.isfinite(z).all():
            raise ValueError(f"the latent model {args.out} samples non-finite latents: its weights are broken; "
                             f"pass --overwrite to train it again")
        x_T = torch.randn(args.n, 3, size, size, generator=g).to(device)
        z_shape = model.encode(to_float(train_u8[:1]).to(device)).shape[1:]
        with torch.inference_mode():
            y0 = ddim_decode(model, x_T, z.view(args.n, *z_shape).to(device), time_grid(args.steps, device=device),
                             clip=model.cfg.gamma)
        samples = to_uint8(model.to_data(y0)).cpu()
        heldout = load_images(args.data, "heldout", holdout, size)[:args.n]
        (d_samples, i_samples), (d_heldout, _) = nearest(samples, train_u8), nearest(heldout, train_u8)
        report.update(latent_examples=args.examples, final_loss=sum(losses[-100:]) / len(losses[-100:]),
                      nearest_train_rms_samples=float(d_samples.mean()),
                      nearest_train_rms_heldout=float(d_heldout.mean()),
                      min_nearest_train_rms_samples=float(d_samples.min()))
        print(f"{args.n} samples: RMS pixel distance to the nearest training image {d_samples.mean():.1f} "
              f"(held-out images: {report['nearest_train_rms_heldout']:.1f}; closest sample {d_samples.min():.1f})")
        writers = {}
        if args.grid:
            from torchvision.utils import save_image
            k, neighbours = min(16, args.n), train_u8[i_samples]
            # whole rows of k samples, each row above the row of their nearest training images
            rows = torch.cat([torch.cat([samples[i:i + k], neighbours[i:i + k]])
                              for i in range(0, args.n - k + 1, k)]).float() / 255
            writers[args.grid] = lambda f: save_image(rows, f, format="png", nrow=k, padding=1)
        if args.json:
            writers[args.json] = lambda f: f.write(json.dumps(report, indent=2).encode())
        write_all(writers)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
