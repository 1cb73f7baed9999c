"""epsilon-VAE's adversarial trajectory matching: the discriminator, R1 and one step of it."""
import pytest
import torch

from discriminator import Discriminator, discriminator_step, generator_loss, r1_penalty


@pytest.mark.parametrize("size", [16, 32])
def test_discriminator_gives_a_logit_per_example_and_reads_t(size):
    torch.manual_seed(0)
    d = Discriminator(3, channels=8)
    x, x_t = torch.randn(4, 3, size, size), torch.randn(4, 3, size, size)
    out = d(x, x_t, torch.full((4,), 0.3))
    assert out.shape == (4,)
    assert not torch.allclose(out, d(x, x_t, torch.full((4,), 0.9)))


class LinearD(torch.nn.Module):
    """D(x, x_t, t) = <w, x>: its gradient in x is w, so R1 = ||w||^2; w = 0 is a constant D."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, x_t, t):
        return (x * self.w).flatten(1).sum(1)


def test_r1_closed_form_and_zero_for_a_constant_discriminator():
    w = torch.randn(3, 8, 8)
    x, x_t, t = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8), torch.rand(5)
    assert r1_penalty(LinearD(w), x, x_t, t).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    assert r1_penalty(LinearD(torch.zeros(3, 8, 8)), x, x_t, t).item() == 0.0


def test_discriminator_steps_learn_real_from_fake_and_the_generator_term_opposes_them():
    torch.manual_seed(0)
    d = Discriminator(3, channels=8)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.9))
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    fake = real.mean(dim=(2, 3), keepdim=True).expand_as(real)  # a blurred (flat) estimate of each image
    x_t, t = torch.randn_like(real), torch.rand(8)
    g_before = generator_loss(d, fake, x_t, t).item()
    for _ in range(30):
        discriminator_step(d, opt, fake, real, x_t, t, r1_weight=0.1)
    assert (d(real, x_t, t) > d(fake, x_t, t)).all()
    assert generator_loss(d, fake, x_t, t).item() > g_before  # the decoder now pays for its blurred estimate
