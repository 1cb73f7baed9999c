"""Adversarial "trajectory matching" of epsilon-VAE (Zhao et al. 2024; ../shared/PAPERS.md section 3):
a small time-conditioned convolutional discriminator D(x, x_t, t) tells the decoder's one-step
estimate concat(x0_hat, x_t) from the truth concat(x_0, x_t) at the same noisy input x_t.

Losses (the non-saturating logistic GAN loss with R1, as StyleGAN; epsilon-VAE does not fix them):
    L_D  = softplus(D(x0_hat, x_t, t)) + softplus(-D(x_0, x_t, t)) + r1_weight / 2 ||grad_{x_0} D(x_0, x_t, t)||^2
    L_G  = adv_weight softplus(-D(x0_hat, x_t, t))          added to the decoder's loss after adv_start examples
D has its own Adam; train.py steps it once per training step on the batch the decoder just saw, and
saves it and its optimizer in the checkpoint so that a resumed run continues exactly.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from unet import group_norm, timestep_embedding


class Discriminator(nn.Module):
    """concat(x, x_t) (2C channels) -> a logit per example; each stage adds a projection of the time
    embedding (a per-channel bias), then halves the resolution."""

    def __init__(self, in_channels: int = 3, channels: int = 32, levels: int = 3):
        super().__init__()
        self.base = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU())
        self.conv_in = nn.Conv2d(2 * in_channels, channels, 3, padding=1)
        chans = [channels * 2 ** i for i in range(levels + 1)]
        self.time_proj = nn.ModuleList(nn.Linear(4 * channels, c) for c in chans[:-1])
        self.norms = nn.ModuleList(group_norm(c) for c in chans[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(chans, chans[1:]))
        self.out = nn.Linear(chans[-1], 1)

    def forward(self, x, x_t, t):
        emb = self.time_mlp(timestep_embedding(t, self.base))                         # (B, 4 c)
        h = self.conv_in(torch.cat([x, x_t], dim=1))                                # (B, c, H, W)
        for proj, norm, conv in zip(self.time_proj, self.norms, self.convs):
            h = conv(F.silu(norm(h) + proj(emb)[:, :, None, None]))                # (B, 2c, H/2, W/2), ...
        return self.out(F.silu(h).mean(dim=(2, 3))).squeeze(1)                     # (B,)


def generator_loss(disc, x0_hat, x_t, t) -> torch.Tensor:
    """Non-saturating: softplus(-D(x0_hat, x_t, t)), batch mean."""
    return F.softplus(-disc(x0_hat, x_t, t)).mean()


def r1_penalty(disc, x0, x_t, t) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ||grad_{x_0} D(x_0, x_t, t)||^2 per example, batch mean, on real inputs."""
    x0 = x0.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x0, x_t, t).sum(), x0, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def discriminator_step(disc, opt, x0_hat, x0, x_t, t, r1_weight: float) -> torch.Tensor:
    """One Adam step of D on a batch (everything detached from the decoder); returns L_D (no host sync)."""
    x0_hat, x0, x_t = x0_hat.detach().float(), x0.detach().float(), x_t.detach().float()
    loss = F.softplus(disc(x0_hat, x_t, t)).mean() + F.softplus(-disc(x0, x_t, t)).mean()
    if r1_weight > 0:
        loss = loss + 0.5 * r1_weight * r1_penalty(disc, x0, x_t, t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()
