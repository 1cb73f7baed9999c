"""Networks, the two-phase loss, and checkpoints."""
import os

import pytest
import torch

from plumbing.checkpoint import build_model, load_checkpoint, save_checkpoint
from dae import DAEConfig, DiffusionAutoencoder, count_params
from unet import UNetConfig

TINY = UNetConfig(image_size=16, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                  dropout=0.0, z_dim=32, enc_channel_mult=(1, 2), enc_num_res_blocks=1)


def tiny(pred="v", schedule="sc4", **net):
    torch.manual_seed(0)
    return DiffusionAutoencoder(DAEConfig(net=UNetConfig(**{**TINY.__dict__, **net}), schedule=schedule, pred=pred))


def perturbed(m):
    """Nudge every weight (the zero-initialised output convs would make outputs trivially equal)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("net", [{}, {"enc_pool": "flatten"}, {"z_map_channels": 4}, {"attn_resolutions": ()},
                                 {"upsample": "transpose"}])
def test_shapes(net):
    m = tiny(**net)
    x = torch.randn(3, 3, 16, 16)
    z = m.encode(x)
    assert z.shape == (3, 32)
    assert m(x, torch.rand(3), z).shape == x.shape


def test_transposed_upsampling():
    """--upsample transpose: a 2x2 stride-2 transposed conv, whose four outputs per input position have
    their own weights (nearest + conv cannot: its 2x2 blocks start equal), at 4/9 of the parameters."""
    from unet import Up
    torch.manual_seed(0)
    up, ref = Up(8, "transpose"), Up(8)
    x = torch.randn(2, 8, 4, 4)
    y = up(x)
    assert y.shape == (2, 8, 8, 8)
    assert not torch.allclose(y[..., 0::2, 0::2], y[..., 1::2, 1::2])
    # each output pixel depends on exactly one input position: the 2x2 block of (i, j) sees x[..., i, j] only
    x2 = x.clone()
    x2[..., 1, 2] += 1.0
    changed = (up(x2) - y).abs().sum(dim=(0, 1)) > 0
    assert changed.nonzero().tolist() == [[2, 4], [2, 5], [3, 4], [3, 5]]
    assert count_params(up) == 8 * 8 * 4 + 8 and count_params(ref) == 8 * 8 * 9 + 8
    with pytest.raises(ValueError, match="unknown upsampling"):
        tiny(upsample="bilinear")


def test_upsample_default_keeps_the_network():
    """The default (nearest + conv) builds the same weights, in the same order, as before the option."""
    a, b = tiny(), tiny(upsample="conv")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert list(a.state_dict()) == list(tiny(upsample="transpose").state_dict())  # same names, other shapes


def test_norm_groups():
    """--norm-groups G: every GroupNorm of the encoder and decoder gets gcd(G, channels) groups; the default
    32 builds the same weights and computes the same outputs as before the option."""
    import math
    m = tiny(norm_groups=4)
    norms = [n for n in m.modules() if isinstance(n, torch.nn.GroupNorm)]
    assert norms and all(n.num_groups == math.gcd(4, n.num_channels) for n in norms)
    assert {n.num_groups for n in norms} == {4}
    assert {n.num_groups for n in tiny().modules() if isinstance(n, torch.nn.GroupNorm)} == {16, 32}
    a, b = perturbed(tiny()), perturbed(tiny(norm_groups=32))
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    assert torch.equal(a(x, t, a.encode(x)), b(x, t, b.encode(x)))
    # 4 groups normalise more channels together than the default's 16 or 32, so the outputs differ
    c = perturbed(tiny(norm_groups=4))
    assert not torch.allclose(a(x, t, a.encode(x)), c(x, t, c.encode(x)))
    with pytest.raises(ValueError, match="norm_groups must be at least 1"):
        tiny(norm_groups=0)


def test_output_conv_zero_initialised():
    m = tiny()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(m(x, torch.rand(2), m.encode(x)), torch.zeros_like(x))


def test_paper_network_size_and_one_step():
    """The paper preset: DDPM's CIFAR-10 UNet (35.7M) as decoder + its down path as encoder."""
    from plumbing import flags
    args = flags.parse_args(["--preset", "paper"])
    m = DiffusionAutoencoder(flags.model_config(args))
    assert count_params(m.decoder) == 40_868_099 and count_params(m) == 52_901_251
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    loss, _ = m.loss(torch.rand(2, 3, 32, 32) * 2 - 1, n_phase1=1)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in m.parameters())


def test_phase1_examples_get_t_equal_1(monkeypatch):
    """The first n_phase1 examples of a batch are trained at t = 1, the others at sampled t. (The linear
    schedule and x0-prediction keep this test free of the schedules.py exercises.)"""
    m = tiny(pred="x0", schedule="linear")
    seen = {}
    original = m.decoder.forward

    def spy(x_t, t, z):
        seen["t"] = t.clone()
        return original(x_t, t, z)

    monkeypatch.setattr(m.decoder, "forward", spy)
    m.loss(torch.randn(8, 3, 16, 16), n_phase1=3)
    assert torch.equal(seen["t"][:3], torch.ones(3)) and (seen["t"][3:] < 1).all()
    m.loss(torch.randn(8, 3, 16, 16), n_phase1=0)
    assert (seen["t"] < 1).all()


def test_phase1_v_loss_is_autoencoder_loss():
    """At t = 1 with v-prediction the loss is || f(eps, 1, z) + x_0 ||^2: x_t carries nothing of x_0."""
    m = tiny()
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1
    torch.manual_seed(1)
    loss, _ = m.loss(x0, n_phase1=4)
    torch.manual_seed(1)
    torch.rand(4)  # the t draw inside loss()
    eps = torch.randn_like(x0)
    expected = ((m(eps, torch.ones(4), m.encode(x0)) + x0) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_tiny_model_overfits_a_batch():
    m = tiny(num_res_blocks=1)
    x0 = torch.rand(8, 3, 16, 16) * 2 - 1
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        loss, _ = m.loss(x0, n_phase1=8)  # phase 1: a plain autoencoder, deterministic target -x_0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_save_load_identical_outputs(tmp_path):
    m = perturbed(tiny(z_map_channels=4, enc_pool="flatten"))
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, {"config": m.cfg.to_dict(), "model": m.state_dict(), "ema": m.state_dict(), "args": {}})
    assert not os.path.exists(path + ".tmp")
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in raw["model"])
    m2 = build_model(load_checkpoint(path))
    x = torch.randn(2, 3, 16, 16)
    t = torch.rand(2)
    m.eval()
    out = m(x, t, m.encode(x))
    assert out.abs().mean() > 0.01 and torch.equal(out, m2(x, t, m2.encode(x)))
    assert m2.cfg == m.cfg


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "text.pt"))
    m = tiny()
    good = str(tmp_path / "good.pt")
    save_checkpoint(good, {"config": m.cfg.to_dict(), "model": m.state_dict(), "ema": m.state_dict(), "args": {}})
    data = open(good, "rb").read()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "cut.pt"))
    torch.save({"weights": 1}, str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="not a checkpoint written by"):
        load_checkpoint(str(tmp_path / "other.pt"))
    ckpt = load_checkpoint(good)
    ckpt["config"]["net"]["base_channels"] = 8  # weights no longer fit the config
    with pytest.raises(ValueError, match=r"do not fit .* 0 missing, 0 unexpected, \d+ of another shape") as e:
        build_model(ckpt)
    assert "\n" not in str(e.value)  # one sentence, not PyTorch's multi-line report
    ckpt = load_checkpoint(good)
    ckpt["ema"].pop("decoder.conv_in.bias")
    ckpt["ema"]["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="1 missing, 1 unexpected, 0 of another shape"):
        build_model(ckpt)
