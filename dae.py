"""The diffusion autoencoder (DiffAE, Preechakul et al. 2022) and its two-phase training loss
(Khungurn et al. 2025, "Revisiting Diffusion Autoencoder Training for Image Reconstruction Quality").

    z = Enc(x_0)                         semantic encoder, a 512-d vector
    x_t = alpha_t x_0 + sigma_t eps      forward process of the chosen schedule
    L = || f(x_t, t, z) - target ||^2    target = eps, x_0 or v (schedules.make_target)

Phase 1 (the first phase1_frac of all training examples): t = 1 for every example. Then x_t is pure
noise and the decoder can only use z: a plain autoencoder; with v-prediction the target is
v = alpha_1 eps - sigma_1 x_0 = -x_0. Phase 2: t from the training-time sampler (uniform by default).

Options of the related papers (../shared/PAPERS.md):
  KL latent (DGAE; SD-VAE's encoder): the encoder gives (mu, log sigma^2), training uses
      z = mu + sigma n, n ~ N(0, I), and adds kl_weight * KL(N(mu, sigma^2) || N(0, I)) summed over the
      latent and divided by the image's C H W (the scale of the per-value MSE); evaluation uses z = mu.
  Noise scaling gamma (epsilon-VAE, details unverified there): the diffusion runs on y_0 = gamma x_0,
      x_t = alpha_t gamma x_0 + sigma_t eps, which shifts log-SNR by 2 ln gamma. Our reading of "feed
      the network x_t / std(x_t)": the input is multiplied by c_in = sqrt(alpha^2 + sigma^2) /
      sqrt(gamma^2 alpha^2 + sigma^2), i.e. given the std x_t would have had without gamma (for the VP
      schedules exactly x_t / std(x_t) of unit-variance data), so gamma = 1 is the unscaled model.
      Targets and predictions live in y-space: x0_hat = y0_hat / gamma (to_data / to_diffusion).
  Scale equivariance (Skorokhodov et al. 2025, "Diffusability"; spatial latents only):
      L_SE = d(Down_s(x_0), Dec(Down_s(z))), Down_s = s x s average pooling, s drawn from se_scales per batch,
      added as se_weight * L_SE. Their decoder is deterministic; a diffusion decoder's "Dec" here is its
      one-step x0_hat from x_t = alpha_t Down_s(y_0) + sigma_t eps at t = 1 (se_t '1', the default): x_t is
      then pure noise, so the term can only be met through Down_s(z), the decoder used as a plain decoder.
      se_t 'same' takes the main term's t instead (the reading before; at small t the decoder meets it by
      denoising Down_s(y_0) whatever Down_s(z) holds: RESULTS.md, "Scale equivariance"). d is the
      mean-squared error in data space (our reading; the paper leaves both open for diffusion decoders).
  LPIPS (epsilon-VAE, DGAE) and adversarial trajectory matching (epsilon-VAE): terms on the one-step
      x0_hat (one_step_x0 of the Prediction the loss returns) that train.py's loop adds.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

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
    kl_weight: float = 0.0         # DGAE's beta: > 0 makes the latent a Gaussian with a KL term
    gamma: float = 1.0             # epsilon-VAE's noise scaling (they use 0.6); 1 = none
    se_weight: float = 0.0         # Diffusability's lambda of the scale-equivariance term; 0 = none
    se_scales: tuple = (2,)        # downsampling factors s of that term (the paper: 2x or 4x)
    se_t: str = "1"                # that term's decode: at t = 1 (from Down_s(z) alone), or 'same' t as the loss

    def to_dict(self) -> dict:
        """Plain types only, so that checkpoints load with torch.load(weights_only=True)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "DAEConfig":
        known = {f.name for f in fields(UNetConfig)}
        net = {k: tuple(v) if isinstance(v, list) else v for k, v in d["net"].items() if k in known}
        # a checkpoint written before se_t decoded the SE term at the loss's own t
        return DAEConfig(**{**d, "net": UNetConfig(**net), "se_scales": tuple(d.get("se_scales", (2,))),
                            "se_t": d.get("se_t", "same")})


def check_se(cfg: DAEConfig) -> None:
    """The scale-equivariance term needs a spatial latent that every factor s divides, and decoder inputs
    of H/s that the UNet's downsamplings divide."""
    if cfg.se_weight < 0:
        raise ValueError(f"the scale-equivariance weight (--se-weight) must be >= 0, got {cfg.se_weight}")
    if cfg.se_t not in ("1", "same"):
        raise ValueError(f"--se-t must be 1 or same, got {cfg.se_t!r}")
    if cfg.se_weight == 0:
        return
    net = cfg.net
    if net.latent != "spatial":
        raise ValueError("scale equivariance (--se-weight) downsamples a spatial latent: pass --latent spatial")
    side, unet_div = net.image_size // net.latent_down, 2 ** (len(net.channel_mult) - 1)
    if not cfg.se_scales:
        raise ValueError("--se-scales needs at least one factor")
    for s in cfg.se_scales:
        if s < 2 or side % s or (net.image_size // s) % unet_div:
            raise ValueError(f"--se-scales {s}: each factor must be >= 2 and divide the {side}x{side} latent, and "
                             f"the {net.image_size}/s image must split into the decoder's {unet_div}x{unet_div} "
                             f"downsamplings")


class DiffusionAutoencoder(nn.Module):
    def __init__(self, cfg: DAEConfig):
        super().__init__()
        if cfg.pred not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {cfg.pred!r}: choose eps, x0 or v")
        if not cfg.gamma > 0:
            raise ValueError(f"gamma must be positive, got {cfg.gamma}")
        check_se(cfg)
        self.cfg = cfg
        self.schedule = Schedule(cfg.schedule)
        self.encoder = Encoder(cfg.net, variational=cfg.kl_weight > 0)
        self.decoder = UNet(cfg.net)

    def loss(self, x0: torch.Tensor, n_phase1: int = 0, t=None, eps=None, noise=None, se_scale=None):
        """(the paper's loss plus the related papers' terms, Prediction). The batch's first n_phase1 examples
        are in phase 1, the rest in phase 2; t, eps, noise(like) (the KL and SE terms' N(0, I)) and the SE
        term's factor are drawn here unless given (train.py gives each process its share of the global
        batch's draws, and the factor, so that a compiled loss holds no host-side draw)."""
        noise = noise or gaussian
        if t is None:  # phase 2's t: uniform, or epsilon-VAE's logit-normal
            t = sample_t(len(x0), self.cfg.t_sampler, self.cfg.t_mean, self.cfg.t_std, device=x0.device)
        else:  # phase 1 overwrites a copy: the caller's t stays as given (and a CUDA graph's inputs unmutated)
            t = t.clone()
        eps = noise(x0) if eps is None else eps
        # BEGIN EXERCISE 4
        # phase 1: t = 1, so x_t is pure noise and the decoder must get everything from z
        if n_phase1 > 0:
            t[:n_phase1] = 1.0
        y0 = self.to_diffusion(x0)
        # END EXERCISE 4
        alpha, sigma = (bcast(a, x0) for a in self.schedule.alpha_sigma(t))
        x_t = self.diffuse(y0, eps, t)  # the forward process: x_t = alpha_t y_0 + sigma_t eps
        target = make_target(self.cfg.pred, y0, eps, alpha, sigma, self.schedule.is_rf)
        mu, logvar = self.posterior(x0)  # logvar is None unless the latent is DGAE's Gaussian
        z = mu if logvar is None else self.reparameterise(mu, logvar, noise)
        out = self(x_t, t, z)
        # L = || f(x_t, t, z) - target ||^2, the mean over the batch's values
        loss = F.mse_loss(out.float(), target.float())

        # the related papers' additions (module docstring): DGAE's KL term, Diffusability's SE term
        if logvar is not None:
            loss = loss + self.cfg.kl_weight * self.kl(mu.float(), logvar.float()).mean()
        if self.cfg.se_weight > 0:
            s = self.draw_se_scale() if se_scale is None else se_scale                # one factor per batch
            loss = loss + self.cfg.se_weight * self.se_loss(x0, z, t, s, noise)
        return loss, Prediction(out, x_t, t)

    def one_step_x0(self, pred: "Prediction") -> torch.Tensor:
        """The one-step estimate x0_hat of a training prediction, in data space, on which the loop adds
        LPIPS and the adversarial term (rf: x0_hat = x_t - t v_hat)."""
        alpha, sigma = (bcast(a, pred.x_t) for a in self.schedule.alpha_sigma(pred.t))
        y0_hat, _ = to_x0_eps(self.cfg.pred, pred.out, pred.x_t, alpha, sigma, self.schedule.is_rf)
        return self.to_data(y0_hat)

    def reparameterise(self, mu, logvar, noise=None) -> torch.Tensor:
        """A draw of the KL latent: z = mu + sigma n, n ~ N(0, I)."""
        return mu + torch.exp(0.5 * logvar) * (noise or gaussian)(mu)

    def kl(self, mu, logvar) -> torch.Tensor:
        """Per example: KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2), divided
        by the C H W values of an image."""
        per_value = self.cfg.net.in_channels * self.cfg.net.image_size ** 2
        return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1) / per_value

    def draw_se_scale(self) -> int:
        """The SE term's factor s for one batch, uniform over se_scales (a Python int: it sets shapes)."""
        return self.cfg.se_scales[int(torch.randint(len(self.cfg.se_scales), ()))]

    def se_loss(self, x0, z, t, s: int, noise=None) -> torch.Tensor:
        """L_SE = || x0_hat(Down_s(z)) - Down_s(x_0) ||^2 with the one-step x0_hat at t = 1, or at the loss's t
        (cfg.se_t; module docstring)."""
        x0_s, z_s = F.avg_pool2d(x0, s), F.avg_pool2d(z, s)                      # (B, C, H/s, W/s), (B, c, h/s, w/s)
        if self.cfg.se_t == "1":  # x_t is pure noise: only Down_s(z) can tell the decoder what Down_s(x_0) is
            t = torch.ones_like(t)
        x_t = self.diffuse(self.to_diffusion(x0_s), (noise or gaussian)(x0_s), t)
        y0_hat, _ = self.predict(x_t, t, z_s)
        return F.mse_loss(self.to_data(y0_hat).float(), x0_s.float())

    def posterior(self, x0: torch.Tensor):
        """(mu, logvar) of the latent; logvar is None for a deterministic encoder."""
        h = self.encoder(x0)                                          # (B, z_dim) or (B, c, h, w), x2 with KL
        if self.cfg.kl_weight == 0:
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # as SD-VAE: keeps exp(logvar) finite early in training

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """The latent used for reconstruction: z = Enc(x_0), the mean for a KL latent."""
        return self.posterior(x0)[0]

    def diffuse(self, y0, eps, t):
        """The forward process at time t (a (B,) tensor), in the diffusion's space."""
        alpha, sigma = (bcast(a, y0) for a in self.schedule.alpha_sigma(t))
        # BEGIN EXERCISE 4
        # x_t = alpha_t y_0 + sigma_t eps
        return alpha * y0 + sigma * eps
        # END EXERCISE 4

    def to_diffusion(self, x0):
        """Data -> the space the diffusion runs in: y_0 = gamma x_0."""
        return self.cfg.gamma * x0

    def to_data(self, y0):
        return y0 / self.cfg.gamma

    def forward(self, x_t, t, z):
        """The raw network output (eps, y_0 or v, as cfg.pred says)."""
        if self.cfg.gamma != 1.0:
            alpha, sigma = (bcast(a, x_t) for a in self.schedule.alpha_sigma(t))
            # c_in = sqrt(alpha^2 + sigma^2) / sqrt(gamma^2 alpha^2 + sigma^2): the std x_t had without gamma
            x_t = x_t * torch.sqrt((alpha ** 2 + sigma ** 2) / ((self.cfg.gamma * alpha) ** 2 + sigma ** 2))
        return self.decoder(x_t, t, z)

    def predict(self, x_t, t, z):
        """(y0_hat, eps_hat) at time t (a (B,) tensor) from the network's output, in the diffusion's
        space (y_0 = gamma x_0; the data itself when gamma = 1)."""
        alpha, sigma = (bcast(a, x_t) for a in self.schedule.alpha_sigma(t))
        return to_x0_eps(self.cfg.pred, self(x_t, t, z), x_t, alpha, sigma, self.schedule.is_rf)


class Prediction(NamedTuple):
    """What DiffusionAutoencoder.loss hands the loop for the terms it adds (LPIPS, adversarial)."""
    out: torch.Tensor       # (B, C, H, W) the network's output (eps, y_0 or v)
    x_t: torch.Tensor       # (B, C, H, W) its noisy input
    t: torch.Tensor         # (B,) its times (1 for the phase-1 examples)


def gaussian(like: torch.Tensor) -> torch.Tensor:
    """N(0, I) of like's shape, device and dtype."""
    return torch.randn(like.shape, device=like.device, dtype=like.dtype)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
