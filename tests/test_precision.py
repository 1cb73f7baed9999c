"""bf16 autocast and the other switches train.py uses on CUDA, exercised on the CPU so that the GPU
path cannot rot unseen: fused Adam, bf16 autocast, channels_last, and --precision's choices."""
import json
import os

import pytest
import torch

from plumbing import device as cli
from plumbing import flags as train_flags
from tools import bench
from conftest import TINY_FLAGS, run_cli
from test_model import perturbed, tiny

CUDA = torch.device("cuda")


def test_auto_precision_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(cli, "native_bf16", lambda device: True)
    assert cli.pick_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(cli, "native_bf16", lambda device: False)
    assert cli.pick_precision("auto", cpu) == "fp32"
    assert cli.pick_precision("bf16", cpu) == "bf16" and cli.pick_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="--precision bf16 runs on cpu and cuda, not on mps"):
        cli.pick_precision("bf16", torch.device("mps"))
    assert cli.pick_precision("auto", torch.device("mps")) == "fp32"


def test_amp_is_precision_bf16_and_old_checkpoints_resume():
    assert train_flags.parse_args(["--amp"]).precision == "bf16"
    assert train_flags.parse_args([]).precision == "auto"
    saved = train_flags.plain_args(train_flags.parse_args(["--preset", "cpu"]))
    del saved["precision"]
    for amp, precision in [(True, "bf16"), (False, "fp32")]:
        args = train_flags.merge_resume_args(train_flags.parse_args(["--resume"]), {**saved, "amp": amp})
        assert args.precision == precision and not hasattr(args, "amp")
    typed = train_flags.merge_resume_args(train_flags.parse_args(["--resume", "--precision", "fp32"]),
                                          {**saved, "amp": True})
    assert typed.precision == "fp32"


def cuda_step(precision):
    """One training step with what train.py uses on CUDA (fused Adam, channels_last), run on the CPU."""
    assert cli.use_channels_last(CUDA) and cli.optimizer_kwargs(CUDA) == {"fused": True}
    torch.manual_seed(0)
    m = perturbed(tiny()).to(memory_format=torch.channels_last)
    ema = tiny().requires_grad_(False)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, **cli.optimizer_kwargs(CUDA))
    params, ema_params = list(m.parameters()), list(ema.parameters())
    x0 = (torch.rand(4, 3, 16, 16) * 2 - 1).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    torch.manual_seed(1)
    with autocast:
        loss, _ = m.loss(x0, 2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    torch._foreach_lerp_(ema_params, params, 0.1)
    return loss.detach(), m, ema, opt


def test_cuda_switches_run_on_cpu_and_bf16_keeps_fp32_state():
    loss32, m32, _, _ = cuda_step("fp32")
    loss16, m16, ema16, opt16 = cuda_step("bf16")
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    # weights, EMA and Adam's moments stay fp32 under autocast
    assert all(p.dtype == torch.float32 for p in [*m16.parameters(), *ema16.parameters()])
    assert all(v.dtype == torch.float32 for s in opt16.state.values() for k, v in s.items() if k != "step")
    # bf16 rounds (8 bits of mantissa), but it is the same step: the loss agrees to bf16 accuracy, and
    # Adam's first update (-lr sign(g), up to eps) moves almost every weight the same way
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.05)
    start = torch.cat([p.detach().flatten() for p in perturbed(tiny()).parameters()])
    u32 = torch.cat([p.detach().flatten() for p in m32.parameters()]) - start
    u16 = torch.cat([p.detach().flatten() for p in m16.parameters()]) - start
    assert u32.abs().max() > 5e-4 and (u16.sign() == u32.sign()).float().mean() > 0.9


def test_train_in_bf16_records_it_and_evaluates_in_fp32(image_folder, tmp_path):
    out = str(tmp_path / "r")
    code, stdout, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "32",
                                "--precision", "bf16")
    assert code == 0, err
    assert "cpu, bf16" in stdout
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    assert ckpt["precision"] == "bf16" and ckpt["args"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    js = str(tmp_path / "e.json")
    code, _, err = run_cli("eval.py", "--ckpt", os.path.join(out, "ckpt.pt"), "--data", image_folder, "--n", "4",
                           "--steps", "2", "--device", "cpu", "--json", js)
    assert code == 0, err
    assert json.load(open(js))["train_precision"] == "bf16"


def test_bench_measures_both_precisions_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "matmul_gflops", lambda device, dtype=torch.float32: 1.0)  # not what is tested
    path = str(tmp_path / "b.json")
    bench.main(["--preset", "cpu", "--batch-size", "2", "--steps", "1", "--device", "cpu", "--json", path])
    r = json.load(open(path))
    assert list(r["precisions"]) == ["fp32", "bf16"] and r["device_model"]
    assert r["auto_precision"] == ("bf16" if r["native_bf16"] else "fp32")
    for m in r["precisions"].values():
        assert m["train_images_per_s"] > 0 and m["decode_images_per_s"] > 0 and m["utilisation"] > 0
    assert "| bf16 |" in bench.table([path])
