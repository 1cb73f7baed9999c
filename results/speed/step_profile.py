"""Where a CPU run's training step spends its time: FLOPs per example, and torch.profiler's self time
of 5 eager steps (batch 32) split into convolution forward, convolution backward and the rest, and by
the resolution of each op's first input.

    python results/speed/step_profile.py                          # --preset cpu-v1 --recipe small (the profiles here)
    python results/speed/step_profile.py --preset cpu             # README's CPU run's network now
    python results/speed/step_profile.py --base-channels 24       # any train.py flags change it
"""
import os
import sys

import torch
from torch.profiler import profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from dae import DiffusionAutoencoder, count_params  # noqa: E402
from plumbing.device import device_model, train_flops_per_image  # noqa: E402
from plumbing.flags import model_config, parse_args  # noqa: E402


def main(argv):
    args = parse_args(["--preset", "cpu-v1", "--recipe", "small", "--data", "unused", *argv])
    torch.manual_seed(0)
    model = DiffusionAutoencoder(model_config(args))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    x0 = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1

    def step():  # train.py's step in fp32: forward, backward, clip, Adam
        loss, _ = model.loss(x0, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    for _ in range(3):
        step()
    with profile(record_shapes=True) as prof:
        for _ in range(5):
            step()
    times = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(times.values())
    backward = times.get("aten::convolution_backward", 0)
    forward = sum(v for k, v in times.items() if k in ("aten::mkldnn_convolution", "aten::_convolution",
                                                         "aten::convolution", "aten::conv2d"))
    # self time by the spatial size of each op's first input; 0 = 'other': not a square feature map of
    # one of the UNet's levels (this also keeps 3x3 and 1x1 kernels, and attention's shapes, out)
    levels = {args.image_size >> k for k in range(8) if args.image_size >> k >= 4}
    by_res = {}
    for e in prof.key_averages(group_by_input_shape=True):
        shape = e.input_shapes[0] if e.input_shapes else []
        res = shape[-1] if len(shape) == 4 and shape[-2] == shape[-1] and shape[-1] in levels else 0
        by_res[res] = by_res.get(res, 0) + e.self_cpu_time_total
    flops = train_flops_per_image(model, args.image_size, torch.device("cpu"))
    print(f"{device_model(torch.device('cpu'))}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"flags: {' '.join(argv) or '(none)'}; {count_params(model):,} parameters; "
          f"{flops / 1e9:.3f} GFLOP per training example")
    print(f"5 steps of {args.batch_size}: {total / 1e6:.2f} s of self time; convolution backward "
          f"{backward / total:.0%}, forward {forward / total:.0%}, everything else {1 - (backward + forward) / total:.0%}")
    print("by the resolution of the op's first input: " + ", ".join(
        f"{r} px {t / total:.0%}" if r else f"other {t / total:.0%}" for r, t in sorted(by_res.items(), reverse=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
