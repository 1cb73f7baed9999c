"""The DiffAE networks: a conditional UNet decoder and the semantic encoder.

Decoder: the ADM / DDPM UNet (Ho et al. 2020; Dhariwal & Nichol 2021) as DiffAE uses it
(Preechakul et al. 2022). Every ResBlock is conditioned by adaptive group normalisation (AdaGN):
    h = GN(h) * (1 + s_t) + b_t,   (s_t, b_t) = Linear(emb_t)
    h = h * (1 + s_z),             s_z = Linear(z)
Encoder: the down half of the same UNet without time input, then GN -> SiLU -> global average pool
-> linear to z (512-d in DiffAE and in Khungurn et al. 2025).

Spatial latent (latent='spatial'; epsilon-VAE, DGAE, SD-VAE style): the encoder stops at H/f x W/f
(f = latent_down) and a 3x3 conv gives latent_channels channels; the decoder gets z by nearest-
neighbour upsampling to H x W and channel concatenation with x_t, and no AdaGN z term.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class UNetConfig:
    image_size: int = 32
    in_channels: int = 3
    base_channels: int = 128            # DDPM CIFAR-10 UNet: 128
    channel_mult: tuple = (1, 2, 2, 2)  # DDPM CIFAR-10 UNet: (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (16,)     # self-attention at 16x16
    head_channels: int = 64
    dropout: float = 0.1
    z_dim: int = 512
    enc_channel_mult: tuple = (1, 2, 2, 2)
    enc_num_res_blocks: int = 2
    # 'mean' = DiffAE's global average pool; 'flatten' = keep the final feature map's layout
    # (our departure for small CPU models, where learning positions through a pooled vector is slow).
    enc_pool: str = "mean"
    # > 0: also feed z to the decoder as a spatial map: Linear(z) -> (z_map_channels, H/4, W/4),
    # nearest-upsampled and concatenated with x_t, as epsilon-VAE and DGAE condition on their latents.
    # 0 = DiffAE (z enters through AdaGN only).
    z_map_channels: int = 0
    # 'vector' = DiffAE's z_dim vector; 'spatial' = a (latent_channels, H/latent_down, W/latent_down) map
    latent: str = "vector"
    latent_channels: int = 4
    latent_down: int = 4
    # decoder upsampling: 'conv' = nearest x2 then a 3x3 conv (DDPM, ADM, DiffAE); 'transpose' = a 2x2
    # stride-2 transposed conv (U-Net's up-convolution, Ronneberger et al. 2015), 1/9 of the MACs
    upsample: str = "conv"
    # GroupNorm's groups (DDPM: 32), gcd(norm_groups, channels) at each width. With 32 groups a 32-channel
    # layer normalises each channel alone; 4 groups learn faster at the cpu preset's size (results/speed)
    norm_groups: int = 32


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)  # `groups` groups when the channels allow it


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017) of 1000 t, i.e. DDPM's step index scale."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]                                   # (B, dim/2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)                          # (B, dim)


class ResBlock(nn.Module):
    """GN-SiLU-conv, AdaGN on (t, z), SiLU-dropout-conv(zero init), plus a skip connection.
    With emb_dim = 0 (the encoder) the AdaGN becomes a plain GroupNorm."""

    def __init__(self, c_in, c_out, emb_dim, z_dim, dropout, groups=32):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = group_norm(c_out, groups)
        self.emb = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None      # -> (s_t, b_t)
        self.cond = nn.Linear(z_dim, c_out) if z_dim else None             # -> s_z
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb=None, z=None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.emb is not None:
            s_t, b_t = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)   # (B, C, 1, 1) each
            # AdaGN: GN(h) (1 + s_t) + b_t, then (1 + s_z)
            h = h * (1 + s_t) + b_t
            if self.cond is not None:
                h = h * (1 + self.cond(z)[:, :, None, None])
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, with a zero-initialised output projection."""

    def __init__(self, channels, head_channels, groups=32):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x, *_):
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)                                # (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)                              # (B, heads, HW, C/heads)
        h = h.transpose(-1, -2).reshape(B, C, H, W)                               # (B, C, H, W)
        return x + self.proj(h)


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, *_):
        return self.conv(x)


class Up(nn.Module):
    def __init__(self, c, kind="conv"):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(c, c, 3, padding=1) if kind == "conv" else nn.ConvTranspose2d(c, c, 2, stride=2)

    def forward(self, x, *_):
        if self.kind == "conv":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x)


def run(layers, h, emb, z):
    for layer in layers:
        h = layer(h, emb, z)
    return h


def down_path(cfg: UNetConfig, mult, n_res, emb_dim, z_dim):
    """The UNet's down path as a list of stages, plus the channel count of every skip output."""
    ch = cfg.base_channels
    stages, skip_ch, res = [], [ch], cfg.image_size
    for level, m in enumerate(mult):
        for _ in range(n_res):
            stage = [ResBlock(ch, cfg.base_channels * m, emb_dim, z_dim, cfg.dropout, cfg.norm_groups)]
            ch = cfg.base_channels * m
            if res in cfg.attn_resolutions:
                stage.append(Attention(ch, cfg.head_channels, cfg.norm_groups))
            stages.append(nn.ModuleList(stage))
            skip_ch.append(ch)
        if level != len(mult) - 1:
            stages.append(nn.ModuleList([Down(ch)]))
            skip_ch.append(ch)
            res //= 2
    return nn.ModuleList(stages), skip_ch, ch, res


def middle(ch, emb_dim, z_dim, cfg):
    g = cfg.norm_groups
    return nn.ModuleList([ResBlock(ch, ch, emb_dim, z_dim, cfg.dropout, g), Attention(ch, cfg.head_channels, g),
                          ResBlock(ch, ch, emb_dim, z_dim, cfg.dropout, g)])


class UNet(nn.Module):
    """Decoder: predicts eps, x_0 or v from (x_t, t, z)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        check_config(cfg)
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.base = ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.spatial = cfg.latent == "spatial"
        z_dim = 0 if self.spatial else cfg.z_dim                     # AdaGN's z term: vector latents only
        extra = cfg.latent_channels if self.spatial else cfg.z_map_channels
        self.z_map = None
        if cfg.z_map_channels:
            self.map_side = cfg.image_size // 4
            self.z_map = nn.Linear(cfg.z_dim, cfg.z_map_channels * self.map_side ** 2)
        self.conv_in = nn.Conv2d(cfg.in_channels + extra, ch, 3, padding=1)
        self.down, skip_ch, ch, res = down_path(cfg, cfg.channel_mult, cfg.num_res_blocks, emb_dim, z_dim)
        self.mid = middle(ch, emb_dim, z_dim, cfg)
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                stage = [ResBlock(ch + skip_ch.pop(), cfg.base_channels * m, emb_dim, z_dim,
                                   cfg.dropout, cfg.norm_groups)]
                ch = cfg.base_channels * m
                if res in cfg.attn_resolutions:
                    stage.append(Attention(ch, cfg.head_channels, cfg.norm_groups))
                if level and i == cfg.num_res_blocks:
                    stage.append(Up(ch, cfg.upsample))
                    res *= 2
                self.up.append(nn.ModuleList(stage))
        self.out = nn.Sequential(group_norm(ch, cfg.norm_groups), nn.SiLU(),
                                 zero_init(nn.Conv2d(ch, cfg.in_channels, 3, padding=1)))

    def forward(self, x_t, t, z):
        emb = self.time_mlp(timestep_embedding(t, self.base))                    # (B, 4 base)
        if self.spatial:
            # epsilon-VAE / DGAE: z nearest-upsampled to the image size, concatenated with x_t
            up = F.interpolate(z, size=x_t.shape[-2:], mode="nearest").to(x_t.dtype)  # (B, c, H, W)
            x_t, z = torch.cat([x_t, up], dim=1), None
        elif self.z_map is not None:
            m = self.z_map(z).view(z.shape[0], -1, self.map_side, self.map_side)  # (B, c, H/4, W/4)
            x_t = torch.cat([x_t, F.interpolate(m, size=x_t.shape[-2:], mode="nearest").to(x_t.dtype)], dim=1)
        h = self.conv_in(x_t)                                                     # (B, base, H, W)
        skips = [h]
        for stage in self.down:
            h = run(stage, h, emb, z)
            skips.append(h)
        h = run(self.mid, h, emb, z)
        for stage in self.up:
            h = run(stage, torch.cat([h, skips.pop()], dim=1), emb, z)
        return self.out(h)                                                        # (B, C, H, W)


def check_config(cfg: UNetConfig) -> None:
    if cfg.norm_groups < 1:
        raise ValueError(f"norm_groups must be at least 1, got {cfg.norm_groups}")
    if cfg.upsample not in ("conv", "transpose"):
        raise ValueError(f"unknown upsampling {cfg.upsample!r}: choose conv or transpose")
    if cfg.latent not in ("vector", "spatial"):
        raise ValueError(f"unknown latent {cfg.latent!r}: choose vector or spatial")
    if cfg.latent == "spatial":
        f = cfg.latent_down
        if f < 1 or f & (f - 1) or cfg.image_size % f:
            raise ValueError(f"latent_down must be a power of 2 that divides the image size {cfg.image_size}, "
                             f"got {f}")
        if cfg.z_map_channels:
            raise ValueError("z_map_channels feeds a vector latent as a map; a spatial latent is one already")


def spatial_mult(cfg: UNetConfig) -> tuple:
    """The encoder's channel multipliers for a spatial latent: log2(f) downsamplings, so log2(f) + 1
    levels of enc_channel_mult (its last value repeated if it has fewer)."""
    levels = cfg.latent_down.bit_length()                                     # log2(f) + 1
    mult = tuple(cfg.enc_channel_mult)
    return (mult + mult[-1:] * levels)[:levels]


class Encoder(nn.Module):
    """Semantic encoder: x_0 -> z (DiffAE: down path, GN, SiLU, global average pool, linear), or a
    spatial latent (down path to H/f, GN, SiLU, 3x3 conv). variational: twice the outputs, (mu, log sigma^2)."""

    def __init__(self, cfg: UNetConfig, variational: bool = False):
        super().__init__()
        check_config(cfg)
        if cfg.enc_pool not in ("mean", "flatten"):
            raise ValueError(f"unknown encoder pooling {cfg.enc_pool!r}: choose mean or flatten")
        self.spatial, self.pool = cfg.latent == "spatial", cfg.enc_pool
        mult = spatial_mult(cfg) if self.spatial else cfg.enc_channel_mult
        k = 2 if variational else 1
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.base_channels, 3, padding=1)
        self.down, _, ch, res = down_path(cfg, mult, cfg.enc_num_res_blocks, 0, 0)
        self.mid = middle(ch, 0, 0, cfg)
        self.norm = group_norm(ch, cfg.norm_groups)
        if self.spatial:
            self.head = nn.Conv2d(ch, k * cfg.latent_channels, 3, padding=1)
        else:
            feat = ch if cfg.enc_pool == "mean" else ch * res * res
            self.fc = nn.Linear(feat, k * cfg.z_dim)

    def forward(self, x0):
        h = run(self.mid, run_stages(self.down, self.conv_in(x0)), None, None)    # (B, C, h, w)
        h = F.silu(self.norm(h))
        if self.spatial:
            return self.head(h)                                                   # (B, k c, H/f, W/f)
        h = h.mean(dim=(2, 3)) if self.pool == "mean" else h.flatten(1)          # (B, C) or (B, C h w)
        return self.fc(h)                                                         # (B, k z_dim)


def run_stages(stages, h):
    for stage in stages:
        h = run(stage, h, None, None)
    return h
