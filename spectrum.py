"""Block-DCT spectra of images and latents, and a sharpness figure that needs no pretrained network.

Skorokhodov et al. 2025 ("Improving the Diffusability of Autoencoders", ../shared/PAPERS.md §4) read
the frequency content of an image or a latent this way:
    split every channel into B x B blocks (B = 8), take the 2-D DCT-II of each block,
        D = C X C^T,   C[k, n] = a_k cos(pi (2n + 1) k / (2B)),   a_0 = sqrt(1/B), a_k = sqrt(2/B)
    (orthonormal: X = C^T D C), order the B^2 coefficients in JPEG's zigzag and average the
    normalised amplitude |D_uv| / |D_00| over blocks, channels and images: a curve of B^2 values.
Natural images decay along it; autoencoder latents are flat, with strong high frequencies.
We divide the mean |D_uv| by the mean |D_00| instead of averaging per-block ratios (the paper is
silent on the order): a latent block whose mean is near zero would make its own ratio, and the curve, explode.

Sharpness (this repo's own definition, written into every eval.py record): the high-frequency DCT
energy of the reconstructions over that of the originals, on the same images,
    sharpness = sum_{images, channels, blocks} sum_{u+v >= B/2} D_uv(recon)^2 / (the same of the originals)
on pixel values in [0, 1] with 8 x 8 blocks: the 54 of 64 coefficients outside the lowest four diagonals.
1.0: as much fine detail as the data; below 1: blurrier; above 1: more high-frequency energy than the
data (noise, ringing). It says how much detail there is, not whether it is the right detail (PSNR says
that), and it is not FID.

    python spectrum.py --npz runs/recipes/2-paper/eval-stochastic.npz          # sharpness + curves of an eval
    python spectrum.py --ckpt runs/recipes/5-paper-spatial/ckpt.pt --data PATH --json spectra.json  # + latent
"""
import argparse
import json
import math
import sys

import numpy as np
import torch


def dct_matrix(B: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix C (B, B): row k is the k-th cosine basis vector."""
    n = torch.arange(B, dtype=torch.float64)
    k = n[:, None]
    # C[k, n] = a_k cos(pi (2n + 1) k / (2B))
    C = torch.cos(math.pi * (2 * n + 1) * k / (2 * B))                         # (B, B)
    C[0] *= math.sqrt(1 / B)
    C[1:] *= math.sqrt(2 / B)
    return C


def zigzag(B: int) -> list:
    """JPEG's zigzag order of a B x B block as (u, v) pairs: diagonal u + v = s after diagonal,
    alternating direction ((0,0), (0,1), (1,0), (2,0), (1,1), (0,2), ...)."""
    order = []
    for s in range(2 * B - 1):
        diagonal = [(u, s - u) for u in range(max(0, s - B + 1), min(s, B - 1) + 1)]
        order.extend(diagonal if s % 2 else diagonal[::-1])
    return order


def block_dct(x: torch.Tensor, B: int = 8) -> torch.Tensor:
    """2-D DCT-II of every B x B block of every channel: (N, C, H, W) -> (N, C, H/B, W/B, B, B)."""
    N, Ch, H, W = x.shape
    if H % B or W % B:
        raise ValueError(f"a {H}x{W} map does not split into {B}x{B} blocks")
    blocks = x.double().reshape(N, Ch, H // B, B, W // B, B).transpose(3, 4)  # (N, C, H/B, W/B, B, B)
    C = dct_matrix(B).to(x.device)
    # D = C X C^T
    return C @ blocks @ C.T


def block_idct(D: torch.Tensor) -> torch.Tensor:
    """The inverse of block_dct: (N, C, H/B, W/B, B, B) -> (N, C, H, W)."""
    N, Ch, h, w, B, _ = D.shape
    C = dct_matrix(B).to(D.device)
    # X = C^T D C
    blocks = C.T @ D @ C
    return blocks.transpose(3, 4).reshape(N, Ch, h * B, w * B)


def spectrum(x: torch.Tensor, B: int = 8) -> torch.Tensor:
    """The mean normalised DCT amplitude in zigzag order, (B^2,), of a batch of maps (N, C, H, W);
    spectrum[0] = 1. B must divide H and W (use a smaller B for small latents)."""
    amplitude = block_dct(x, B).abs().mean(dim=(0, 1, 2, 3))                   # (B, B)
    u, v = zip(*zigzag(B))
    curve = amplitude[list(u), list(v)]                                       # (B^2,)
    # mean |D_uv| / mean |D_00| (see the module docstring)
    return (curve / curve[0].clamp_min(1e-12)).float()


def high_frequency_energy(x: torch.Tensor, B: int = 8) -> float:
    """Sum of D_uv^2 over u + v >= B/2, all blocks, channels and images of x (N, C, H, W)."""
    D = block_dct(x, B)
    u = torch.arange(B, device=x.device)
    high = (u[:, None] + u[None, :]) >= B // 2                                 # (B, B)
    return float(D.pow(2)[..., high].sum())


def sharpness(originals_u8: torch.Tensor, recon_u8: torch.Tensor, B: int = 8, batch: int = 500) -> float:
    """High-frequency energy of reconstructions over that of their originals (module docstring),
    on uint8 batches (N, C, H, W) mapped to [0, 1]."""
    if originals_u8.shape != recon_u8.shape:
        raise ValueError(f"originals {tuple(originals_u8.shape)} and reconstructions {tuple(recon_u8.shape)} differ")
    e_recon = e_orig = 0.0
    for i in range(0, len(originals_u8), batch):
        e_recon += high_frequency_energy(recon_u8[i:i + batch].double() / 255, B)
        e_orig += high_frequency_energy(originals_u8[i:i + batch].double() / 255, B)
    return e_recon / max(e_orig, 1e-12)


def block_for(x: torch.Tensor, B: int = 8) -> int:
    """B, or the map's side when it is smaller (a 4x4 latent is one 4x4 block)."""
    return min(B, x.shape[-2], x.shape[-1])


def npz_report(path: str) -> dict:
    """Sharpness and spectra of an eval.py --save file (originals and one or more reconstructions)."""
    try:
        saved = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--npz {path} is not readable ({type(e).__name__}); write one with eval.py --save") from None
    if "originals" not in saved:
        raise ValueError(f"--npz {path} has no 'originals': write it with eval.py --save")
    originals = torch.from_numpy(saved["originals"])
    report = {"originals": {"spectrum": spectrum(originals.double() / 255).tolist()}}
    for key in saved.files:
        if key.startswith("reconstructions"):
            recon = torch.from_numpy(saved[key])
            report[key] = {"sharpness": sharpness(originals, recon),
                           "spectrum": spectrum(recon.double() / 255).tolist()}
    return report


@torch.inference_mode()
def latent_report(args) -> dict:
    """Spectra of held-out images and of a checkpoint's latent (z = mu for a KL latent)."""
    from plumbing.cli import load_source  # only the CLI loads checkpoints: spectrum.py's functions stay dependency-free

    ckpt, model, images = load_source(args)
    device = next(model.parameters()).device
    from data import to_float
    zs = torch.cat([model.encode(to_float(images[i:i + 250]).to(device)).cpu() for i in range(0, len(images), 250)])
    report = {"checkpoint": args.ckpt, "n": len(images), "latent_shape": list(zs.shape[1:]),
              "originals": {"spectrum": spectrum(images.double() / 255).tolist(), "block": 8}}
    if zs.dim() == 4:
        B = block_for(zs)
        report["latent"] = {"spectrum": spectrum(zs, B).tolist(), "block": B}
    return report


def main(argv=None):
    from plumbing.cli import HelpFormatter, check_output, write_all
    p = argparse.ArgumentParser(description="Block-DCT spectra (Skorokhodov et al. 2025) and sharpness.",
                                formatter_class=HelpFormatter)
    p.add_argument("--npz", help="an eval.py --save file: sharpness and spectra of its reconstructions")
    p.add_argument("--json", help="write the report here (default: print it)")
    p.add_argument("--ckpt", help="a train.py checkpoint: spectra of --data's images and of its spatial latent")
    p.add_argument("--data", default="cifar10", help="'cifar10' or a folder of images (with --ckpt)")
    p.add_argument("--split", default="heldout", choices=["train", "heldout", "all"], help="which images (with --ckpt)")
    p.add_argument("--n", type=int, default=500, help="images (the first n of the split)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"], help="EMA or raw weights")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    args = p.parse_args(argv)
    args.holdout, args.steps = None, 1  # load_source's other inputs: the checkpoint's split; no decoding
    try:
        if (args.npz is None) == (args.ckpt is None):
            raise ValueError("pass one of --npz (an eval.py --save file) or --ckpt (with --data)")
        check_output(args.json, "--json")
        report = npz_report(args.npz) if args.npz else latent_report(args)
        for key, r in report.items():
            if isinstance(r, dict) and "sharpness" in r:
                print(f"{key}: sharpness {r['sharpness']:.3f}")
        text = json.dumps(report, indent=1)
        if args.json:
            write_all({args.json: lambda f: f.write(text.encode())})
        else:
            print(text)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
