"""Exercise 3: x0_hat and eps_hat from a v-prediction (schedules.py, to_x0_eps).

Invert v = alpha eps - sigma x_0 together with x_t = alpha x_0 + sigma eps, using alpha^2 + sigma^2 = 1.
"""
import pytest
import torch

from schedules import to_x0_eps


def recover(out, x_t, alpha, sigma):
    t = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    x0, eps = to_x0_eps("v", t(out), t(x_t), t(alpha), t(sigma), False)
    return x0.item(), eps.item()


# (v, x_t, alpha, sigma) of x_0 = 3 and eps = 4, worked out by hand
HAND = [(1.4, 4.8, 0.8, 0.6), (0.0, 5.0, 0.6, 0.8), (-3.0, 4.0, 0.0, 1.0), (4.0, 3.0, 1.0, 0.0),
        (-16 / 13, 63 / 13, 5 / 13, 12 / 13)]


@pytest.mark.parametrize("v,x_t,alpha,sigma", HAND)
def test_recovers_x0_3_eps_4(v, x_t, alpha, sigma):
    x0, eps = recover(v, x_t, alpha, sigma)
    assert (x0, eps) == (pytest.approx(3.0, abs=1e-12), pytest.approx(4.0, abs=1e-12)), \
        f"alpha {alpha:.4f}, sigma {sigma:.4f}: got x0_hat {x0:.6f}, eps_hat {eps:.6f}"


def test_consistent_with_both_equations_per_example():
    """alpha x0_hat + sigma eps_hat gives back x_t, and alpha eps_hat gives back v + sigma x0_hat."""
    torch.manual_seed(0)
    phi = torch.tensor([0.0, 0.3, 0.9, 1.2, 1.5707963267948966], dtype=torch.float64).view(5, 1, 1, 1)
    alpha, sigma = torch.cos(phi), torch.sin(phi)
    x_t, v = torch.randn(5, 3, 4, 4, dtype=torch.float64), torch.randn(5, 3, 4, 4, dtype=torch.float64)
    x0_hat, eps_hat = to_x0_eps("v", v, x_t, alpha, sigma, False)
    assert x0_hat.shape == eps_hat.shape == x_t.shape
    torch.testing.assert_close(alpha * x0_hat + sigma * eps_hat, x_t, rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha * eps_hat, v + sigma * x0_hat, rtol=0, atol=1e-12)
