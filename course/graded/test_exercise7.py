"""Exercise 7: spherical interpolation of two noise tensors (sample.py, slerp).

slerp(a, b; w) = [sin((1 - w) theta) a + sin(w theta) b] / sin(theta), theta the angle between a and b, per example
over the flattened tensors (DiffAE §4). Orthogonal unit vectors give the point at angle w * 90 degrees.
"""
import math

import pytest
import torch

from sample import slerp

R3 = math.sqrt(3)


def rows(*values):
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("w,expected", [(1 / 3, (R3 / 2, 1 / 2)), (1 / 2, (math.sqrt(0.5), math.sqrt(0.5))),
                                        (2 / 3, (1 / 2, R3 / 2))])
def test_orthogonal_unit_vectors(w, expected):
    torch.testing.assert_close(slerp(rows([1.0, 0.0]), rows([0.0, 1.0]), w), rows(expected), rtol=0, atol=1e-9)


def test_vectors_of_norm_2_at_60_degrees():
    """b at 60 degrees from a, both of norm 2: the midpoint is at 30 degrees, norm 2 (lerp would shrink it)."""
    torch.testing.assert_close(slerp(rows([2.0, 0.0]), rows([1.0, R3]), 0.5), rows([R3, 1.0]), rtol=0, atol=1e-9)


def test_each_example_has_its_own_angle():
    a, b = rows([1.0, 0.0], [2.0, 0.0]), rows([0.0, 1.0], [1.0, R3])
    torch.testing.assert_close(slerp(a, b, 0.5), rows([math.sqrt(0.5), math.sqrt(0.5)], [R3, 1.0]), rtol=0, atol=1e-9)


def test_images_endpoints_shape_and_norm():
    torch.manual_seed(0)
    a, b = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(slerp(a, b, 0.0), a, rtol=0, atol=1e-9)
    torch.testing.assert_close(slerp(a, b, 1.0), b, rtol=0, atol=1e-9)
    mid = slerp(a, b, 0.5)
    assert mid.shape == a.shape
    ratio = mid.flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)
    assert ((ratio - 1).abs() < 0.05).all(), f"|slerp| / |a| at w = 0.5: {ratio.tolist()}"


def test_equal_tensors_give_themselves_without_nan():
    a = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out = slerp(a, a.clone(), 0.3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, a, rtol=0, atol=1e-9)
