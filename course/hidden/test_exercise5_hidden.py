"""Hidden tests of exercise 5 (instructors only): a step from t = 0 (sigma_t = 0) with the clip on."""
import os
import sys

import torch

from sample import ddim_step

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "graded"))
from test_exercise5 import Fixed  # noqa: E402  (the graded tests' fixed-prediction model and schedule)


def test_clip_at_sigma_t_0_keeps_the_network_eps():
    """At t = 0 eps_hat cannot be recomputed (sigma_t = 0): the network's is kept, and nothing is NaN."""
    x0_hat, eps_hat = torch.full((2, 3, 2, 2), 2.0, dtype=torch.float64), torch.full((2, 3, 2, 2), 0.5, dtype=torch.float64)
    out = ddim_step(Fixed(x0_hat, eps_hat), torch.zeros_like(x0_hat), None, 0.0, 0.5, 1.0)
    torch.testing.assert_close(out, 3 / 5 * torch.ones_like(out) + 4 / 5 * eps_hat, rtol=0, atol=1e-12)
