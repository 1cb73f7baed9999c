"""DDIM decode/encode against models whose answer is known in closed form."""
import math

import pytest
import torch

from sample import ddim_decode, ddim_encode, slerp
from schedules import Schedule, bcast, make_target, time_grid, to_x0_eps


class ReferenceSchedule(Schedule):
    """The cosine family from its log-SNR, so that these sampler tests need no schedules.py exercise:
    logsnr = -2 ln tan(pi t / 2) + 2 ln S, alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)
    (alpha(1) is about 1e-16 here, not 0: close enough for a sampler test)."""

    def alpha_sigma(self, t):
        if self.kind not in ("cosine", "sc"):
            return super().alpha_sigma(t)
        lam = 2 * math.log(self.shift) - 2 * torch.log(torch.tan(t.clamp(0.0, 1.0) * math.pi / 2))
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


class GaussianDenoiser(torch.nn.Module):
    """The exact posterior-mean model for data x_0 ~ N(mu, s^2 I) (s = 0: a single known image mu):
    E[x_0 | x_t] = mu + alpha s^2 (x_t - alpha mu) / (alpha^2 s^2 + sigma^2)
    E[eps | x_t] = sigma (x_t - alpha mu) / (alpha^2 s^2 + sigma^2)
    returned in the output format of `pred`, so the samplers' conversions are exercised too."""

    def __init__(self, mu, s, schedule, pred):
        super().__init__()
        self.mu, self.s, self.schedule, self.pred = mu, s, ReferenceSchedule(schedule), pred

    def predict(self, x_t, t, z):
        alpha, sigma = (bcast(a, x_t) for a in self.schedule.alpha_sigma(t.double()))
        r = (x_t - alpha * self.mu) / (alpha ** 2 * self.s ** 2 + sigma ** 2)
        x0, eps = self.mu + alpha * self.s ** 2 * r, sigma * r
        out = make_target(self.pred, x0, eps, alpha, sigma, self.schedule.is_rf)
        return to_x0_eps(self.pred, out, x_t, alpha, sigma, self.schedule.is_rf)


# eps-prediction cannot recover x_0 where alpha = 0 (t = 1 of cosine, SC, rf): see the next test
PAIRS = [(s, p) for s in ["linear", "cosine", "sc4", "rf"] for p in ["eps", "x0", "v"] if p != "eps" or s == "linear"]


@pytest.mark.parametrize("schedule,pred", PAIRS)
def test_ddim_decode_exact_for_single_image(schedule, pred):
    torch.manual_seed(0)
    mu = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    model = GaussianDenoiser(mu, 0.0, schedule, pred)
    x_T = torch.randn_like(mu)
    for steps in (1, 3, 50):
        x0 = ddim_decode(model, x_T, None, time_grid(steps).double())
        torch.testing.assert_close(x0, mu, rtol=0, atol=1e-9)


def test_ddim_decode_eps_single_image_after_first_step():
    """With eps-prediction x_0 is unidentifiable at t = 1 exactly; from any t < 1 the decode is exact."""
    mu = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    model = GaussianDenoiser(mu, 0.0, "sc4", "eps")
    x0 = ddim_decode(model, torch.randn_like(mu), None, time_grid(20).double())
    torch.testing.assert_close(x0, mu, rtol=0, atol=1e-9)


@pytest.mark.parametrize("schedule", ["cosine", "sc4", "rf", "linear"])
def test_ddim_encode_decode_round_trip(schedule):
    """DDIM inversion is exact only as steps -> infinity: a first-order method, so 10x the steps
    must give about 10x less error (measured: 0.048 -> 0.0048 for cosine, 0.090 -> 0.0095 linear)."""
    torch.manual_seed(0)
    mu = torch.zeros(4, 3, 8, 8, dtype=torch.float64)
    model = GaussianDenoiser(mu, 0.5, schedule, "x0")
    x0 = 0.5 * torch.randn_like(mu)
    errors = []
    for steps in (100, 1000):
        ts = time_grid(steps).double()
        x_T = ddim_encode(model, x0, None, ts)
        errors.append((ddim_decode(model, x_T, None, ts, clip=False) - x0).abs().max().item())
    assert errors[1] < 0.012 and errors[1] < errors[0] / 8


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b, rtol=1e-4, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm() / a.norm() - 1) < 0.1  # stays on the Gaussian shell, unlike lerp
