"""Exercise 1: alpha_t and sigma_t of the shifted-cosine schedule SC-S (schedules.py, Schedule.alpha_sigma).

logsnr(t) = -2 ln tan(pi t / 2) + 2 ln S, so alpha^2 = S^2 / (S^2 + tan^2(pi t / 2)) and sigma^2 = 1 - alpha^2.
The values below are where tan(pi t / 2) is known by hand: 1 / sqrt(3), 1 and sqrt(3) at t = 1/3, 1/2, 2/3.
"""
import math

import pytest
import torch

from schedules import Schedule

R3 = math.sqrt(3)
# (schedule, t, alpha, sigma)
HAND = [("cosine", 1 / 2, 1 / math.sqrt(2), 1 / math.sqrt(2)),
        ("sc1", 2 / 3, 1 / 2, R3 / 2),
        ("sc4", 1 / 3, math.sqrt(48) / 7, 1 / 7),          # alpha^2 = 16 / (16 + 1/3) = 48 / 49
        ("sc4", 1 / 2, 4 / math.sqrt(17), 1 / math.sqrt(17)),
        ("sc2", 2 / 3, 2 / math.sqrt(7), R3 / math.sqrt(7)),  # alpha^2 = 4 / (4 + 3)
        ("sc0.5", 1 / 3, math.sqrt(3 / 7), 2 / math.sqrt(7))]  # alpha^2 = (1/4) / (1/4 + 1/3)


def alpha_sigma(name, t, dtype=torch.float64):
    return Schedule(name).alpha_sigma(torch.as_tensor(t, dtype=dtype))


@pytest.mark.parametrize("name,t,alpha,sigma", HAND)
def test_values_worked_out_by_hand(name, t, alpha, sigma):
    a, s = alpha_sigma(name, [t])
    assert a.item() == pytest.approx(alpha, abs=1e-12), f"alpha of {name} at t = {t:.4f}"
    assert s.item() == pytest.approx(sigma, abs=1e-12), f"sigma of {name} at t = {t:.4f}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["cosine", "sc4"])
def test_endpoints_are_exact(name, dtype):
    """t = 0 is the data (alpha 1, sigma 0) and t = 1 pure noise (alpha exactly 0: phase 1 relies on it)."""
    a, s = alpha_sigma(name, [0.0, 1.0], dtype)
    assert a.tolist() == [1.0, 0.0] and s.tolist() == [0.0, 1.0], f"{name}: alpha {a.tolist()}, sigma {s.tolist()}"


@pytest.mark.parametrize("name", ["cosine", "sc4", "sc16"])
def test_variance_preserving_and_monotone(name):
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    a, s = alpha_sigma(name, t)
    assert torch.isfinite(a).all() and torch.isfinite(s).all()
    torch.testing.assert_close(a ** 2 + s ** 2, torch.ones_like(t), rtol=0, atol=1e-12)
    assert (a[1:] < a[:-1]).all() and (s[1:] > s[:-1]).all(), "alpha must fall and sigma rise with t"


@pytest.mark.parametrize("S", [0.5, 4.0, 8.0])
def test_log_snr_is_the_shifted_cosine(S):
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    expected = torch.tensor([-2 * math.log(math.tan(math.pi * v / 2)) + 2 * math.log(S) for v in t.tolist()],
                            dtype=torch.float64)
    torch.testing.assert_close(Schedule(f"sc{S:g}").logsnr(t), expected, rtol=0, atol=1e-9)


def test_shape_and_dtype_follow_t():
    a, s = alpha_sigma("sc4", torch.rand(2, 3), torch.float32)
    assert a.shape == s.shape == (2, 3) and a.dtype == s.dtype == torch.float32
