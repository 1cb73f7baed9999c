"""latent_sampler.py: DiffAE's latent DDIM on a toy set, and the CLI."""
import json
import os

import torch

import latent_sampler
from conftest import exits_with, run_cli


def test_latent_ddim_learns_a_correlated_gaussian():
    """On z-normalised data, as the CLI trains it. 100 DDIM steps: with 20, DDIM itself shrinks the variance
    of this set to 0.84 even with the exact eps_hat = sigma Sigma_t^-1 x_t (measured), which is not the model's fault."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    data = torch.randn(4096, 2) @ torch.linalg.cholesky(cov).T
    net = latent_sampler.LatentDenoiser(2, hidden=64, layers=2)
    losses = latent_sampler.train_latent(net, data, examples=256 * 2000, batch_size=256, lr=3e-3)
    assert sum(losses[-200:]) / 200 < 0.8 * sum(losses[:50]) / 50
    x = latent_sampler.sample_latents(net, 4000, steps=100, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.1), x.mean(0)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.3), torch.cov(x.T)
    assert abs(float(torch.corrcoef(x.T)[0, 1]) - 0.8) < 0.1


def test_nearest_finds_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8)
    d, i = latent_sampler.nearest(train[[7, 3]], train)
    assert d.tolist() == [0.0, 0.0] and i.tolist() == [7, 3]
    d, _ = latent_sampler.nearest(torch.randint(0, 256, (4, 3, 8, 8), generator=g, dtype=torch.uint8), train)
    assert (d > 50).all()


def test_latent_sampler_cli(tiny_ckpt, image_folder, tmp_path):
    out, js, png = str(tmp_path / "latent.pt"), str(tmp_path / "s.json"), str(tmp_path / "s.png")
    args = ["--ckpt", tiny_ckpt, "--data", image_folder, "--out", out, "--examples", "512", "--hidden", "32",
            "--layers", "2", "--n", "4", "--steps", "2", "--latent-steps", "3", "--device", "cpu", "--json", js, "--grid", png]
    code, stdout, err = run_cli("latent_sampler.py", *args)
    assert code == 0, err
    r = json.load(open(js))
    assert r["n"] == 4 and r["nearest_train_rms_samples"] > 0 and r["nearest_train_rms_heldout"] > 0
    assert os.path.getsize(png) > 0 and os.path.exists(out)
    code, stdout, err = run_cli("latent_sampler.py", *args)
    assert code == 0 and "loaded the latent model" in stdout, err
    assert json.load(open(js)) == r  # the same model and seed give the same samples
    other = str(tmp_path / "other.pt")
    os.symlink(tiny_ckpt, other)  # the same file under another name still counts as the same checkpoint
    code, _, err = run_cli("latent_sampler.py", *args[:1], other, *args[2:])
    assert code == 0, err


def test_latent_sampler_bad_input(tiny_ckpt, image_folder, tmp_path):
    base = ["--ckpt", tiny_ckpt, "--data", image_folder, "--out", str(tmp_path / "l.pt"), "--device", "cpu"]
    torch.save({"checkpoint": "runs/another/ckpt.pt"}, tmp_path / "l.pt")
    assert "holds the latent model of runs/another/ckpt.pt" in exits_with(latent_sampler.main, base)
    (tmp_path / "l.pt").write_text("not a model")
    assert "is not a latent model written by" in exits_with(latent_sampler.main, base)
    assert "--n must be positive" in exits_with(latent_sampler.main, base + ["--n", "0"])
    assert "--lr must be positive" in exits_with(latent_sampler.main, base + ["--lr", "0"])
