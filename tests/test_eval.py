"""Metrics against references, and the eval CLI on a tiny model."""
import json
import math
import os

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from conftest import run_cli
from eval import psnr, ssim
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


@pytest.mark.exercise8
def test_identical_images():
    a, _ = random_pair(1)
    assert torch.isinf(psnr(a, a)).all()
    torch.testing.assert_close(ssim(a, a), torch.ones(4, dtype=torch.float64))


@pytest.mark.exercise8
@pytest.mark.parametrize("seed,noise,size", [(0, 5.0, 32), (1, 30.0, 32), (2, 80.0, 24), (3, 15.0, 11)])
def test_ssim_matches_scikit_image(seed, noise, size):
    a, b = random_pair(seed, (3, 3, size, size), noise)
    ours = ssim(a, b)
    for i in range(3):
        ref = structural_similarity(a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=-1,
                                    data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(ours[i].item() - ref) < 1e-4


@pytest.mark.exercise8
def test_ssim_drops_with_noise():
    values = [ssim(*random_pair(0, noise=n)).mean().item() for n in (2, 10, 40)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("mode", ["stochastic", "inversion"])
def test_eval_cli(tiny_ckpt, image_folder, tmp_path, mode):
    js, npz, png = str(tmp_path / "e.json"), str(tmp_path / "e.npz"), str(tmp_path / "g.png")
    code, stdout, err = run_cli("eval.py", "--ckpt", tiny_ckpt, "--data", image_folder, "--n", "6", "--steps", "3",
                                "--mode", mode, "--batch-size", "4", "--device", "cpu",
                                "--json", js, "--save", npz, "--grid", png)
    assert code == 0, err
    result = json.load(open(js))
    for key in ("schedule", "pred", "phase1_frac", "z_dim", "latent", "examples", "mode", "steps", "n", "psnr", "ssim"):
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
    assert records[0]["psnr"] != records[1]["psnr"] and stdout.count("PSNR") == 2
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
