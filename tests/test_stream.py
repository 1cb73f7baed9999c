"""stream.py: streamed batches equal in-memory ones, per rank and after a resume; --data-in-memory auto."""
import os
import sys

import pytest
import torch

from plumbing import stream
from conftest import ROOT, TINY_FLAGS, exits_with, kill_midway, run_cli
from data import list_images, load_images, split_files
from test_distributed import read_log, torchrun

CPU = torch.device("cpu")


def both(folder, size=16, workers=0):
    files = split_files(list_images(folder), "train", 8)
    return stream.InMemory(load_images(folder, "train", 8, size)), stream.Streamed(files, size, CPU, workers)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("shard", [(0, 1), (0, 2), (1, 2)])
def test_streamed_batches_are_the_in_memory_batches(image_folder, workers, shard):
    mem, streamed = both(image_folder, workers=workers)
    assert len(mem) == len(streamed) == 40
    # 12 steps of 8 cross two epochs (40 images): the second epoch's order is a new permutation
    a = list(mem.batches(8, 3, 0, 12, shard))
    b = list(streamed.batches(8, 3, 0, 12, shard))
    assert len(a) == len(b) == 12 and all(x.dtype == torch.uint8 and x.shape == (8 // shard[1], 3, 16, 16) for x in b)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(mem.head(5), streamed.head(5))


def test_a_stream_started_at_step_s_reads_on_as_an_uninterrupted_one(image_folder):
    _, streamed = both(image_folder)
    whole = list(streamed.batches(8, 0, 0, 9))
    assert all(torch.equal(x, y) for x, y in zip(whole[4:], streamed.batches(8, 0, 4, 9)))
    # the ranks' slices together are the global batch
    halves = zip(streamed.batches(8, 0, 0, 9, (0, 2)), streamed.batches(8, 0, 0, 9, (1, 2)))
    assert all(torch.equal(torch.cat(h), x) for h, x in zip(halves, whole))


def test_starting_a_stream_leaves_the_global_random_stream_alone(image_folder):
    _, streamed = both(image_folder, workers=2)
    torch.manual_seed(5)
    next(iter(streamed.batches(8, 0, 0, 2)))
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))


def test_auto_holds_what_fits_and_streams_what_does_not(monkeypatch):
    n, size = 1_000_000, 64  # 12.3 GB decoded
    assert stream.choose("on", n, size, CPU)[0] and not stream.choose("off", n, size, CPU)[0]
    monkeypatch.setattr(stream, "available_memory", lambda: 100e9)
    keep, why = stream.choose("auto", n, size, CPU)
    assert keep and "12.29 GB decoded" in why and "held in memory" in why
    keep, why = stream.choose("auto", n, size, CPU, local_ranks=8)  # 8 ranks of one machine each hold a copy
    assert not keep and "to 8 processes" in why and "streamed" in why
    monkeypatch.setattr(stream, "available_memory", lambda: 20e9)
    assert not stream.choose("auto", n, size, CPU)[0]
    monkeypatch.setattr(stream, "available_memory", lambda: -1)
    assert stream.choose("auto", n, size, CPU) == (True, "--data-in-memory auto: 1,000,000 images of 64 px are "
                                                          "12.29 GB decoded; available memory unknown, so held in memory")


FLAGS = [*TINY_FLAGS, "--examples", "96", "--phase1-frac", "0.3", "--log-every", "1", "--sample-every", "48"]


def test_a_streamed_run_trains_what_an_in_memory_run_does(image_folder, tmp_path):
    mem, streamed, two = (str(tmp_path / d) for d in ("mem", "streamed", "two"))
    code, out, err = run_cli("train.py", *FLAGS, "--data", image_folder, "--out", mem, "--data-in-memory", "on")
    assert code == 0 and "--data-in-memory on: 40 images of 16 px" in out, err
    code, out, err = run_cli("train.py", *FLAGS, "--data", image_folder, "--out", streamed, "--data-in-memory", "off",
                             "--data-workers", "2")
    assert code == 0 and "streamed" in out, err
    assert [(r["loss"], r["phase"]) for r in read_log(mem)] == [(r["loss"], r["phase"]) for r in read_log(streamed)]
    # two processes, each streaming its own slice of every batch
    p = torchrun("train.py", *FLAGS, "--data", image_folder, "--out", two, "--data-in-memory", "off")
    assert p.returncode == 0, p.stderr[-3000:]
    for ra, rb in zip(read_log(mem), read_log(two), strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4)


def test_sigkill_then_resume_of_a_streamed_run_is_exact(image_folder, tmp_path):
    flags = [*TINY_FLAGS, "--data", image_folder, "--examples", "1600", "--log-every", "2", "--ckpt-every", "40",
             "--sample-every", "100000"]
    ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
    assert run_cli("train.py", *flags, "--out", ref, "--data-in-memory", "on")[0] == 0
    kill_midway([sys.executable, os.path.join(ROOT, "train.py"), *flags, "--out", cut, "--data-in-memory", "off",
                 "--data-workers", "1"], cut)  # the run and its loader worker
    assert 0 < torch.load(os.path.join(cut, "ckpt.pt"), weights_only=True)["step"] < 200
    code, _, err = run_cli("train.py", "--out", cut, "--resume", "--data-in-memory", "off")
    assert code == 0, err
    assert [(r["step"], r["loss"], r["lr"]) for r in read_log(ref)] == [(r["step"], r["loss"], r["lr"])
                                                                        for r in read_log(cut)]


def test_streaming_cifar10_and_negative_workers_are_refused(tmp_path):
    import train
    assert "torchvision's CIFAR-10 comes as one array" in exits_with(
        train.main, [*TINY_FLAGS, "--data", "cifar10", "--data-in-memory", "off", "--out", str(tmp_path / "r")])
    assert "--data-workers must be >= 0" in exits_with(train.main, [*TINY_FLAGS, "--data-workers", "-1"])


@pytest.mark.parametrize("preset", ["celeba64", "lsun128", "imagenet128"])
def test_each_data_set_preset_builds_and_takes_a_training_step(preset):
    from plumbing import flags
    from dae import DiffusionAutoencoder
    args = flags.parse_args(["--preset", preset])
    torch.manual_seed(0)
    model = DiffusionAutoencoder(flags.model_config(args))
    x0 = torch.rand(1, 3, args.image_size, args.image_size) * 2 - 1
    loss, _ = model.loss(x0, 0)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_cost_prints_every_preset_at_the_rate_a_bench_measured(tmp_path):
    from plumbing import flags
    from tools import cost
    bench = tmp_path / "b.json"
    bench.write_text('{"device_model": "GPU X", "precisions": {"bf16": {"train_gflops_per_s": 47552.26624}}}')
    table = cost.preset_table(str(bench))
    assert all(f"| {name} |" in table for name in flags.PRESETS) and "GPU X" in table
    # the paper step: ~47.3 GFLOP x 32M examples at 47.55 TFLOP/s = ~31,800 s = 8.8 h, 1.1 h on 8
    assert "| paper | 32 px | 52.9M | 47.3 | 32M | 8.8 | 1.1 |" in table
    bench.write_text("{}")
    code, _, err = run_cli("tools/cost.py", str(bench))
    assert code != 0 and err.strip().startswith("error: cannot read the bench JSON") and "\n" not in err.strip()
