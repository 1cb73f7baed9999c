"""The phase-2 training loss of decoders that ignore x_t, under a schedule, on held-out images: what
the loss plateau after the phase switch is compared with (README: the phase switch).

    python results/switch/trivial_losses.py ../shared/data/cifar10-jpeg/train > results/switch/trivial-losses.json
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from data import load_images, to_float  # noqa: E402
from schedules import Schedule, make_target  # noqa: E402

folder, schedule, n = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "sc4"), 500
torch.manual_seed(0)
x0 = to_float(load_images(folder, "heldout", 1000, 32)[:n])
t = torch.rand(n)  # phase 2: t ~ U(0, 1)
alpha, sigma = (a.view(-1, 1, 1, 1) for a in Schedule(schedule).alpha_sigma(t))
eps = torch.randn_like(x0)
v = make_target("v", x0, eps, alpha, sigma, rf=False)  # the v target
print(json.dumps({
    "schedule": schedule, "images": n, "E_alpha2": (alpha ** 2).mean().item(),
    "loss_v_hat_zero": (v ** 2).mean().item(),                         # predicts nothing
    "loss_v_hat_minus_x0": ((v + x0) ** 2).mean().item(),              # phase 1's answer, exact x0
    "loss_v_hat_minus_mean_image": ((v + x0.mean(0, keepdim=True)) ** 2).mean().item(),
}, indent=2))
