"""Exercise 2: the v-prediction target of a variance-preserving schedule (schedules.py, make_target).

v = alpha eps - sigma x_0 (Salimans & Ho 2022). With alpha = cos(phi) and sigma = sin(phi), v is the velocity
d x_t / d phi of x_t = cos(phi) x_0 + sin(phi) eps: the last test checks that numerically.
"""
import math

import pytest
import torch

from schedules import make_target


def v_target(x0, eps, alpha, sigma):
    t = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    return make_target("v", t(x0), t(eps), t(alpha), t(sigma), False)


# (x0, eps, alpha, sigma, v) worked out by hand
HAND = [(3.0, 4.0, 0.6, 0.8, 0.0), (3.0, 4.0, 0.8, 0.6, 1.4), (3.0, 4.0, 1.0, 0.0, 4.0), (3.0, 4.0, 0.0, 1.0, -3.0),
        (-1.0, 2.0, 5 / 13, 12 / 13, 22 / 13)]


@pytest.mark.parametrize("x0,eps,alpha,sigma,v", HAND)
def test_values_worked_out_by_hand(x0, eps, alpha, sigma, v):
    assert v_target(x0, eps, alpha, sigma).item() == pytest.approx(v, abs=1e-12)


def test_is_the_velocity_of_x_t_along_the_circle():
    torch.manual_seed(0)
    x0, eps = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    phi = torch.tensor([0.1, 0.6, 1.0, 1.5], dtype=torch.float64).view(4, 1, 1, 1)
    h = 1e-6
    point = lambda p: torch.cos(p) * x0 + torch.sin(p) * eps  # noqa: E731
    velocity = (point(phi + h) - point(phi - h)) / (2 * h)
    v = make_target("v", x0, eps, torch.cos(phi), torch.sin(phi), False)
    assert v.shape == x0.shape
    torch.testing.assert_close(v, velocity, rtol=0, atol=1e-8)


def test_float32_in_float32_out():
    x0, eps = torch.ones(2, 3), torch.full((2, 3), 2.0)
    v = make_target("v", x0, eps, torch.full((2, 1), math.sqrt(0.5)), torch.full((2, 1), math.sqrt(0.5)), False)
    assert v.dtype == torch.float32 and v.shape == (2, 3)
