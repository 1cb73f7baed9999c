"""spectrum.py: block DCT, zigzag, spectra and the sharpness figure."""
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

import spectrum
from conftest import exits_with, run_cli


def test_dct_matches_the_direct_formula_and_inverts():
    B = 8
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    D = spectrum.block_dct(x, B)
    assert D.shape == (2, 3, 2, 3, B, B)
    # D_uv = a_u a_v sum_{m,n} X_mn cos(pi (2m+1) u / 2B) cos(pi (2n+1) v / 2B), on block (1, 2) of image 1, channel 2
    X = x[1, 2, 8:16, 16:24]
    a = lambda k: math.sqrt((1 if k == 0 else 2) / B)  # noqa: E731
    for u, v in [(0, 0), (0, 5), (3, 1), (7, 7)]:
        direct = sum(X[m, n] * math.cos(math.pi * (2 * m + 1) * u / (2 * B)) * math.cos(math.pi * (2 * n + 1) * v / (2 * B))
                     for m in range(B) for n in range(B)) * a(u) * a(v)
        assert abs(float(D[1, 2, 1, 2, u, v]) - float(direct)) < 1e-10
    C = spectrum.dct_matrix(B)
    assert torch.allclose(C @ C.T, torch.eye(B, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(spectrum.block_idct(D), x, atol=1e-12)


def test_zigzag_is_jpegs_order():
    # JPEG's zigzag as natural-order indices (row * 8 + column), ITU T.81 figure A.6
    jpeg = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
            21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
            60, 61, 54, 47, 55, 62, 63]
    assert [u * 8 + v for u, v in spectrum.zigzag(8)] == jpeg
    assert sorted(spectrum.zigzag(4)) == [(u, v) for u in range(4) for v in range(4)]


def test_white_noise_is_flat_and_a_smooth_image_decays():
    g = torch.Generator().manual_seed(0)
    noise = spectrum.spectrum(torch.randn(16, 3, 64, 64, generator=g))
    assert noise.shape == (64,) and noise[0] == 1
    assert (noise - 1).abs().max() < 0.1  # sampling noise of the block means: about 2% each
    smooth = F.avg_pool2d(F.interpolate(torch.rand(16, 3, 8, 8, generator=g), size=64, mode="bilinear"), 3, 1, 1)
    curve = spectrum.spectrum(smooth)
    assert curve[1:8].mean() > 20 * curve[-16:].mean()
    assert curve[32:].max() < 0.05


def test_sharpness_is_one_for_identity_lower_for_blur_higher_for_noise():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(20, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)
    assert spectrum.sharpness(images, images) == 1.0
    blurred = F.avg_pool2d(images.float(), 3, 1, 1, count_include_pad=False).round().to(torch.uint8)
    assert spectrum.sharpness(images, blurred) < 0.5
    smooth = F.avg_pool2d(images.float(), 5, 1, 2, count_include_pad=False)
    noisy = (smooth + 20 * torch.randn(smooth.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    assert spectrum.sharpness(smooth.round().to(torch.uint8), noisy) > 1.5
    # stronger blur, less detail
    blurred5 = smooth.round().to(torch.uint8)
    assert spectrum.sharpness(images, blurred5) < spectrum.sharpness(images, blurred)


def test_npz_report_and_cli(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(10, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    blurred = F.avg_pool2d(images.float(), 3, 1, 1, count_include_pad=False).to(torch.uint8)
    path = tmp_path / "eval.npz"
    np.savez(path, originals=images.numpy(), reconstructions_1=blurred.numpy(), reconstructions_50=images.numpy())
    out = tmp_path / "report.json"
    spectrum.main(["--npz", str(path), "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["reconstructions_50"]["sharpness"] == 1.0
    assert report["reconstructions_1"]["sharpness"] < 0.6
    assert len(report["originals"]["spectrum"]) == 64
    assert "reconstructions_1: sharpness" in capsys.readouterr().out
    assert "one of --npz" in exits_with(spectrum.main, [])
    assert "not readable" in exits_with(spectrum.main, ["--npz", str(tmp_path / "missing.npz")])


def test_latent_spectrum_of_a_spatial_checkpoint(image_folder, tmp_path):
    from conftest import TINY_FLAGS
    run = tmp_path / "run"
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", str(run), "--examples", "16",
                           "--latent", "spatial", "--latent-channels", "3", "--latent-down", "4", "--z-map-channels", "0")
    assert code == 0, err
    out = tmp_path / "spectra.json"
    code, _, err = run_cli("spectrum.py", "--ckpt", str(run / "ckpt.pt"), "--data", image_folder, "--n", "8",
                           "--device", "cpu", "--json", str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["latent_shape"] == [3, 4, 4]
    assert report["latent"]["block"] == 4 and len(report["latent"]["spectrum"]) == 16
    assert len(report["originals"]["spectrum"]) == 64
