"""Exercise 5: one deterministic DDIM step from t to s (sample.py, ddim_step).

x_s = alpha_s x0_hat + sigma_s eps_hat (Song et al. 2021, eq. 12 with eta = 0); with clip, x0_hat is clamped to
[-clip, clip] and eps_hat recomputed from it, eps_hat = (x_t - alpha_t x0_hat) / sigma_t. These tests bring a model
whose prediction is fixed and their own schedule, alpha = (1 - t^2) / (1 + t^2), sigma = 2t / (1 + t^2):
(3/5, 4/5) at t = 0.5 and (12/13, 5/13) at s = 0.2.
"""
import pytest
import torch

from sample import ddim_step


class Rational:
    is_rf = False

    def alpha_sigma(self, t):
        return (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t)


class Fixed:
    """Predicts (x0_hat, eps_hat) whatever it is given, and records what it was given."""
    schedule = Rational()

    def __init__(self, x0_hat, eps_hat):
        self.x0_hat, self.eps_hat, self.calls = x0_hat, eps_hat, []

    def predict(self, x, t, z):
        self.calls.append((x, t, z))
        return self.x0_hat, self.eps_hat


def tensors(*values):
    return [torch.tensor(v, dtype=torch.float64).view(len(v), 1, 1, 1).expand(len(v), 3, 2, 2) for v in values]


def test_step_without_clip():
    x0_hat, eps_hat, x = tensors([0.5, -0.25, 0.9], [-1.0, 0.5, 2.0], [0.3, 0.3, 0.3])
    out = ddim_step(Fixed(x0_hat, eps_hat), x, None, 0.5, 0.2, None)
    torch.testing.assert_close(out, 12 / 13 * x0_hat + 5 / 13 * eps_hat, rtol=0, atol=1e-12)


def test_the_model_is_asked_at_t_per_example():
    x0_hat, eps_hat, x = tensors([0.5, -0.25], [-1.0, 0.5], [0.3, 0.1])
    model, z = Fixed(x0_hat, eps_hat), torch.randn(2, 8)
    ddim_step(model, x, z, 0.5, 0.2, 1.0)
    (seen_x, seen_t, seen_z), = model.calls
    assert seen_x is x and seen_z is z, "predict must get the current x and the latent z"
    assert seen_t.shape == (2,) and seen_t.tolist() == [0.5, 0.5], f"t given to predict: {seen_t}"


def test_clip_clamps_x0_hat_and_recomputes_eps_hat():
    """x0_hat outside [-1, 1] is clamped; eps_hat then follows from x_t and the clamped x0_hat."""
    clamped, eps_true = tensors([-1.0, -0.5, 0.5, 1.0], [0.7, -0.2, 1.5, -1.1])
    x = 3 / 5 * clamped + 4 / 5 * eps_true                   # x_t at t = 0.5 of the clamped x_0 and eps_true
    x0_hat, = tensors([-2.0, -0.5, 0.5, 3.0])
    out = ddim_step(Fixed(x0_hat, torch.zeros_like(x)), x, None, 0.5, 0.2, 1.0)
    torch.testing.assert_close(out, 12 / 13 * clamped + 5 / 13 * eps_true, rtol=0, atol=1e-12)


@pytest.mark.parametrize("clip", [None, 0])
def test_no_clip_means_no_clamp(clip):
    x0_hat, eps_hat, x = tensors([-2.0, 3.0], [0.5, -0.5], [0.0, 0.0])
    out = ddim_step(Fixed(x0_hat, eps_hat), x, None, 0.5, 0.2, clip)
    torch.testing.assert_close(out, 12 / 13 * x0_hat + 5 / 13 * eps_hat, rtol=0, atol=1e-12)


def test_last_step_returns_x0_hat():
    x0_hat, eps_hat, x = tensors([0.5, -0.75], [2.0, 1.0], [0.1, 0.2])
    out = ddim_step(Fixed(x0_hat, eps_hat), x, None, 0.5, 0.0, 1.0)
    torch.testing.assert_close(out, x0_hat, rtol=0, atol=1e-12)
