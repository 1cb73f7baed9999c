"""The diffusion autoencoder (DiffAE, Preechakul et al. 2022) and its two-phase training loss
(Khungurn et al. 2025, "Revisiting Diffusion Autoencoder Training for Image Reconstruction Quality").

    z = Enc(x_0)                         semantic encoder, a 512-d vector
    x_t = alpha_t x_0 + sigma_t eps      forward process of the chosen schedule
    L = || f(x_t, t, z) - target ||^2    target = eps, x_0 or v (schedules.make_target)

Phase 1 (the first phase1_frac of all training examples): t = 1 for every example. Then x_t is pure
noise and the decoder can only use z: a plain autoencoder; with v-prediction the target is
v = alpha_1 eps - sigma_1 x_0 = -x_0. Phase 2: t from the training-time sampler (uniform by default).
"""
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from schedules import Schedule, bcast, make_target, sample_t, to_x0_eps
from unet import Encoder, UNet, UNetConfig

PREDICTIONS = ("eps", "x0", "v")


@dataclass
class DAEConfig:
    net: UNetConfig = field(default_factory=UNetConfig)
    schedule: str = "sc4"          # Khungurn et al.: SC-4 in phase 2
    pred: str = "v"                # Khungurn et al.: v-prediction (eps fails with SC-4)
    t_sampler: str = "uniform"     # or 'logit-normal' (epsilon-VAE)
    t_mean: float = 0.0
    t_std: float = 1.0

    def to_dict(self) -> dict:
        """Plain types only, so that checkpoints load with torch.load(weights_only=True)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "DAEConfig":
        known = {f.name for f in fields(UNetConfig)}
        net = {k: tuple(v) if isinstance(v, list) else v for k, v in d["net"].items() if k in known}
        return DAEConfig(**{**d, "net": UNetConfig(**net)})


class DiffusionAutoencoder(nn.Module):
    def __init__(self, cfg: DAEConfig):
        super().__init__()
        if cfg.pred not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {cfg.pred!r}: choose eps, x0 or v")
        self.cfg = cfg
        self.schedule = Schedule(cfg.schedule)
        self.encoder = Encoder(cfg.net)
        self.decoder = UNet(cfg.net)

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        return self.encoder(x0)                                                  # (B, z_dim)

    def forward(self, x_t, t, z):
        """The raw network output (eps, x_0 or v, as cfg.pred says)."""
        return self.decoder(x_t, t, z)

    def predict(self, x_t, t, z):
        """(x0_hat, eps_hat) at time t (a (B,) tensor) from the network's output."""
        alpha, sigma = (bcast(a, x_t) for a in self.schedule.alpha_sigma(t))
        return to_x0_eps(self.cfg.pred, self(x_t, t, z), x_t, alpha, sigma, self.schedule.is_rf)

    def loss(self, x0: torch.Tensor, n_phase1: int = 0) -> torch.Tensor:
        """Mean-squared error of the prediction. The first n_phase1 examples of the batch are in
        phase 1 (t = 1); the rest in phase 2 (t from the sampler). A batch that straddles the phase
        switch is split, so the switch happens at exactly phase1_frac * examples."""
        B = x0.shape[0]
        t = sample_t(B, self.cfg.t_sampler, self.cfg.t_mean, self.cfg.t_std, device=x0.device)
        if n_phase1 > 0:
            t[:n_phase1] = 1.0
        eps = torch.randn_like(x0)
        alpha, sigma = (bcast(a, x0) for a in self.schedule.alpha_sigma(t))
        # forward process: x_t = alpha_t x_0 + sigma_t eps
        x_t = alpha * x0 + sigma * eps
        target = make_target(self.cfg.pred, x0, eps, alpha, sigma, self.schedule.is_rf)
        out = self(x_t, t, self.encode(x0))
        return F.mse_loss(out.float(), target.float())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
