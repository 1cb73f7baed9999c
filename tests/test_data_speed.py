"""The in-memory data path, EMA, the training step, and bench.py."""
import json

import pytest
import torch

import train
from conftest import run_cli
from data import batch_indices, load_images, split_files, to_float, to_uint8


def test_batch_indices_walk_one_permutation_per_epoch():
    n, B = 50, 8
    stream = torch.cat([batch_indices(s, B, n, seed=3) for s in range(25)])   # 200 examples = 4 epochs
    for e in range(4):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))
    assert not torch.equal(stream[:n], stream[n:2 * n])
    assert torch.equal(batch_indices(7, B, n, 3), stream[56:64])  # a step's batch depends on the step alone


def test_heldout_split_is_fixed_and_disjoint(image_folder):
    import data
    files = data.list_images(image_folder)
    train_files, held = split_files(files, "train", 8), split_files(files, "heldout", 8)
    assert len(held) == 8 and len(train_files) == 40 and not set(held) & set(train_files)
    assert held == split_files(list(reversed(files))[::-1], "heldout", 8)
    with pytest.raises(ValueError):
        split_files(files, "train", 48)


def test_folder_images_are_cropped_and_resized(image_folder):
    x = load_images(image_folder, "all", 0, 16)
    assert x.shape == (48, 3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(to_uint8(to_float(x)), x)


def test_the_loops_ema_is_a_lerp_with_the_warm_up_decay(image_folder, tmp_path):
    """After train.py's first step, EMA = d init + (1 - d) theta with the warm-up's d = min(decay, 1 / 10)."""
    from conftest import TINY_FLAGS
    from dae import DiffusionAutoencoder
    from plumbing.flags import model_config, parse_args
    flags = [*TINY_FLAGS, "--data", image_folder, "--out", str(tmp_path / "r"), "--examples", "8"]
    train.main(flags)
    ckpt = torch.load(tmp_path / "r" / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 1
    torch.manual_seed(0)  # --seed 0: the initial weights
    init = DiffusionAutoencoder(model_config(parse_args(flags))).state_dict()
    moved = 0
    for k, ema in ckpt["ema"].items():
        torch.testing.assert_close(ema, 0.1 * init[k] + 0.9 * ckpt["model"][k])
        moved += not torch.equal(ckpt["model"][k], init[k])
    assert moved > 0  # the step changed the weights, so the test can tell the EMA from either


def test_lr_schedule():
    args = train.parse_args(["--preset", "cpu", "--warmup", "1000", "--examples", "11000", "--batch-size", "10"])
    assert train.lr_at(args, 0) == pytest.approx(args.lr * 10 / 1010)
    assert train.lr_at(args, 1000) == pytest.approx(args.lr)
    assert train.lr_at(args, 6000) == pytest.approx(args.lr / 2)
    assert train.lr_at(args, 11000) == pytest.approx(0, abs=1e-12)


def test_switch_warmup_rewarms_the_learning_rate_after_the_phase_switch():
    args = train.parse_args(["--preset", "cpu", "--warmup", "0", "--lr-decay", "constant", "--examples", "11000",
                             "--batch-size", "10", "--phase1-frac", "0.5", "--switch-warmup", "990"])
    assert [train.lr_at(args, e) / args.lr for e in (0, 5490, 5500, 6000, 6490, 9000)] == pytest.approx(
        [1, 1, 10 / 1000, 510 / 1000, 1, 1])
    args.phase1_frac = 0  # no switch, no re-warm
    assert train.lr_at(args, 0) == args.lr


def test_bench_json(tmp_path):
    path = str(tmp_path / "b.json")
    code, out, err = run_cli("tools/bench.py", "--preset", "cpu", "--batch-size", "4", "--steps", "1", "--device", "cpu",
                             "--precision", "fp32", "--json", path)
    assert code == 0, err
    r = json.load(open(path))
    for key in ("preset", "device", "device_model", "batch_size", "params", "flops_per_train_image", "precisions"):
        assert key in r
    fp32 = r["precisions"]["fp32"]
    assert r["params"] > 1e6 and r["flops_per_train_image"] > 1e8 and fp32["train_images_per_s"] > 0
    assert fp32["matmul_gflops"] > 0 and fp32["utilisation"] > 0


def test_compile_on_cpu_gives_the_same_outputs():
    """torch.compile of the model (train.py --compile compiles the loss around it). Only the network
    is compared: compiled code draws its random numbers from its own generator."""
    pytest.importorskip("torch._inductor")
    from test_model import perturbed, tiny
    m = perturbed(tiny())
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    z = m.encode(x)
    try:
        compiled = torch.compile(m)(x, t, z)
    except Exception as e:  # no C++ compiler, for example
        pytest.skip(f"torch.compile does not work on this machine: {type(e).__name__}")
    eager = m(x, t, z)
    assert eager.abs().mean() > 0.01
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_phase1_count_takes_the_first_examples_and_leaves_the_mix_out():
    # phase 1 = the first 20 examples, batch 8: steps at 0 and 8 are phase 1, 16 straddles, 24 is phase 2
    assert [train.phase1_count(e, 8, 20, 0.0) for e in (0, 8, 16, 24)] == [8, 8, 4, 0]
    assert [train.phase1_count(e, 8, 20, 0.25) for e in (0, 8, 16, 24)] == [6, 6, 4, 0]
    # two processes of 4: rank 0 holds the batch's first 4 examples, rank 1 the next 4
    assert [train.phase1_count(16, 8, 20, 0.0, (r, 2)) for r in (0, 1)] == [4, 0]
    assert [train.phase1_count(0, 8, 20, 0.25, (r, 2)) for r in (0, 1)] == [4, 2]
    assert train.phase1_count(0, 8, 0, 0.5) == 0
