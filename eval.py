"""Reconstruction metrics of a diffusion autoencoder: PSNR, SSIM, sharpness (and FID with pytorch-fid).

Two conventions, both in every record (SSIM: Wang et al. 2004, an 11x11 Gaussian window, sigma = 1.5,
K1 = 0.01, K2 = 0.03, per channel and pixel, then the mean over images):
    psnr_diffae, ssim_diffae  DiffAE's own evaluation code (phizaz/diffae metrics.py and ssim.py), which
         the Khungurn et al. paper's numbers come from: floats in [0, 1] by (x + 1)/2, not rounded; SSIM as a
         zero-padded convolution of the image's size (padding 5); PSNR = 20 log10(1 / sqrt(MSE)) per image.
         Compare with the papers in this one.
    psnr, ssim  ours, kept for every older table: images rounded to uint8, PSNR = 10 log10(255^2 / MSE);
         SSIM at valid positions only (scikit-image's crop: 22 x 22 of a 32 x 32 image), so it reads lower.
    sharpness  high-frequency DCT energy of the reconstructions over that of the originals (spectrum.py):
         1 = as detailed as the data, < 1 blurrier (noise raises it too).
    fd_classifier  the Fréchet distance between originals and reconstructions in the features of the repo's
         own CIFAR-10 classifier (plumbing/frechet.py): 0 for identical sets, it grows with blur and with noise.
         Not FID, not comparable with published FIDs; 32 x 32 images only (null otherwise).
Reconstruction: z = Enc(x_0), x_T random ('stochastic') or DDIM-inverted ('inversion'), DDIM decode.

    python eval.py --ckpt runs/dae/ckpt.pt --data PATH --split heldout --n 1000 --steps 50 \
        --mode stochastic --json out.json --save out.npz --grid out.png
    python eval.py --ckpt runs/dae/ckpt.pt --data PATH --steps 1,2,3,5,10,50 --json steps.json   # a record per count
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from plumbing.cli import HelpFormatter, add_source_flags, check_apart, check_output, load_source, write_all
from plumbing.frechet import WEIGHTS, fd_classifier, load_classifier
from plumbing.run_folder import refuse_busy
from data import to_float, to_uint8
from sample import reconstruct
from spectrum import sharpness
from schedules import time_grid


def psnr(a_u8: torch.Tensor, b_u8: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 batches (B, C, H, W); +inf for identical images."""
    mse = (a_u8.double() - b_u8.double()).pow(2).flatten(1).mean(1)
    # PSNR = 10 log10(MAX^2 / MSE), MAX = 255
    return 10 * torch.log10(255.0 ** 2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()                                                           # (size,)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0, padding: int = 0) -> torch.Tensor:
    """Per-image SSIM of batches (B, C, H, W): local statistics under a Gaussian window, per channel,
    averaged over channels and positions. padding 0: valid positions only (scikit-image's crop);
    padding 5: a zero-padded window at every pixel (DiffAE's ssim.py)."""
    # BEGIN EXERCISE 8
    x, y = a.double(), b.double()
    C = x.shape[1]
    g = gaussian_window()
    # separable Gaussian filter, one per channel
    kh = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1).to(x.device)                    # (C, 1, 1, 11)
    kv = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1).to(x.device)                    # (C, 1, 11, 1)

    def blur(u):  # zero padding of a separable filter is the 2-D filter's zero padding
        return F.conv2d(F.conv2d(u, kh, padding=(0, padding), groups=C), kv, padding=(padding, 0), groups=C)

    mu_x, mu_y = blur(x), blur(y)
    # population (biased) local variances and covariance: E[x^2] - E[x]^2
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # SSIM = (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))
    s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)                                       # (B,)
    # END EXERCISE 8


def psnr_diffae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, DiffAE's way: of float images in [-1, 1] mapped to [0, 1], not rounded."""
    # PSNR = 20 log10(MAX / sqrt(MSE)), MAX = 1
    mse = ((x.double() + 1) / 2 - (y.double() + 1) / 2).pow(2).flatten(1).mean(1)
    return 20 * torch.log10(1.0 / torch.sqrt(mse))


def ssim_diffae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, DiffAE's way: float images in [-1, 1] mapped to [0, 1], zero-padded window."""
    return ssim((x + 1) / 2, (y + 1) / 2, data_range=1.0, padding=5)


def inception(device):
    """pytorch-fid's Inception (an optional dependency), loaded before any work: fails in one sentence."""
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError:
        raise ValueError("--fid needs pytorch-fid: pip install -r requirements-extras.txt") from None
    try:
        return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    except Exception as e:
        raise OSError(f"--fid could not load the Inception weights (no network? {type(e).__name__}); "
                      f"the other metrics need no download, run without --fid") from None


def fid(net, real_u8: torch.Tensor, fake_u8: torch.Tensor, device) -> float:
    """FID between two uint8 image sets with pytorch-fid's Inception network `net`."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    def features(u8):
        out = []
        with torch.inference_mode():
            for i in range(0, len(u8), 100):
                out.append(net(u8[i:i + 100].to(device).float() / 255)[0].flatten(1).double().cpu())
        return torch.cat(out).numpy()

    f_real, f_fake = features(real_u8), features(fake_u8)
    return float(calculate_frechet_distance(f_real.mean(0), np.cov(f_real, rowvar=False),
                                            f_fake.mean(0), np.cov(f_fake, rowvar=False)))


def reconstruct_all(model, images_u8, mode, steps, batch_size, seed, device, grid="uniform"):
    """Float reconstructions in [-1, 1] of a uint8 image set; x_T drawn from one seeded CPU generator. A bar
    counts network evaluations (steps per image, twice as many with inversion)."""
    ts = time_grid(steps, grid)
    g = torch.Generator().manual_seed(seed)
    per_image = steps * (2 if mode == "inversion" else 1)
    bar = tqdm(total=len(images_u8) * per_image, desc=f"{mode} reconstruction", unit="img-step", unit_scale=True,
               dynamic_ncols=True, leave=False)
    out = []
    with bar:
        for i in range(0, len(images_u8), batch_size):
            x0 = to_float(images_u8[i:i + batch_size]).to(device)
            x0_hat = reconstruct(model, x0, ts, mode, g)
            if not torch.isfinite(x0_hat).all():  # uint8 would hide it: NaN turns into some pixel value
                raise ValueError("the model's reconstructions are not finite (NaN or inf): its weights are "
                                 "broken, and no figure of it would mean anything")
            out.append(x0_hat.float().cpu())
            bar.update(len(x0) * per_image)
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(description="PSNR / SSIM (/ FID) of a checkpoint's reconstructions.",
                                formatter_class=HelpFormatter)
    add_source_flags(p, n_default=1000, many_steps=True)
    p.add_argument("--mode", default="stochastic", choices=["stochastic", "inversion"],
                   help="x_T random, or DDIM-inverted from the image")
    p.add_argument("--batch-size", type=int, default=250, help="images per batch")
    p.add_argument("--fid", action="store_true", help="also FID between originals and reconstructions (pytorch-fid)")
    p.add_argument("--classifier", default=WEIGHTS, help="the classifier of fd_classifier "
                   "(tools/train_classifier.py; default: the committed models/classifier.pt)")
    p.add_argument("--json", help="write the figures and the protocol to this JSON file")
    p.add_argument("--save", help="write uint8 originals and reconstructions to this .npz")
    p.add_argument("--grid", help="write a comparison grid (originals above reconstructions) to this PNG")
    args = p.parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
        for flag in ("json", "save", "grid"):  # checked now, written together at the end
            check_output(getattr(args, flag), "--" + flag)
        check_apart({f"--{k}": getattr(args, k) for k in ("json", "save", "grid")}, {"--ckpt": args.ckpt, "--data": args.data})
        refuse_busy([args.json, args.save, args.grid])
        classifier = load_classifier(args.classifier)
        ckpt, model, images = load_source(args)
        device = next(model.parameters()).device
        inception_net = inception(device) if args.fid else None
        if tuple(images.shape[1:]) != (3, 32, 32):  # its features mean nothing at other sizes
            classifier = None
        a = ckpt["args"]
        results, recons = [], {}
        for steps in args.steps:  # the same x_T (one seed) for every step count
            t0 = time.time()
            recon_float = reconstruct_all(model, images, args.mode, steps, args.batch_size, args.seed, device,
                                          args.time_grid)
            seconds = time.time() - t0
            recon = to_uint8(recon_float)
            p_img, s_img = psnr(images, recon), ssim(images, recon)
            p_diffae, s_diffae = psnr_diffae(to_float(images), recon_float), ssim_diffae(to_float(images), recon_float)
            result = {"psnr_diffae": float(p_diffae.mean()), "ssim_diffae": float(s_diffae.mean()),
                      "psnr": float(p_img.mean()), "ssim": float(s_img.mean()),
                      "psnr_std": float(p_img.std()), "ssim_std": float(s_img.std()),
                      "sharpness": sharpness(images, recon),
                      "fd_classifier": fd_classifier(classifier, images, recon) if classifier else None,
                      "mode": args.mode, "steps": steps, "time_grid": args.time_grid, "n": len(images),
                      "seed": args.seed, "weights": args.weights, "checkpoint": args.ckpt, "data": args.data,
                      "split": args.split, "holdout": args.holdout, "schedule": a["schedule"], "pred": a["pred"],
                      "phase1_frac": a["phase1_frac"], "z_dim": a["z_dim"], "latent": a.get("latent", "vector"),
                      "recipe": a.get("recipe"), "examples": ckpt["examples"],
                      "train_precision": ckpt.get("precision"), "train_seconds": ckpt.get("elapsed"),
                      "eval_seconds": seconds}
            if args.fid:
                result["fid"] = fid(inception_net, images, recon, device)
            results.append(result)
            recons[steps] = recon
            print(f"DiffAE's convention: PSNR {result['psnr_diffae']:.2f} dB  SSIM {result['ssim_diffae']:.4f} | "
                  f"ours (uint8, valid SSIM): PSNR {result['psnr']:.2f}  SSIM {result['ssim']:.4f} | "
                  f"sharpness {result['sharpness']:.3f}"
                  + (f"  FD (repo classifier, not FID) {result['fd_classifier']:.2f}" if classifier else "")
                  + (f"  FID {result['fid']:.2f}" if "fid" in result else "")
                  + f"  ({args.mode}, {steps} DDIM steps, {len(images)} images of {args.data} [{args.split}], "
                    f"{args.weights} weights, {seconds:.0f} s)", flush=True)
        write_all(outputs(args, images, recons, results))
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


def outputs(args, images, recons, results) -> dict:
    """{path: writer} of --save, --grid and --json. One step count: a JSON object and 'reconstructions';
    several: a JSON list (one record per count), 'reconstructions_<steps>' and a grid row per count."""
    one = len(results) == 1
    writers = {}
    if args.save:
        arrays = {"reconstructions" if one else f"reconstructions_{k}": r.numpy() for k, r in recons.items()}
        writers[args.save] = lambda f: np.savez_compressed(f, originals=images.numpy(), **arrays)
    if args.grid:
        from torchvision.utils import save_image
        k = min(16, len(images))
        grid = torch.cat([images[:k], *(r[:k] for r in recons.values())]).float() / 255
        writers[args.grid] = lambda f: save_image(grid, f, format="png", nrow=k, padding=1)
    if args.json:  # last: a JSON on disk means every other output is there too
        record = results[0] if one else results
        writers[args.json] = lambda f: f.write(json.dumps(record, indent=2).encode())
    return writers


if __name__ == "__main__":
    main()
