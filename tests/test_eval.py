"""Metrics against references, and the eval CLI on a tiny model."""
import json
import math
import os

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from conftest import run_cli
from eval import psnr, psnr_diffae, ssim, ssim_diffae
from spectrum import sharpness


def random_pair(seed, shape=(4, 3, 32, 32), noise=20.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, shape, generator=g).to(torch.uint8)
    b = (a.double() + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 255).round().to(torch.uint8)
    return a, b


def test_psnr_formula():
    a = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    b = torch.full((1, 3, 4, 4), 10, dtype=torch.uint8)
    # MSE = 100 -> PSNR = 10 log10(255^2 / 100)
    assert psnr(a, b).item() == pytest.approx(10 * math.log10(255 ** 2 / 100))
    a, b = random_pair(0)
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(psnr(a, b), 10 * torch.log10(255 ** 2 / mse))


def test_identical_images():
    a, _ = random_pair(1)
    assert torch.isinf(psnr(a, a)).all()
    torch.testing.assert_close(ssim(a, a), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("seed,noise,size", [(0, 5.0, 32), (1, 30.0, 32), (2, 80.0, 24), (3, 15.0, 11)])
def test_ssim_matches_scikit_image(seed, noise, size):
    a, b = random_pair(seed, (3, 3, size, size), noise)
    ours = ssim(a, b)
    for i in range(3):
        ref = structural_similarity(a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=-1,
                                    data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(ours[i].item() - ref) < 1e-4


def test_ssim_drops_with_noise():
    values = [ssim(*random_pair(0, noise=n)).mean().item() for n in (2, 10, 40)]
    assert values[0] > values[1] > values[2]


def naive_ssim_map(x, y, size=11, sigma=1.5, c1=0.01 ** 2, c2=0.03 ** 2):
    """SSIM of one channel pair in [0, 1] at every pixel, by loops: a Gaussian window whose pixels outside
    the image count as 0 (a zero-padded convolution, as DiffAE's ssim.py), population statistics."""
    H, W, r = x.shape[0], x.shape[1], size // 2
    w1 = [math.exp(-(i - r) ** 2 / (2 * sigma ** 2)) for i in range(size)]
    w1 = [v / sum(w1) for v in w1]
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            m = {"x": 0.0, "y": 0.0, "xx": 0.0, "yy": 0.0, "xy": 0.0}
            for di in range(size):
                for dj in range(size):
                    p, q = i + di - r, j + dj - r
                    if 0 <= p < H and 0 <= q < W:
                        w, a, b = w1[di] * w1[dj], float(x[p, q]), float(y[p, q])
                        m["x"] += w * a; m["y"] += w * b; m["xx"] += w * a * a; m["yy"] += w * b * b; m["xy"] += w * a * b  # noqa: E702
            vx, vy, cxy = m["xx"] - m["x"] ** 2, m["yy"] - m["y"] ** 2, m["xy"] - m["x"] * m["y"]
            sx, sy, c3 = math.sqrt(max(vx, 0.0)), math.sqrt(max(vy, 0.0)), c2 / 2
            # Wang et al.'s three factors, luminance l, contrast c and structure s, with C3 = C2 / 2
            lum = (2 * m["x"] * m["y"] + c1) / (m["x"] ** 2 + m["y"] ** 2 + c1)
            con = (2 * sx * sy + c2) / (vx + vy + c2)
            out[i, j] = lum * con * (cxy + c3) / (sx * sy + c3)
    return out


def test_diffae_ssim_is_the_zero_padded_mean_over_every_pixel():
    """Against a loop written from the definition, and against scikit-image where the two agree: at pixels
    whose window lies inside the image, the zero-padded map is scikit-image's map."""
    a, b = random_pair(4, (2, 3, 14, 14), noise=25.0)
    x, y = a.double() / 127.5 - 1, b.double() / 127.5 - 1                    # [-1, 1], as eval.py has them
    maps = np.stack([[naive_ssim_map((x[n, c] + 1) / 2, (y[n, c] + 1) / 2) for c in range(3)] for n in range(2)])
    torch.testing.assert_close(ssim_diffae(x, y), torch.from_numpy(maps.mean(axis=(1, 2, 3))), rtol=0, atol=1e-10)
    for n in range(2):
        _, full = structural_similarity(((x[n] + 1) / 2).permute(1, 2, 0).numpy(), ((y[n] + 1) / 2).permute(1, 2, 0).numpy(),
                                        channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
        np.testing.assert_allclose(maps[n][:, 5:-5, 5:-5], full.transpose(2, 0, 1)[:, 5:-5, 5:-5], atol=1e-10)


def test_the_border_is_why_the_two_ssims_differ():
    """Valid positions only (ours) against every pixel with zero padding (DiffAE): on a 32 x 32 image the
    valid map is 22 x 22; both are 1 for identical images, and the zero-padded one reads higher for a blur."""
    g = torch.Generator().manual_seed(5)
    x = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 40, 40, generator=g, dtype=torch.float64), 3, 1)[:, :, :32, :32]
    u8 = (x * 255).round().to(torch.uint8)
    blurred = torch.nn.functional.avg_pool2d(u8.double(), 3, 1, padding=1, count_include_pad=False).round().to(torch.uint8)
    f, fb = u8.double() / 127.5 - 1, blurred.double() / 127.5 - 1
    torch.testing.assert_close(ssim_diffae(f, f), torch.ones(4, dtype=torch.float64))
    assert (ssim_diffae(f, fb) > ssim(u8, blurred)).all()


def test_diffae_psnr_is_ours_on_images_that_are_already_uint8():
    a, b = random_pair(6)
    # (x + 1) / 2 of x = u / 127.5 - 1 is u / 255: the same MSE up to 255^2, so the same PSNR
    torch.testing.assert_close(psnr_diffae(a.double() / 127.5 - 1, b.double() / 127.5 - 1), psnr(a, b))
    x = torch.zeros(1, 3, 4, 4)
    assert psnr_diffae(x, x + 0.2).item() == pytest.approx(20 * math.log10(1 / 0.1))  # 0.2 in [-1, 1] is 0.1 in [0, 1]


@pytest.mark.parametrize("mode", ["stochastic", "inversion"])
def test_eval_cli(tiny_ckpt, image_folder, tmp_path, mode):
    js, npz, png = str(tmp_path / "e.json"), str(tmp_path / "e.npz"), str(tmp_path / "g.png")
    code, stdout, err = run_cli("eval.py", "--ckpt", tiny_ckpt, "--data", image_folder, "--n", "6", "--steps", "3",
                                "--mode", mode, "--batch-size", "4", "--device", "cpu",
                                "--json", js, "--save", npz, "--grid", png)
    assert code == 0, err
    result = json.load(open(js))
    for key in ("schedule", "pred", "phase1_frac", "z_dim", "latent", "examples", "mode", "steps", "n", "psnr", "ssim",
                "psnr_diffae", "ssim_diffae"):
        assert key in result
    assert result["n"] == 6 and result["mode"] == mode and result["examples"] == 32
    # the saved images reproduce the reported figures
    saved = np.load(npz)
    orig, rec = torch.from_numpy(saved["originals"]), torch.from_numpy(saved["reconstructions"])
    assert orig.shape == (6, 3, 16, 16) and rec.dtype == torch.uint8
    assert psnr(orig, rec).mean().item() == pytest.approx(result["psnr"])
    assert ssim(orig, rec).mean().item() == pytest.approx(result["ssim"])
    assert sharpness(orig, rec) == pytest.approx(result["sharpness"]) and result["sharpness"] > 0
    assert f"PSNR {result['psnr']:.2f}" in stdout and os.path.getsize(png) > 0


def test_eval_takes_a_list_of_step_counts(tiny_ckpt, image_folder, tmp_path):
    """--steps 1,3: one model load, a record per count, each the same as a call with that count alone."""
    common = ["--ckpt", tiny_ckpt, "--data", image_folder, "--n", "5", "--device", "cpu"]
    js, one, npz = str(tmp_path / "many.json"), str(tmp_path / "one.json"), str(tmp_path / "many.npz")
    code, stdout, err = run_cli("eval.py", *common, "--steps", "1,3", "--json", js, "--save", npz)
    assert code == 0, err
    assert run_cli("eval.py", *common, "--steps", "3", "--json", one)[0] == 0
    records = json.load(open(js))
    assert [r["steps"] for r in records] == [1, 3] and records[1]["psnr"] == json.load(open(one))["psnr"]
    assert records[0]["psnr"] != records[1]["psnr"] and stdout.count("DDIM steps") == 2
    saved = np.load(npz)
    assert sorted(saved.files) == ["originals", "reconstructions_1", "reconstructions_3"]
    rec = torch.from_numpy(saved["reconstructions_1"])
    assert psnr(torch.from_numpy(saved["originals"]), rec).mean().item() == pytest.approx(records[0]["psnr"])
    code, _, err = run_cli("eval.py", *common, "--steps", "1,x")
    assert code == 2 and "expected step counts" in err


@pytest.mark.parametrize("args,message", [
    (["--ckpt", "/no/such.pt"], "checkpoint not found"),
    (["--ckpt", "NOTCKPT"], "not a readable checkpoint"),
    (["--ckpt", "CKPT", "--steps", "0"], "must be positive"),
    (["--ckpt", "CKPT", "--data", "/no/such/folder"], "data folder not found"),
])
def test_eval_bad_input(args, message, tiny_ckpt, image_folder, tmp_path):
    (tmp_path / "x.pt").write_text("nope")
    args = [{"CKPT": tiny_ckpt, "NOTCKPT": str(tmp_path / "x.pt")}.get(a, a) for a in args]
    data = [] if "--data" in args else ["--data", image_folder]
    for script in ("eval.py", "sample.py"):
        code, _, err = run_cli(script, *args, *data, "--device", "cpu")
        assert code != 0 and message in err and "Traceback" not in err


def test_fid_without_weights_is_one_sentence(tiny_ckpt, image_folder):
    code, _, err = run_cli("eval.py", "--ckpt", tiny_ckpt, "--data", image_folder, "--n", "4", "--steps", "2",
                           "--device", "cpu", "--fid")
    assert code != 0 and "Traceback" not in err and "--fid" in err
