"""Exercise 4: the two-phase draw of t and the forward process (dae.py: DiffusionAutoencoder.loss and .diffuse).

Phase 1 trains the batch's first n_phase1 examples at t = 1; the forward process is x_t = alpha_t y_0 + sigma_t eps
with y_0 = gamma x_0. These tests bring their own schedule, alpha = (1 - t^2) / (1 + t^2) and sigma = 2t / (1 + t^2)
(alpha^2 + sigma^2 = 1 exactly; (12/13, 5/13) at t = 0.2, (3/5, 4/5) at t = 0.5, (0, 1) at t = 1), predict x_0,
and read what the decoder is given, so they need no other exercise.
"""
import pytest
import torch

from dae import DAEConfig, DiffusionAutoencoder
from unet import UNetConfig


class Rational:
    is_rf = False

    def alpha_sigma(self, t):
        return (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t)


def model(gamma=1.0):
    torch.manual_seed(0)
    net = UNetConfig(image_size=8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                     dropout=0.0, z_dim=8, enc_channel_mult=(1, 2), enc_num_res_blocks=1, z_map_channels=0)
    m = DiffusionAutoencoder(DAEConfig(net=net, schedule="rf", pred="x0", gamma=gamma))
    m.schedule = Rational()
    m.seen = {}

    def decoder_input(x_t, t, z):  # the network is replaced by a recorder that predicts 0
        m.seen.update(x_t=x_t.detach().clone(), t=t.detach().clone())
        return torch.zeros_like(x_t)

    m.forward = decoder_input
    return m


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)


@pytest.mark.parametrize("n_phase1,expected", [(0, [0.2, 0.5, 0.5, 0.2]), (1, [1.0, 0.5, 0.5, 0.2]),
                                               (2, [1.0, 1.0, 0.5, 0.2]), (4, [1.0, 1.0, 1.0, 1.0])])
def test_the_first_n_phase1_examples_are_at_t_1(n_phase1, expected):
    m, (x0, eps) = model(), batch()
    m.loss(x0, n_phase1, t=torch.tensor([0.2, 0.5, 0.5, 0.2]), eps=eps)
    assert m.seen["t"].tolist() == pytest.approx(expected), f"n_phase1 = {n_phase1}: the decoder saw t = " \
                                                            f"{m.seen['t'].tolist()}"


def test_forward_process_below_t_1_with_gamma():
    m, (x0, eps) = model(gamma=0.5), batch()
    m.loss(x0, 0, t=torch.tensor([0.2, 0.5, 0.5, 0.2]), eps=eps)
    expected = torch.stack([12 / 13 * 0.5 * x0[0] + 5 / 13 * eps[0], 3 / 5 * 0.5 * x0[1] + 4 / 5 * eps[1],
                            3 / 5 * 0.5 * x0[2] + 4 / 5 * eps[2], 12 / 13 * 0.5 * x0[3] + 5 / 13 * eps[3]])
    torch.testing.assert_close(m.seen["x_t"], expected, rtol=1e-6, atol=1e-6)


def test_the_target_is_y0_gamma_x0():
    """With the network predicting 0, the x_0-prediction loss is the mean of y_0^2 = (gamma x_0)^2."""
    m, (x0, eps) = model(gamma=0.5), batch()
    loss, _ = m.loss(x0, 1, t=torch.tensor([0.2, 0.5, 0.5, 0.2]), eps=eps)
    assert loss.item() == pytest.approx((0.25 * x0 ** 2).mean().item(), rel=1e-6)


def test_phase_1_is_pure_noise():
    m, (x0, eps) = model(gamma=0.5), batch()
    m.loss(x0, 4, t=torch.tensor([0.2, 0.5, 0.5, 0.2]), eps=eps)
    torch.testing.assert_close(m.seen["x_t"], eps, rtol=0, atol=1e-7)


def test_diffuse_per_example():
    m, (y0, eps) = model(), batch()
    x_t = m.diffuse(y0, eps, torch.tensor([0.2, 0.5, 1.0, 0.0]))
    expected = torch.stack([12 / 13 * y0[0] + 5 / 13 * eps[0], 3 / 5 * y0[1] + 4 / 5 * eps[1], eps[2], y0[3]])
    torch.testing.assert_close(x_t, expected, rtol=1e-6, atol=1e-6)
