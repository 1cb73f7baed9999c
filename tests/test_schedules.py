"""Schedules, targets and time grids, checked against their defining formulas."""
import math

import pytest
import torch

from schedules import T_DDPM, Schedule, make_target, sample_t, time_grid, to_x0_eps

NAMES = ["linear", "cosine", "sc4", "sc2", "sc8", "sc0.5", "rf"]
VP = [n for n in NAMES if n != "rf"]


t_interior = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_endpoints_exact_and_finite(name):
    s = Schedule(name)
    t = torch.tensor([0.0, 1.0])
    alpha, sigma = s.alpha_sigma(t)
    assert alpha[0] == 1 and sigma[0] == 0
    if name == "linear":  # DDPM's last step is not quite pure noise: alpha_bar_T = 4e-5
        assert abs(alpha[1] ** 2 - 4.04e-5) < 1e-6
    else:
        assert alpha[1] == 0 and sigma[1] == 1  # pure noise at t = 1
    lam = s.logsnr(t)
    assert lam[0] == math.inf and not torch.isnan(lam).any()
    for dtype in (torch.float32, torch.float64):
        tt = torch.linspace(0, 1, 1001, dtype=dtype)
        assert torch.isfinite(torch.stack(s.alpha_sigma(tt))).all()


@pytest.mark.parametrize("name", NAMES)
def test_logsnr_strictly_decreasing(name):
    lam = Schedule(name).logsnr(t_interior)
    assert (lam[1:] < lam[:-1]).all()


@pytest.mark.parametrize("name", VP)
def test_variance_preserving(name):
    alpha, sigma = Schedule(name).alpha_sigma(torch.linspace(0, 1, 1001, dtype=torch.float64))
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones_like(alpha), rtol=0, atol=1e-12)


def test_rf_is_linear_interpolation():
    alpha, sigma = Schedule("rf").alpha_sigma(t_interior)
    torch.testing.assert_close(alpha, 1 - t_interior)
    torch.testing.assert_close(sigma, t_interior)


def test_cosine_formula():
    lam = Schedule("cosine").logsnr(t_interior)
    torch.testing.assert_close(lam, -2 * torch.log(torch.tan(math.pi * t_interior / 2)))


@pytest.mark.parametrize("S", [0.5, 2.0, 4.0, 8.0])
def test_shifted_cosine_is_cosine_plus_2lnS(S):
    lam_sc = Schedule(f"sc{S:g}").logsnr(t_interior)
    lam_cos = Schedule("cosine").logsnr(t_interior)
    torch.testing.assert_close(lam_sc, lam_cos + 2 * math.log(S))
    # equivalently alpha_bar = 1 / (1 + tan^2(pi t / 2) / S^2)
    alpha, _ = Schedule(f"sc{S:g}").alpha_sigma(t_interior)
    torch.testing.assert_close(alpha ** 2, 1 / (1 + torch.tan(math.pi * t_interior / 2) ** 2 / S ** 2))


def test_linear_matches_ddpm_cumprod_at_discrete_steps():
    betas = torch.linspace(1e-4, 0.02, T_DDPM, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    i = torch.tensor([1, 10, 500, 1000])
    alpha, _ = Schedule("linear").alpha_sigma(i.double() / T_DDPM)
    torch.testing.assert_close(alpha ** 2, alpha_bar[i - 1])


@pytest.mark.parametrize("bad", ["sc", "scx", "sc-1", "sc0", "scinf", "cosin", "", "SC4"])
def test_bad_schedule_names(bad):
    with pytest.raises(ValueError):
        Schedule(bad)


@pytest.mark.parametrize("name, pred", [(n, p) for n in NAMES for p in ["eps", "x0", "v"]])
def test_target_round_trip(name, pred):
    g = torch.Generator().manual_seed(0)
    s = Schedule(name)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 0.01
    x0 = torch.rand(64, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(64, 3, 4, 4, generator=g, dtype=torch.float64)
    alpha, sigma = (a.view(-1, 1, 1, 1) for a in s.alpha_sigma(t))
    x_t = alpha * x0 + sigma * eps
    out = make_target(pred, x0, eps, alpha, sigma, s.is_rf)
    x0_hat, eps_hat = to_x0_eps(pred, out, x_t, alpha, sigma, s.is_rf)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)


def test_v_at_t1_is_minus_x0():
    """Phase 1 with v-prediction: v = alpha eps - sigma x_0 = -x_0 at t = 1 (Khungurn et al.), where alpha = 0."""
    alpha, sigma = torch.zeros(1), torch.ones(1)
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(make_target("v", x0, eps, alpha, sigma, False), -x0)


@pytest.mark.parametrize("pred", ["eps", "x0", "v"])
def test_conversions_finite_at_endpoints(pred):
    for alpha, sigma in [(torch.ones(1), torch.zeros(1)), (torch.zeros(1), torch.ones(1))]:  # t = 0 and t = 1
        x0_hat, eps_hat = to_x0_eps(pred, torch.randn(1, 3), torch.randn(1, 3), alpha, sigma, False)
        assert torch.isfinite(x0_hat).all() and torch.isfinite(eps_hat).all()


def test_time_grids():
    torch.testing.assert_close(time_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # epsilon-VAE's reversed-log spacing, 3 steps: [1, 0.913, 0.766, 0]
    torch.testing.assert_close(time_grid(3, "reversed-log"), torch.tensor([1.0, 0.913, 0.766, 0.0]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError):
        time_grid(0)


def test_t_samplers():
    torch.manual_seed(0)
    u = sample_t(100_000, "uniform")
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    ln = sample_t(100_000, "logit-normal", 0.0, 1.0)
    assert abs(torch.logit(ln).std() - 1) < 0.01 and abs(ln.median() - 0.5) < 0.01
