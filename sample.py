"""DDIM decoding and encoding (Song et al. 2021, eta = 0), latent interpolation, and a CLI for grids.

Every sampler takes (model, x, z, ts): the model's `predict(x_t, t, z) -> (x0_hat, eps_hat)`, a
batch x, the latent z, and a time grid ts (schedules.time_grid). One deterministic DDIM step from
time t to time s re-noises the current estimate of x_0 with the current estimate of eps:
    x_s = alpha_s x0_hat + sigma_s eps_hat
For rectified flow this is exactly an Euler step of the flow ODE, x_s = x_t + (s - t) v_hat.

Reconstruction as in Khungurn et al. 2025: z = Enc(x_0), then ddim_decode from x_T ~ N(0, I)
("stochastic encoding"), or from x_T = ddim_encode(x_0) (DDIM inversion, more accurate).
The samplers run in the diffusion's own space, y_0 = gamma x_0 (dae.py; the data when gamma = 1):
reconstruct and interpolate convert at the ends.
"""
import argparse
import os
import sys

import torch

from plumbing.cli import HelpFormatter, add_source_flags, check_apart, check_output, load_source, write_all
from plumbing.run_folder import refuse_busy
from schedules import bcast, time_grid


def ddim_step(model, x, z, t, s, clip):
    """One DDIM step of the whole batch from time t to time s (Python floats; no host sync).
    clip: x0_hat is clamped to [-clip, clip] (None or 0: not clamped)."""
    (alpha_t, alpha_s), (sigma_t, sigma_s) = (v.tolist() for v in model.schedule.alpha_sigma(
        torch.tensor([t, s], dtype=torch.float64)))
    # BEGIN EXERCISE 5
    x0_hat, eps_hat = model.predict(x, torch.full((x.shape[0],), t, device=x.device), z)
    if clip:
        # As in DDPM/DiffAE sampling: keep x0_hat in the data range [-clip, clip] (clip = gamma in
        # the diffusion's space), and make eps_hat agree with it.
        x0_hat = x0_hat.clamp(-clip, clip)
        if sigma_t > 0:
            eps_hat = (x - alpha_t * x0_hat) / sigma_t
    # DDIM, eta = 0: x_s = alpha_s x0_hat + sigma_s eps_hat
    return alpha_s * x0_hat + sigma_s * eps_hat
    # END EXERCISE 5


@torch.inference_mode()
def ddim_decode(model, x_T, z, ts, clip=1.0):
    """DDIM sampling (Song et al. 2021, eq. 12 with eta = 0): x_T at ts[0] = 1 down to x_0 at ts[-1] = 0."""
    x = x_T
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = ddim_step(model, x, z, t, s, clip)
    return x


@torch.inference_mode()
def ddim_encode(model, x0, z, ts, clip=None):
    """DDIM inversion: the same deterministic steps run from t = 0 up to t = 1, each using the
    prediction at the lower-noise end (so it is exact only in the limit of many steps).
    ts is the decoding grid (1 -> 0); it is walked in reverse."""
    # BEGIN EXERCISE 6
    ts = ts.flip(0)
    x = x0
    for s, t in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = ddim_step(model, x, z, s, t, clip)
    return x
    # END EXERCISE 6


def slerp(a, b, w):
    """Spherical interpolation between noise tensors a and b (DiffAE interpolates x_T this way)."""
    # BEGIN EXERCISE 7
    a_flat, b_flat = a.flatten(1), b.flatten(1)
    cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1, 1))
    theta = bcast(theta, a)
    sin = torch.sin(theta).clamp_min(1e-8)
    return torch.where(theta < 1e-4, (1 - w) * a + w * b,
                       (torch.sin((1 - w) * theta) * a + torch.sin(w * theta) * b) / sin)
    # END EXERCISE 7


@torch.inference_mode()
def interpolate(model, x_a, x_b, n, ts):
    """n images from x_a to x_b: z interpolated linearly, the inverted x_T spherically."""
    both = torch.stack([x_a, x_b])
    z = model.encode(both)
    x_T = ddim_encode(model, model.to_diffusion(both), z, ts)
    w = torch.linspace(0, 1, n, device=x_a.device)
    z_w = torch.stack([torch.lerp(z[0], z[1], float(wi)) for wi in w])                 # (n, *z.shape[1:])
    x_w = torch.cat([slerp(x_T[:1], x_T[1:], float(wi)) for wi in w])                 # (n, C, H, W)
    return model.to_data(ddim_decode(model, x_w, z_w, ts, clip=model.cfg.gamma))


@torch.inference_mode()
def reconstruct(model, x0, ts, mode="stochastic", generator=None):
    """Encode x0 to z, then DDIM-decode from random x_T ('stochastic') or from inverted x_T ('inversion')."""
    z = model.encode(x0)
    if mode == "stochastic":
        x_T = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
    elif mode == "inversion":
        x_T = ddim_encode(model, model.to_diffusion(x0), z, ts)
    else:
        raise ValueError(f"unknown mode {mode!r}: choose stochastic or inversion")
    return model.to_data(ddim_decode(model, x_T, z, ts, clip=model.cfg.gamma))


def save_grid(model, x_show, path, steps=20):
    """Originals above their reconstructions (random x_T with a fixed seed): train.py's progress grids."""
    from torchvision.utils import save_image
    rec = reconstruct(model, x_show, time_grid(steps, device=x_show.device), "stochastic",
                      torch.Generator().manual_seed(0))
    save_image((torch.cat([x_show, rec]).float() + 1) / 2, path, nrow=x_show.shape[0], padding=1)


def main(argv=None):
    p = argparse.ArgumentParser(description="Reconstruction and interpolation grids from a checkpoint.",
                                formatter_class=HelpFormatter)
    add_source_flags(p, n_default=8)
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    args = p.parse_args(argv)
    try:
        from torchvision.utils import save_image

        from data import to_float
        out = args.out or os.path.dirname(os.path.abspath(args.ckpt))
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file; give a folder")
        paths = [os.path.join(out, "reconstructions.png"), os.path.join(out, "interpolation.png")]
        for path in paths:
            check_output(path, "--out")
        check_apart({"--out": paths[0], "--out ": paths[1]}, {"--ckpt": args.ckpt, "--data": args.data})
        refuse_busy(paths)
        if args.n < 2:
            raise ValueError("--n must be at least 2 (the interpolation strip runs between two images)")
        ckpt, model, images = load_source(args)
        x0 = to_float(images).to(next(model.parameters()).device)
        ts = time_grid(args.steps, args.time_grid)
        g = torch.Generator().manual_seed(args.seed)
        rec_random = reconstruct(model, x0, ts, "stochastic", g)
        rec_inverted = reconstruct(model, x0, ts, "inversion")
        rows = torch.cat([x0, rec_random, rec_inverted])                        # (3n, C, H, W)
        strip = interpolate(model, x0[0], x0[1], 8, ts)                         # (8, C, H, W)
        write_all({paths[0]: lambda f: save_image((rows + 1) / 2, f, format="png", nrow=len(x0), padding=1),
                   paths[1]: lambda f: save_image((strip + 1) / 2, f, format="png", nrow=8, padding=1)})
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {paths[0]} (rows: original | random x_T | inverted x_T; {len(x0)} images, "
          f"{args.steps} DDIM steps, {args.weights} weights) and {paths[1]}")


if __name__ == "__main__":
    main()
