"""Noise schedules, prediction targets and time grids.

Notation (../shared/PAPERS.md): continuous time t in [0, 1], t = 0 is clean data, t = 1 pure noise,
    x_t = alpha_t x_0 + sigma_t eps,    eps ~ N(0, I),    logsnr_t = log(alpha_t^2 / sigma_t^2).

Schedules
  linear   DDPM / DiffAE: beta_i from 1e-4 to 0.02 over T = 1000 steps (Ho et al. 2020).
  cosine   logsnr = -2 ln tan(pi t / 2)                      (Nichol & Dhariwal 2021, continuous form)
  sc<S>    logsnr = -2 ln tan(pi t / 2) + 2 ln S  (shifted cosine; Khungurn et al. 2025 use S = 4)
  rf       rectified flow: alpha = 1 - t, sigma = t         (epsilon-VAE, Zhao et al. 2024)

Targets: eps, x0, and v. For the variance-preserving schedules v = alpha eps - sigma x_0
(Salimans & Ho 2022); for rf the usual flow velocity v = eps - x_0 = dx_t/dt.
"""
import math

import torch

T_DDPM = 1000  # number of discrete DDPM steps behind the linear schedule


class Schedule:
    """alpha_t, sigma_t and logsnr_t of a named schedule: 'linear', 'cosine', 'sc<S>' or 'rf'."""

    def __init__(self, name: str):
        self.name = name
        self.shift = 1.0
        if name in ("linear", "cosine", "rf"):
            self.kind = name
        elif name.startswith("sc"):
            try:
                self.shift = float(name[2:])
            except ValueError:
                raise ValueError(f"malformed shifted-cosine schedule {name!r}: "
                                 f"expected sc<S> with a number S > 0, e.g. sc4") from None
            if not (self.shift > 0 and math.isfinite(self.shift)):
                raise ValueError(f"shifted-cosine schedule {name!r} needs a finite S > 0")
            self.kind = "sc"
        else:
            raise ValueError(f"unknown schedule {name!r}: choose linear, cosine, sc<S> (e.g. sc4) or rf")
        if self.kind == "linear":
            betas = torch.linspace(1e-4, 0.02, T_DDPM, dtype=torch.float64)
            # log alpha_bar at t = i / T for i = 0..T; index 0 is clean data (alpha_bar = 1),
            # index i >= 1 is DDPM's step i (1-based), so t = 1 is DDPM's last step.
            self.log_alpha_bar = torch.cat([torch.zeros(1, dtype=torch.float64),
                                            torch.cumsum(torch.log1p(-betas), 0)])

    @property
    def is_rf(self) -> bool:
        return self.kind == "rf"

    def alpha_sigma(self, t: torch.Tensor):
        """(alpha_t, sigma_t), same shape and dtype as t. Exact endpoints: no NaN at t = 0 or 1."""
        t = t.clamp(0.0, 1.0)
        if self.kind == "rf":
            return 1.0 - t, t
        if self.kind == "linear":
            # Piecewise-linear interpolation of log alpha_bar between the discrete steps:
            # t * T falls between indices i and i + 1.
            table = self.log_alpha_bar.to(device=t.device)
            pos = t.double() * T_DDPM
            i = pos.floor().clamp(max=T_DDPM - 1).long()
            w = pos - i
            log_ab = (table[i] * (1 - w) + table[i + 1] * w)
            alpha = torch.exp(0.5 * log_ab)
            sigma = torch.sqrt(0.0 - torch.expm1(log_ab))  # 1 - alpha_bar without cancellation near t = 0
            return alpha.to(t.dtype), sigma.to(t.dtype)
        # BEGIN EXERCISE 1
        # Cosine family. cos(pi t / 2) is written as sin(pi (1 - t) / 2) so that alpha(1) is exactly 0.
        c = torch.sin(0.5 * math.pi * (1.0 - t))
        s = torch.sin(0.5 * math.pi * t)
        # SC-S: alpha_bar = 1 / (1 + tan^2(pi t / 2) / S^2) = S^2 c^2 / (S^2 c^2 + s^2)
        norm = torch.sqrt((self.shift * c) ** 2 + s ** 2)
        return self.shift * c / norm, s / norm
        # END EXERCISE 1

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t^2 / sigma_t^2); +inf at t = 0 and -inf at t = 1 where the SNR is."""
        alpha, sigma = self.alpha_sigma(t)
        return 2.0 * (torch.log(alpha) - torch.log(sigma))


def bcast(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example (B,) tensor to broadcast against x of shape (B, ...)."""
    return a.reshape(-1, *([1] * (x.dim() - 1)))


def make_target(pred: str, x0, eps, alpha, sigma, rf: bool):
    """The regression target of the network for prediction type pred in {eps, x0, v}."""
    if pred == "eps":
        return eps
    if pred == "x0":
        return x0
    if pred == "v" and rf:
        # rectified flow: v = eps - x_0
        return eps - x0
    if pred == "v":
        # BEGIN EXERCISE 2
        # VP (Salimans & Ho 2022): v = alpha eps - sigma x_0
        return alpha * eps - sigma * x0
        # END EXERCISE 2
    raise ValueError(f"unknown prediction type {pred!r}: choose eps, x0 or v")


def _safe_div(num, den):
    """num / den, and 0 where den == 0 (the quantity is not identifiable there; 0 is its prior mean)."""
    return torch.where(den == 0, torch.zeros_like(num), num / torch.where(den == 0, torch.ones_like(den), den))


def to_x0_eps(pred: str, out, x_t, alpha, sigma, rf: bool):
    """Recover (x0_hat, eps_hat) from a network output of type pred, using x_t = alpha x_0 + sigma eps."""
    if pred == "eps":
        eps_hat = out
        # x_0 = (x_t - sigma eps) / alpha
        x0_hat = _safe_div(x_t - sigma * eps_hat, alpha)
    elif pred == "x0":
        x0_hat = out
        # eps = (x_t - alpha x_0) / sigma
        eps_hat = _safe_div(x_t - alpha * x0_hat, sigma)
    elif pred == "v" and rf:
        # v = eps - x_0 and x_t = (1 - t) x_0 + t eps  =>  x_0 = x_t - t v,  eps = x_t + (1 - t) v
        x0_hat = x_t - sigma * out
        eps_hat = x_t + alpha * out
    elif pred == "v":
        # BEGIN EXERCISE 3
        # v = alpha eps - sigma x_0 with alpha^2 + sigma^2 = 1  =>  x_0 = alpha x_t - sigma v,  eps = sigma x_t + alpha v
        x0_hat = alpha * x_t - sigma * out
        eps_hat = sigma * x_t + alpha * out
        # END EXERCISE 3
    else:
        raise ValueError(f"unknown prediction type {pred!r}: choose eps, x0 or v")
    return x0_hat, eps_hat


# ---- training-time samplers for t ----

def sample_t(n: int, kind: str = "uniform", mean: float = 0.0, std: float = 1.0, device=None):
    """t ~ U(0, 1), or logit-normal: t = sigmoid(u), u ~ N(mean, std) (epsilon-VAE; SD3)."""
    if kind == "uniform":
        return torch.rand(n, device=device)
    if kind == "logit-normal":
        return torch.sigmoid(mean + std * torch.randn(n, device=device))
    raise ValueError(f"unknown t sampler {kind!r}: choose uniform or logit-normal")


# ---- sampling-time grids: steps + 1 times from 1 (noise) down to 0 (data) ----

def time_grid(steps: int, kind: str = "uniform", device=None) -> torch.Tensor:
    """Decreasing times [1, ..., 0] for a sampler with `steps` steps.

    uniform      t_k = 1 - k / steps (DDIM with evenly spaced steps)
    reversed-log rho(u) = log(100 - 99 u) / log 100 on a uniform grid u (epsilon-VAE): dense near t = 1
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    if kind == "uniform":
        t = 1.0 - u
    elif kind == "reversed-log":
        t = torch.log(100.0 - 99.0 * u) / math.log(100.0)
    else:
        raise ValueError(f"unknown time grid {kind!r}: choose uniform or reversed-log")
    t[0], t[-1] = 1.0, 0.0
    return t.float().to(device)
