"""Hidden tests of exercise 5 (instructors only): a step from t = 0 (sigma_t = 0) with the clip on."""
import torch

from sample import ddim_step


class Rational:
    is_rf = False

    def alpha_sigma(self, t):
        return (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t)


class Fixed:
    schedule = Rational()

    def __init__(self, x0_hat, eps_hat):
        self.x0_hat, self.eps_hat = x0_hat, eps_hat

    def predict(self, x, t, z):
        return self.x0_hat, self.eps_hat


def test_clip_at_sigma_t_0_keeps_the_network_eps():
    """At t = 0 eps_hat cannot be recomputed (sigma_t = 0): the network's is kept, and nothing is NaN."""
    x0_hat, eps_hat = torch.full((2, 3, 2, 2), 2.0, dtype=torch.float64), torch.full((2, 3, 2, 2), 0.5, dtype=torch.float64)
    out = ddim_step(Fixed(x0_hat, eps_hat), torch.zeros_like(x0_hat), None, 0.0, 0.5, 1.0)
    torch.testing.assert_close(out, 3 / 5 * torch.ones_like(out) + 4 / 5 * eps_hat, rtol=0, atol=1e-12)
