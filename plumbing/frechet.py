"""A Fréchet distance that needs no download: in the features of a small CIFAR-10 classifier that this
repo trains itself (tools/train_classifier.py; weights models/classifier.pt, with its log).

    FD = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

between the Gaussians fitted to two image sets' penultimate features (256-d, global average pooled),
the formula of FID (Heusel et al. 2017) in another network's features. It punishes blur and noise
alike, which the sharpness ratio (spectrum.py) cannot. It is NOT FID: its numbers are not comparable with
any published FID, and it means nothing on other data than 32 x 32 CIFAR-10-like images unless the
classifier is retrained on them (--data of tools/train_classifier.py). Named `fd_classifier` in eval records.
"""
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from data import to_float

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "classifier.pt")


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


class Classifier(nn.Module):
    """A ResNet-ish net for 32 x 32 images in [-1, 1]: 32 -> 16 -> 8 -> 4 px at 64, 128, 256 channels."""

    def __init__(self, width: int = 32, classes: int = 10):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_bn(3, w),
            conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
            conv_bn(2 * w, 4 * w), nn.MaxPool2d(2), Residual(4 * w),
            conv_bn(4 * w, 8 * w), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * w, classes)
        self.width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 8 width) penultimate features: the body's output, averaged over positions."""
        return self.body(x).mean((2, 3))

    def forward(self, x):
        return self.head(self.features(x))


def load_classifier(path: str = WEIGHTS) -> Classifier:
    """The trained classifier (eval mode, CPU, fp32), or one sentence saying why it cannot be had."""
    if not os.path.exists(path):
        raise ValueError(f"no classifier at {path}: train one with python -m tools.train_classifier --data PATH "
                         f"--out {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = Classifier(state["width"], state["classes"])
        net.load_state_dict(state["weights"])
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a classifier written by tools/train_classifier.py "
                         f"({type(e).__name__})") from None
    return net.eval()


def features(net: Classifier, images_u8: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """(N, D) float64 features of a uint8 image set (N, 3, 32, 32), computed in fp32 on the CPU."""
    if images_u8.dtype != torch.uint8 or images_u8.dim() != 4 or tuple(images_u8.shape[1:]) != (3, 32, 32):
        raise ValueError(f"the classifier's features need uint8 images of 3 x 32 x 32, got "
                         f"{tuple(images_u8.shape[1:])} {images_u8.dtype}")
    out = []
    with torch.inference_mode():
        for i in range(0, len(images_u8), batch_size):
            out.append(net.features(to_float(images_u8[i:i + batch_size])).double())
    return torch.cat(out).numpy()


def frechet_distance(f_a: np.ndarray, f_b: np.ndarray) -> float:
    """FD between Gaussians fitted to two (N, D) feature sets. tr (S_a S_b)^(1/2) is the sum of the square
    roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (symmetric, so no complex square root)."""
    if len(f_a) < 2 or len(f_b) < 2:
        raise ValueError("a Fréchet distance needs at least 2 images in each set")
    mu_a, mu_b = f_a.mean(0), f_b.mean(0)
    s_a, s_b = np.cov(f_a, rowvar=False), np.cov(f_b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    m = root_a @ s_b @ root_a
    tr_sqrt = np.sqrt(np.linalg.eigvalsh((m + m.T) / 2).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt)


def fd_classifier(net: Classifier, real_u8: torch.Tensor, fake_u8: torch.Tensor) -> float:
    """The Fréchet distance between two uint8 image sets in the classifier's features."""
    return frechet_distance(features(net, real_u8), features(net, fake_u8))


def accuracy(net: Classifier, images_u8: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        logits = torch.cat([net(to_float(images_u8[i:i + 500])) for i in range(0, len(images_u8), 500)])
    return float((logits.argmax(1) == labels).float().mean())


def blur(images_u8: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (separable, 7 taps, reflect padding) of uint8 images; for the tests and the anchors."""
    if sigma <= 0:
        return images_u8.clone()
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.pad(images_u8.float(), (3, 3, 3, 3), mode="reflect")
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, 7).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, k.view(1, 1, 7, 1).repeat(c, 1, 1, 1), groups=c)
    return x.round().clamp(0, 255).to(torch.uint8)


def add_noise(images_u8: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Additive Gaussian noise of `std` (in uint8 units), seeded; for the tests and the anchors."""
    g = torch.Generator().manual_seed(seed)
    return (images_u8.float() + std * torch.randn(images_u8.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)
