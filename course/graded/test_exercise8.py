"""Exercise 8: SSIM of two image batches (eval.py, ssim).

SSIM = (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)) (Wang et al. 2004), with
local statistics under an 11 x 11 Gaussian window (sigma 1.5) per channel, C1 = (0.01 L)^2, C2 = (0.03 L)^2 for
data range L, averaged over channels and positions. padding 0: valid positions only; padding 5: every pixel, the
window's pixels outside the image counted as 0. The reference below loops over pixels and writes SSIM as Wang et
al.'s product of luminance, contrast and structure (with C3 = C2 / 2 it equals the formula above).
"""
import math

import numpy as np
import pytest
import torch

from eval import ssim


def reference(x, y, padding, data_range=255.0, size=11, sd=1.5):
    """Mean SSIM of one image pair (C, H, W), by loops over channels, pixels and the window."""
    r = size // 2
    w1 = [math.exp(-((i - r) ** 2) / (2 * sd * sd)) for i in range(size)]
    w1 = [v / sum(w1) for v in w1]
    c1, c2 = data_range ** 2 / 1e4, 9 * data_range ** 2 / 1e4  # (0.01 L)^2, (0.03 L)^2
    C, H, W = x.shape
    values = []
    for c in range(C):
        for i in range(r - padding, H - r + padding):
            for j in range(r - padding, W - r + padding):
                sx = sy = sxx = syy = sxy = 0.0
                for di in range(size):
                    for dj in range(size):
                        p, q = i + di - r, j + dj - r
                        if 0 <= p < H and 0 <= q < W:
                            wt, u, v = w1[di] * w1[dj], float(x[c, p, q]), float(y[c, p, q])
                            sx, sy, sxx, syy, sxy = sx + wt * u, sy + wt * v, sxx + wt * u * u, syy + wt * v * v, \
                                sxy + wt * u * v
                vx, vy, cov = sxx - sx ** 2, syy - sy ** 2, sxy - sx * sy
                dx, dy = math.sqrt(max(vx, 0.0)), math.sqrt(max(vy, 0.0))
                luminance = (2 * sx * sy + c1) / (sx ** 2 + sy ** 2 + c1)
                contrast = (2 * dx * dy + c2) / (vx + vy + c2)
                structure = (cov + c2 / 2) / (dx * dy + c2 / 2)
                values.append(luminance * contrast * structure)
    return float(np.mean(values))


def pair(seed=0, shape=(2, 3, 12, 14), noise=30):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    b = (a.double() + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 255).round()
    return a, b.to(torch.uint8)


@pytest.mark.parametrize("padding", [0, 5])
def test_against_a_loop_over_pixels(padding):
    a, b = pair()
    got = ssim(a, b, padding=padding)
    assert got.shape == (2,), f"one SSIM per image, got shape {tuple(got.shape)}"
    want = [reference(a[k], b[k], padding) for k in range(2)]
    assert got.tolist() == pytest.approx(want, abs=1e-9), f"padding {padding}: got {got.tolist()}, want {want}"


@pytest.mark.parametrize("padding", [0, 5])
def test_identical_images_score_1(padding):
    a, _ = pair(1)
    assert ssim(a, a.clone(), padding=padding).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_constant_images():
    """Flat images 100 and 150: no variance, so SSIM is the luminance term (2 100 150 + C1) / (100^2 + 150^2 + C1)."""
    a, b = torch.full((1, 3, 12, 12), 100, dtype=torch.uint8), torch.full((1, 3, 12, 12), 150, dtype=torch.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b).item() == pytest.approx((30000 + c1) / (32500 + c1), abs=1e-12)


def test_the_data_range_sets_the_constants():
    """The same images in [0, 1] with data_range 1 score as in [0, 255] with 255."""
    a, b = pair(2)
    for padding in (0, 5):
        torch.testing.assert_close(ssim(a.double() / 255, b.double() / 255, data_range=1.0, padding=padding),
                                   ssim(a, b, padding=padding), rtol=0, atol=1e-12)
