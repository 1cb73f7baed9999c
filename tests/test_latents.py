"""The related papers' options: spatial latents (epsilon-VAE, DGAE), the KL latent (DGAE) and the
noise scaling gamma (epsilon-VAE), against shapes, closed forms and exact models."""
import json
import os
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_FLAGS, run_cli
from dae import DAEConfig, DiffusionAutoencoder
from sample import reconstruct
from schedules import Schedule, bcast, make_target, time_grid, to_x0_eps
from test_model import TINY, perturbed
from unet import UNetConfig


def model(**kw):
    net = {k: kw.pop(k) for k in list(kw) if k in UNetConfig.__dataclass_fields__}
    torch.manual_seed(0)
    return DiffusionAutoencoder(DAEConfig(net=UNetConfig(**{**TINY.__dict__, "z_map_channels": 0, **net}), **kw))


@pytest.mark.parametrize("down", [1, 2, 4, 8, 16])
def test_spatial_latent_shapes_and_the_concat_path(down):
    m = perturbed(model(latent="spatial", latent_channels=3, latent_down=down))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = m.encode(x)
    assert z.shape == (2, 3, 16 // down, 16 // down)
    t = torch.full((2,), 0.5)
    out = m(x, t, z)
    assert out.shape == x.shape
    # the decoder reads z: another latent changes the output
    assert (m(x, t, z + 1) - out).abs().mean() > 1e-3


def test_spatial_latent_refuses_bad_factors():
    with pytest.raises(ValueError, match="power of 2"):
        model(latent="spatial", latent_down=3)
    with pytest.raises(ValueError, match="power of 2"):
        model(latent="spatial", latent_down=32)  # more than the 16-px image


@pytest.mark.parametrize("latent", ["vector", "spatial"])
def test_kl_term_is_the_closed_form(latent):
    m = perturbed(model(latent=latent, kl_weight=1.0))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    mu, logvar = m.posterior(x)
    assert mu.shape == logvar.shape and torch.equal(m.encode(x), mu)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1) / (3 * 16 * 16)
    torch.testing.assert_close(m.kl(mu, logvar), expected)
    # the loss adds kl_weight times the batch mean of it: the same draws at weights 2 and 1 differ by one KL
    losses = []
    for w in (2.0, 1.0):
        m.cfg.kl_weight = w
        torch.manual_seed(5)
        losses.append(m.loss(x, 1)[0])
    torch.testing.assert_close(losses[0] - losses[1], expected.mean())


def test_gamma_one_is_the_unscaled_model():
    a, b = perturbed(model()), perturbed(model(gamma=1.0))
    x, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2)
    z = a.encode(x)
    assert torch.equal(a.predict(x, t, z)[0], b.predict(x, t, z)[0])
    torch.manual_seed(1)
    la, _ = a.loss(x)
    torch.manual_seed(1)
    assert torch.equal(la, b.loss(x)[0])


@pytest.mark.parametrize("gamma", [0.3, 0.6, 1.7])
@pytest.mark.parametrize("schedule,pred", [("sc4", "v"), ("linear", "eps"), ("rf", "v"), ("cosine", "x0")])
def test_gamma_conversions_round_trip(gamma, schedule, pred):
    m = model(gamma=gamma, schedule=schedule, pred=pred)
    x0 = torch.rand(4, 3, 8, 8, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(m.to_data(m.to_diffusion(x0)), x0)
    eps, t = torch.randn_like(x0), torch.rand(4, dtype=torch.float64) * 0.98 + 0.01
    alpha, sigma = (bcast(v, x0) for v in Schedule(schedule).alpha_sigma(t))
    y0 = m.to_diffusion(x0)
    x_t = m.diffuse(y0, eps, t)
    y0_hat, eps_hat = to_x0_eps(pred, make_target(pred, y0, eps, alpha, sigma, schedule == "rf"), x_t, alpha, sigma,
                                schedule == "rf")
    torch.testing.assert_close(m.to_data(y0_hat), x0)
    torch.testing.assert_close(eps_hat, eps)


def test_gamma_feeds_the_network_x_t_over_its_std():
    """VP schedules: the decoder's input is x_t / std(x_t) for unit-variance data, whatever gamma."""
    m = model(gamma=0.6, schedule="sc4")
    m.decoder.forward = lambda x, t, z: x  # the decoder's input is all that is of interest
    torch.manual_seed(0)
    x0, eps = torch.randn(2000, 3, 4, 4), torch.randn(2000, 3, 4, 4)
    for t in (0.1, 0.5, 0.9):
        alpha, sigma = Schedule("sc4").alpha_sigma(torch.tensor(t))
        x_t = alpha * 0.6 * x0 + sigma * eps
        assert x_t.std().item() < 0.97  # gamma < 1 shrinks the data term ...
        assert m(x_t, torch.full((2000,), t), None).std().item() == pytest.approx(1.0, abs=0.02)  # ... c_in undoes it


def test_reconstruct_is_exact_in_the_scaled_space():
    """A model that knows the single image exactly, in the diffusion's space y_0 = gamma x_0:
    decoding from any x_T gives y_0, and reconstruct returns x_0 (the clip range is gamma)."""
    gamma = 0.6
    image = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    schedule = Schedule("sc4")

    class Exact(torch.nn.Module):
        cfg = SimpleNamespace(gamma=gamma)
        schedule = Schedule("sc4")

        def encode(self, x0):
            return None

        def to_diffusion(self, x0):
            return gamma * x0

        def to_data(self, y0):
            return y0 / gamma

        def predict(self, x_t, t, z):
            alpha, sigma = (bcast(v, x_t) for v in schedule.alpha_sigma(t.double()))
            y0 = gamma * image
            return to_x0_eps("x0", y0.expand_as(x_t), x_t, alpha, sigma, False)  # eps_hat 0 where sigma = 0

    rec = reconstruct(Exact(), image, time_grid(5).double(), "stochastic", torch.Generator().manual_seed(0))
    torch.testing.assert_close(rec.double(), image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flags", [
    ["--latent", "spatial", "--latent-channels", "2", "--latent-down", "4", "--kl-weight", "0.01"],
    ["--latent", "vector", "--kl-weight", "0.1", "--gamma", "0.6", "--schedule", "rf"],
    ["--latent", "spatial", "--latent-down", "2", "--gamma", "0.6", "--phase1-frac", "0"],
])
def test_train_and_evaluate_each_latent(flags, image_folder, tmp_path):
    out = str(tmp_path / "r")
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--z-map-channels", "0", "--data", image_folder, "--out", out,
                           "--examples", "32", *flags)
    assert code == 0, err
    js = str(tmp_path / "e.json")
    code, _, err = run_cli("eval.py", "--ckpt", os.path.join(out, "ckpt.pt"), "--data", image_folder, "--n", "4",
                           "--steps", "1,2", "--device", "cpu", "--json", js)
    assert code == 0, err
    records = json.load(open(js))
    assert [r["steps"] for r in records] == [1, 2] and all(0 < r["ssim"] <= 1 for r in records)


def test_spatial_latent_with_a_z_map_is_refused(image_folder, tmp_path):
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", str(tmp_path / "r"),
                           "--examples", "16", "--latent", "spatial")
    assert code != 0 and "--z-map-channels 0" in err and "Traceback" not in err


def test_loss_hands_the_loop_the_one_step_estimate():
    """dae.loss returns, for the loop's LPIPS and adversarial terms, the network's output, its input x_t and
    t; one_step_x0 makes x0_hat of them (rectified flow: x_t - t v_hat). Given t and eps, the loss uses them."""
    m = perturbed(model(schedule="rf", pred="v"))
    x0 = torch.rand(3, 3, 16, 16) * 2 - 1
    t, eps = torch.tensor([0.3, 0.6, 0.9]), torch.randn(3, 3, 16, 16)
    loss, pred = m.loss(x0, 1, t.clone(), eps)
    assert pred.t.tolist() == pytest.approx([1.0, 0.6, 0.9])  # the phase-1 example at t = 1
    torch.testing.assert_close(pred.x_t, (1 - pred.t.view(-1, 1, 1, 1)) * x0 + pred.t.view(-1, 1, 1, 1) * eps)
    v_hat = m(pred.x_t, pred.t, m.encode(x0))
    torch.testing.assert_close(pred.out, v_hat)
    torch.testing.assert_close(m.one_step_x0(pred), pred.x_t - pred.t.view(-1, 1, 1, 1) * v_hat)
    torch.testing.assert_close(loss, ((v_hat - (eps - x0)) ** 2).mean())  # rf's target v = eps - x_0


def test_lpips_flag_without_the_package_is_one_sentence(image_folder, tmp_path, monkeypatch):
    import sys

    import train
    from conftest import exits_with
    monkeypatch.setitem(sys.modules, "lpips", None)  # as if not installed
    message = exits_with(train.main, [*TINY_FLAGS, "--data", image_folder, "--out", str(tmp_path / "r"),
                                      "--examples", "16", "--lpips-weight", "0.5"])
    assert "--lpips-weight needs the lpips package" in message and not os.path.exists(tmp_path / "r" / "ckpt.pt")


def test_lpips_wiring_offline_with_a_random_backbone(monkeypatch):
    lpips = pytest.importorskip("lpips")
    from perceptual import load_lpips
    distance = load_lpips(torch.device("cpu"), random_backbone=True)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(distance(x, x), torch.zeros(2))
    assert (distance(x, x.flip(0)) > 0).all()

    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", offline)
    with pytest.raises(OSError, match="could not load the alex backbone"):
        load_lpips(torch.device("cpu"))


def test_recipe_small_is_the_spatial_suites_measured_run():
    """RESULTS quotes the spatial suite's c8-sc1 numbers for `--preset cpu-v1 --recipe small` (the shipped
    model's run): the same run."""
    from tools.experiments import SUITES
    from plumbing.flags import parse_args, plain_args

    flags = SUITES["spatial"]["c8-sc1"][0]
    measured, small = (plain_args(parse_args(["--preset", "cpu-v1", *f])) for f in (flags, ["--recipe", "small"]))
    measured.pop("recipe"), small.pop("recipe")
    assert measured == small
    assert (small["latent"], small["latent_channels"], small["schedule"], small["phase1_frac"]) == ("spatial", 8, "sc1", 0.25)
