"""train.py --compile stays compiled: the loss traces with no graph break, a whole run through the phase
switch compiles it a bounded number of times, and the loop reads no tensor on the host between logging
steps. All on the CPU, with torch.compile's backend swapped for a counting one (aot_eager: dynamo and
AOTAutograd exactly as inductor gets them, without inductor's minutes of C++ compilation)."""
import json
import os
import sys
import warnings

import pytest
import torch

import train
from conftest import ROOT, TINY_FLAGS
from dae import DAEConfig, DiffusionAutoencoder
from unet import UNetConfig

# the compilations of one run: phase 1 (n_phase1 = B), the batch that straddles the switch (n_phase1 then
# becomes a symbolic int), phase 2 (n_phase1 = 0); and once more for a second SE factor's shapes
MAX_COMPILATIONS = 4


def tiny(**kw):
    net = UNetConfig(image_size=16, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                     z_dim=32, enc_channel_mult=(1, 2), enc_num_res_blocks=1,
                     **{k: kw.pop(k) for k in ("latent", "latent_channels", "z_map_channels", "dropout") if k in kw})
    torch.manual_seed(0)
    return DiffusionAutoencoder(DAEConfig(net=net, **kw))


CONFIGS = {
    "paper": dict(),
    "diffae": dict(schedule="linear", pred="eps"),
    "small-se": dict(schedule="sc1", latent="spatial", latent_channels=8, se_weight=0.25, se_scales=(2, 4)),
    "dgae-kl": dict(schedule="rf", latent="spatial", kl_weight=1e-6),
    "epsvae-gamma": dict(schedule="rf", t_sampler="logit-normal", latent="spatial", gamma=0.6),
    "dropout-zmap": dict(dropout=0.1, z_map_channels=4),
}


@pytest.mark.parametrize("name,n_phase1", [(name, 3) for name in CONFIGS] + [("paper", 0), ("paper", 8)])
def test_the_loss_traces_as_one_graph(name, n_phase1):
    m = tiny(**CONFIGS[name])
    x0, t, eps = torch.rand(8, 3, 16, 16) * 2 - 1, torch.rand(8), torch.randn(8, 3, 16, 16)
    se_scale = m.draw_se_scale() if m.cfg.se_weight > 0 else None
    torch._dynamo.reset()
    explained = torch._dynamo.explain(m.loss)(x0, n_phase1, t, eps, None, se_scale)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_the_se_draw_inside_the_loss_would_break_the_graph():
    """The check above can fail: the SE factor drawn inside the loss (its eager default) is a graph break."""
    m = tiny(**CONFIGS["small-se"])
    torch._dynamo.reset()
    explained = torch._dynamo.explain(m.loss)(torch.rand(8, 3, 16, 16), 0, torch.rand(8), torch.randn(8, 3, 16, 16))
    assert explained.graph_break_count >= 1


class CountingCompile:
    """torch.compile with a backend that counts the graphs handed to it, then runs them as aot_eager."""

    def __init__(self):
        self.graphs, self.modes = 0, []
        self.real = torch.compile

    def backend(self, gm, example_inputs):
        self.graphs += 1
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    def __call__(self, fn, mode=None, **kw):
        self.modes.append(mode)
        return self.real(fn, backend=self.backend)


def compiled_run(monkeypatch, image_folder, out, *flags):
    counting = CountingCompile()
    monkeypatch.setattr(torch, "compile", counting)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    train.main([*TINY_FLAGS, "--data", image_folder, "--out", str(out), *flags])
    breaks = dict(torch._dynamo.utils.counters["graph_break"])
    torch._dynamo.reset()
    return counting, breaks


@pytest.mark.parametrize("flags", [
    # 48 examples of 8, phase 1 the first round(0.2 x 48) = 10: n_phase1 = 8, then 2 (the straddling batch), then
    # 0; the lr warms up over every step and the EMA decay changes every step
    ["--recipe", "small", "--z-map-channels", "0", "--se-weight", "0.25", "--se-scales", "2,4", "--examples", "48",
     "--phase1-frac", "0.2", "--warmup", "48", "--compile"],
    # the switch's options, the mixed phase 1, the adversarial term from example 24, CUDA graphs' mode
    ["--recipe", "paper", "--examples", "48", "--phase1-frac", "0.2", "--phase1-mix", "0.25", "--switch-warmup", "16",
     "--switch-reset-adam", "--adv-weight", "0.5", "--adv-start", "24", "--dropout", "0.1",
     "--compile", "reduce-overhead"],
], ids=["small-se", "paper-switch-adv"])
def test_a_run_through_the_phase_switch_compiles_a_bounded_number_of_times(monkeypatch, image_folder, tmp_path, flags):
    counting, breaks = compiled_run(monkeypatch, image_folder, tmp_path / "run", *flags, "--log-every", "2")
    assert counting.modes == [flags[-1] if flags[-1] != "--compile" else "default"]
    assert breaks == {}, f"graph breaks in the compiled loss: {breaks}"
    # forward graphs only: AOTAutograd's backward graphs are not handed to the backend separately
    assert 1 <= counting.graphs <= MAX_COMPILATIONS, f"{counting.graphs} compilations"
    assert os.path.exists(tmp_path / "run" / "ckpt.pt")


SYNCS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu")
STEP_FILES = tuple(os.path.join(ROOT, f) for f in ("train.py", "dae.py", "unet.py", "schedules.py",
                                                    "discriminator.py", os.path.join("plumbing", "distributed.py")))


def host_reads(image_folder, out, examples, extra=(), files=STEP_FILES):
    """Where the training step's own files read a tensor on the host, over a run of `examples` examples
    logged once, at its end (the data's batch indices are host tensors by design: data.py)."""
    calls, reals = [], {name: getattr(torch.Tensor, name) for name in SYNCS}

    def counting(name):
        def counted(self, *args, **kwargs):
            caller = sys._getframe(1)
            # the SE factor's draw reads a host tensor (torch.randint on the CPU) once per step by design
            if caller.f_code.co_filename.startswith(files) and caller.f_code.co_name != "draw_se_scale":
                calls.append((name, os.path.basename(caller.f_code.co_filename), caller.f_lineno))
            return reals[name](self, *args, **kwargs)
        return counted
    try:
        for name in SYNCS:
            setattr(torch.Tensor, name, counting(name))
        train.main([*TINY_FLAGS, "--data", image_folder, "--out", str(out), "--examples", str(examples),
                    "--log-every", "1000", "--ckpt-every", "100000", "--sample-every", "100000", *extra])
    finally:
        for name, real in reals.items():
            setattr(torch.Tensor, name, real)
    return calls


@pytest.mark.parametrize("extra", [[], ["--recipe", "small", "--z-map-channels", "0", "--se-weight", "0.25",
                                        "--se-scales", "2,4", "--adv-weight", "0.5", "--adv-start", "16"]],
                         ids=["paper", "se-adv"])
def test_no_host_read_between_logging_steps(image_folder, tmp_path, extra):
    short = host_reads(image_folder, tmp_path / "short", 16, extra)
    long = host_reads(image_folder, tmp_path / "long", 64, extra)
    assert sorted(long) == sorted(short), f"reads that grow with the steps: {sorted(set(long) - set(short))}"


def test_a_read_in_the_step_would_be_seen(monkeypatch, image_folder, tmp_path):
    """The check above can fail: a loss that calls .item() every step reads once per step."""
    real_loss = DiffusionAutoencoder.loss

    def reading(self, *args, **kwargs):
        loss, pred = real_loss(self, *args, **kwargs)
        loss.item()
        return loss, pred
    monkeypatch.setattr(DiffusionAutoencoder, "loss", reading)
    here = os.path.abspath(__file__)
    short, long = (host_reads(image_folder, tmp_path / str(n), n, files=STEP_FILES + (here,)) for n in (16, 48))
    items = [sum(c[0] == "item" and c[1] == os.path.basename(here) for c in calls) for calls in (short, long)]
    assert items[1] - items[0] == 4  # 4 more steps of 8


def test_bench_times_a_recipe_compiled_in_a_mode(monkeypatch, tmp_path):
    """bench.py --recipe small --compile reduce-overhead: README's CPU run's network, compiled as train.py does."""
    from tools import bench
    counting = CountingCompile()
    monkeypatch.setattr(torch, "compile", counting)
    monkeypatch.setattr(bench, "matmul_gflops", lambda device, dtype=torch.float32: 1.0)  # not what is tested
    path = tmp_path / "b.json"
    torch._dynamo.reset()
    bench.main(["--preset", "cpu", "--recipe", "small", "--compile", "reduce-overhead", "--batch-size", "2",
                "--steps", "1", "--device", "cpu", "--precision", "fp32", "--json", str(path)])
    torch._dynamo.reset()
    r = json.loads(path.read_text())
    assert r["recipe"] == "small" and r["compile"] == "reduce-overhead" and counting.modes == ["reduce-overhead"]
    assert counting.graphs >= 1 and r["precisions"]["fp32"]["train_images_per_s"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (results/gpu/run.sh runs it)")
def test_no_device_sync_between_logging_steps_on_cuda(image_folder, tmp_path):
    """CUDA's own sync detector: a run of 6 steps synchronises as often as one of 2 (both log once)."""
    flags = [f if f != "cpu" else "cuda" for f in TINY_FLAGS]  # --device cuda
    counts = []
    for n in (16, 48):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train.main([*flags, "--data", image_folder, "--out", str(tmp_path / str(n)), "--examples", str(n),
                            "--log-every", "1000", "--ckpt-every", "100000", "--sample-every", "100000"])
        finally:
            torch.cuda.set_sync_debug_mode(0)
        counts.append(sum("synchroniz" in str(w.message).lower() for w in caught))
    assert counts[0] == counts[1], f"synchronisations: {counts[0]} in 2 steps, {counts[1]} in 6"
