"""--se-weight: Diffusability's scale-equivariance term on spatial latents (dae.py)."""
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_FLAGS, run_cli
from dae import DAEConfig
from plumbing.flags import merge_resume_args, parse_args, plain_args
from test_latents import model
from test_model import perturbed


def blocky(n, side=16, block=8, seed=0):
    """Images constant on block x block squares: averaging by any factor up to `block` keeps them exact."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, side // block, side // block, generator=g) * 2 - 1
    return F.interpolate(coarse, scale_factor=block, mode="nearest")              # (n, 3, side, side)


@pytest.mark.parametrize("gamma", [1.0, 0.6])
def test_se_loss_is_zero_for_an_exactly_scale_equivariant_decoder(gamma):
    m = model(latent="spatial", latent_channels=3, latent_down=4, gamma=gamma, se_weight=1.0, se_scales=(2,))
    x0 = blocky(4)
    z = F.avg_pool2d(x0, 4)                                                       # (4, 3, 4, 4): an encoder
    # a decoder that ignores x_t and paints z at any size: Dec(Down(z)) = Down(Dec(z)) exactly on these images
    m.predict = lambda x_t, t, z_s: (gamma * F.interpolate(z_s, size=x_t.shape[-2:], mode="nearest"), None)
    t = torch.rand(4)
    assert m.se_loss(x0, z, t, 2).item() < 1e-12
    # one that is not equivariant (bilinear blurs the block edges) is penalised
    m.predict = lambda x_t, t, z_s: (gamma * F.interpolate(z_s, size=x_t.shape[-2:], mode="bilinear"), None)
    assert m.se_loss(x0, z, t, 2).item() > 1e-3


@pytest.mark.parametrize("decoder", ["identity", "zero", "batch-mean"])
def test_se_term_at_t1_cannot_be_met_without_the_latent(decoder):
    """The default reading decodes Down_s(z) from pure noise: a decoder that ignores z cannot beat the
    images' own variance there, whereas at the loss's own small t ('same') denoising x_t alone meets it."""
    x0 = torch.rand(8, 3, 16, 16) * 2 - 1
    x0_s = F.avg_pool2d(x0, 2)
    ignores_z = {"identity": lambda x_t, t, z_s: (x_t, None),   # x0_hat = x_t: a denoiser for t near 0
                 "zero": lambda x_t, t, z_s: (torch.zeros_like(x_t), None),
                 "batch-mean": lambda x_t, t, z_s: (x0_s.mean(0, keepdim=True).expand_as(x_t), None)}[decoder]
    t_small = torch.full((8,), 1e-3)
    losses = {}
    for se_t in ("1", "same"):
        m = model(latent="spatial", latent_channels=3, latent_down=4, pred="x0", se_weight=1.0, se_t=se_t)
        m.predict = ignores_z
        torch.manual_seed(0)
        losses[se_t] = m.se_loss(x0, F.avg_pool2d(x0, 4), t_small, 2).item()
    floor = x0_s.var(0, unbiased=False).mean().item()  # the best any z-blind output can do at t = 1
    assert losses["1"] >= 0.99 * floor and floor > 0.05
    if decoder == "identity":
        assert losses["same"] < 1e-3 * floor


def test_se_t_of_older_checkpoints_is_the_loss_t():
    """Checkpoints written before --se-t decoded the term at the loss's own t: loading or resuming keeps that."""
    cfg = DAEConfig(se_weight=0.0).to_dict()
    del cfg["se_t"]
    assert DAEConfig.from_dict(cfg).se_t == "same" and DAEConfig.from_dict(DAEConfig().to_dict()).se_t == "1"
    args = parse_args(["--preset", "cpu", "--resume", "--out", "x"])
    saved = {k: v for k, v in plain_args(parse_args(["--preset", "cpu"])).items() if k != "se_t"}
    assert merge_resume_args(args, saved).se_t == "same"


def test_se_term_enters_the_loss_and_trains_the_encoder():
    x0 = blocky(4)
    losses, grads = [], []
    for w in (0.0, 5.0):
        m = perturbed(model(latent="spatial", latent_channels=3, latent_down=4, se_weight=w, se_scales=(2, 4)))
        torch.manual_seed(1)  # the same t and noise for the main term
        loss, _ = m.loss(x0)
        loss.backward()
        losses.append(loss.item())
        grads.append(m.encoder.head.weight.grad.clone())
    assert losses[1] > losses[0] and (grads[1] - grads[0]).abs().sum() > 1e-6


@pytest.mark.parametrize("flags, message", [
    (["--se-weight", "0.1"], "pass --latent spatial"),
    (["--se-weight", "0.1", "--latent", "spatial", "--z-map-channels", "0", "--se-scales", "3"], "--se-scales 3"),
    (["--se-weight", "0.1", "--latent", "spatial", "--z-map-channels", "0", "--latent-down", "16",
      "--se-scales", "4"], "--se-scales 4"),
    (["--se-weight", "-1"], "must be >= 0"),
])
def test_se_flags_refuse_what_cannot_work(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_args(["--preset", "cpu", *flags])


def test_train_with_se_end_to_end(image_folder, tmp_path):
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--z-map-channels", "0", "--latent", "spatial",
                           "--latent-down", "4", "--se-weight", "0.5", "--se-scales", "2,4", "--data", image_folder,
                           "--out", str(tmp_path / "r"), "--examples", "32")
    assert code == 0, err
