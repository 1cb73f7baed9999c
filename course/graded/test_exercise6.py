"""Exercise 6: DDIM inversion (sample.py, ddim_encode).

The deterministic DDIM steps run from t = 0 up to t = 1 (Song et al. 2021 §4.3): walk the decoding grid
ts = [1, ..., 0] backwards, one ddim_step(model, x, z, from, to, clip) per interval. ddim_step (exercise 5) is
replaced here by a recorder, so these tests check the order of the steps and need no other exercise.
"""
import pytest
import torch

import sample
from schedules import time_grid


@pytest.fixture
def steps(monkeypatch):
    calls = []

    def recorder(model, x, z, t, s, clip):  # a step that leaves a trace: 2 x + s
        calls.append((model, z, t, s, clip))
        return 2 * x + s

    monkeypatch.setattr(sample, "ddim_step", recorder)
    return calls


@pytest.mark.parametrize("n", [1, 2, 4])
def test_steps_run_from_0_up_to_1(steps, n):
    x0 = torch.randn(2, 3, 4, 4)
    out = sample.ddim_encode("model", x0, "z", time_grid(n), clip=None)
    grid = [k / n for k in range(n + 1)]  # exact in float32 for these n
    assert [(t, s) for _, _, t, s, _ in steps] == list(zip(grid[:-1], grid[1:])), \
        f"steps taken (from, to): {[(round(t, 4), round(s, 4)) for _, _, t, s, _ in steps]}"
    expected = x0
    for s in grid[1:]:
        expected = 2 * expected + s
    torch.testing.assert_close(out, expected)


def test_model_latent_and_clip_are_passed_on(steps):
    sample.ddim_encode("model", torch.zeros(1, 3, 2, 2), "z", time_grid(3), clip=0.7)
    assert len(steps) == 3 and all(m == "model" and z == "z" and c == 0.7 for m, z, *_, c in steps)
    steps.clear()
    sample.ddim_encode("model", torch.zeros(1, 3, 2, 2), "z", time_grid(3))
    assert [c for *_, c in steps] == [None] * 3, "ddim_encode's clip defaults to None (no clamping)"
