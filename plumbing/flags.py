"""train.py's flags: the presets, parsing with per-flag checks, and what --resume keeps.

Every flag whose default comes from --preset lists each preset's value in --help. parse_args records
which flags were typed, so that a resumed run takes every other flag from its checkpoint.
"""
import argparse
import math

from plumbing.cli import HelpFormatter, check_numbers, same_data
from dae import DAEConfig, check_se
from schedules import Schedule
from unet import UNetConfig

# 'paper': DDPM's CIFAR-10 UNet (Ho et al. 2020) as DiffAE's decoder, its down path as the encoder,
# z 512, Adam 1e-4, EMA 0.9999 (DiffAE), 32M examples (Khungurn et al.). Batch 128 is our reading.
# 'cpu': a small network that learns as much as it can in ~10 minutes on 2 CPU cores in fp32 (README): 16 / 32 / 64
#   channels, 8 GroupNorm groups, a 2x2 transposed up-convolution, 92,000 examples (results/speed/README.md).
# 'cpu-v1': the cpu preset up to b041db5 (32 / 64 / 64 channels, 32 groups, nearest x2 + 3x3 conv, 80,000
#   examples; 2.25x the fp32 time per example): models/small.pt and the CPU-scale results up to then used it.
# 'celeba64', 'lsun128', 'imagenet128': the paper's other data sets at DiffAE's networks for them (its
#   templates: 64 px as celeba64d2c_autoenc, 128 px as bedroom128_autoenc; batch 32 per GPU x 4 GPUs,
#   Adam 1e-4, EMA 0.9999; ImageNet has no DiffAE config: the 128-px one is our reading).
PRESETS = {
    "paper": dict(base_channels=128, channel_mult="1,2,2,2", num_res_blocks=2, attn="16", dropout=0.1, norm_groups=32,
                  enc_channel_mult="1,2,2,2", enc_num_res_blocks=2, enc_pool="mean", upsample="conv", z_dim=512,
                  z_map_channels=0, batch_size=128, lr=1e-4, warmup=0, lr_decay="constant", ema_decay=0.9999,
                  image_size=32, examples=32_000_000, log_every=100, sample_every=1_000_000, ckpt_every=1_000_000),
    "cpu": dict(base_channels=16, channel_mult="1,2,4", num_res_blocks=1, attn="", dropout=0.0, norm_groups=8,
                enc_channel_mult="1,2,4", enc_num_res_blocks=1, enc_pool="flatten", upsample="transpose", z_dim=512,
                z_map_channels=16, batch_size=32, lr=1e-3, warmup=5_000, lr_decay="cosine", ema_decay=0.995,
                image_size=32, examples=92_000, log_every=10, sample_every=16_000, ckpt_every=8_000),
    "celeba64": dict(base_channels=64, channel_mult="1,2,4,8", num_res_blocks=2, attn="16", dropout=0.1, norm_groups=32,
                     enc_channel_mult="1,2,4,8,8", enc_num_res_blocks=2, enc_pool="mean", upsample="conv", z_dim=512,
                     z_map_channels=0, batch_size=128, lr=1e-4, warmup=0, lr_decay="constant", ema_decay=0.9999,
                     image_size=64, examples=72_000_000, log_every=100, sample_every=2_000_000, ckpt_every=2_000_000),
    "lsun128": dict(base_channels=128, channel_mult="1,1,2,3,4", num_res_blocks=2, attn="16", dropout=0.1, norm_groups=32,
                    enc_channel_mult="1,1,2,3,4,4", enc_num_res_blocks=2, enc_pool="mean", upsample="conv", z_dim=512,
                    z_map_channels=0, batch_size=128, lr=1e-4, warmup=0, lr_decay="constant", ema_decay=0.9999,
                    image_size=128, examples=120_000_000, log_every=100, sample_every=2_000_000, ckpt_every=2_000_000),
}
PRESETS["imagenet128"] = dict(PRESETS["lsun128"])
PRESETS["cpu-v1"] = dict(PRESETS["cpu"], base_channels=32, channel_mult="1,2,2", enc_channel_mult="1,2,2",
                         norm_groups=32, upsample="conv", examples=80_000)
# Recipes: how each paper trains its decoder (the network's size comes from --preset). Typed flags
# override a recipe; a recipe overrides the preset where both set a flag (z_map_channels).
# 'paper': Khungurn et al. 2025. 'diffae': Preechakul et al. 2022 (linear beta, eps, one phase).
# 'epsvae': Zhao et al. 2024: rf, logit-normal t, spatial latent, gamma 0.6, LPIPS 0.5, adversarial 0.5.
# 'dgae': rf with x0_hat = x_t - t v, a spatial KL latent (beta 1e-6 as SD-VAE; DGAE states none),
#   LPIPS (eta not stated: 0.5 as epsilon-VAE); one phase, as DGAE trains.
# 'small': ours, the best found for 32-px images on the cpu-v1 preset's budget (README, "Towards 24 dB"): the
#   paper's two phases and v-prediction with an 8 x 8 x 8 spatial latent (512 numbers, as the paper's vector z)
#   and the plain cosine schedule (SC-1).
RECIPES = {
    "paper": dict(schedule="sc4", pred="v", phase1_frac=0.25, t_sampler="uniform", latent="vector", latent_channels=4,
                  kl_weight=0.0, gamma=1.0, lpips_weight=0.0, adv_weight=0.0),
    "diffae": dict(schedule="linear", pred="eps", phase1_frac=0.0, t_sampler="uniform", latent="vector", latent_channels=4,
                   kl_weight=0.0, gamma=1.0, lpips_weight=0.0, adv_weight=0.0),
    "epsvae": dict(schedule="rf", pred="v", phase1_frac=0.0, t_sampler="logit-normal", latent="spatial", latent_channels=4,
                   z_map_channels=0, kl_weight=0.0, gamma=0.6, lpips_weight=0.5, adv_weight=0.5),
    "dgae": dict(schedule="rf", pred="v", phase1_frac=0.0, t_sampler="uniform", latent="spatial", latent_channels=4,
                 z_map_channels=0, kl_weight=1e-6, gamma=1.0, lpips_weight=0.5, adv_weight=0.0),
    "small": dict(schedule="sc1", pred="v", phase1_frac=0.25, t_sampler="uniform", latent="spatial", latent_channels=8,
                  z_map_channels=0, kl_weight=0.0, gamma=1.0, lpips_weight=0.0, adv_weight=0.0),
}
# torch.compile's modes (--compile MODE; --compile alone is "default")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Flags that may change when a run is resumed: they do not change what is computed.
RUN_FLAGS = {"out", "resume", "overwrite", "device", "precision", "compile", "log_every", "sample_every",
             "ckpt_every", "allow_slow", "data_in_memory", "data_workers"}


def ints(s: str) -> tuple:
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def from_preset(text: str, key: str) -> str:
    """A flag's help with each preset's value, since its default comes from --preset."""
    return f"{text} (" + "; ".join(f"{name}: {p[key]}" for name, p in PRESETS.items()) + ")"


def from_recipe(text: str, key: str) -> str:
    """A flag's help with each recipe's value, since its default comes from --recipe."""
    return f"{text} (recipe " + "; ".join(f"{name}: {r[key]}" for name, r in RECIPES.items()) + ")"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Two-phase training of a diffusion autoencoder (Khungurn et al. 2025).",
                                formatter_class=HelpFormatter,
                                epilog="Flags whose help lists a value per preset take it from --preset unless given.")
    p.add_argument("--preset", default="paper", choices=list(PRESETS), help="a coherent group of defaults; flags override it")
    p.add_argument("--recipe", default="paper", choices=list(RECIPES),
                   help="the training method of a paper; flags override it (README: the related papers' decoders)")
    p.add_argument("--schedule", help=from_recipe("linear | cosine | sc<S> (shifted cosine, e.g. sc4) | rf", "schedule"))
    p.add_argument("--pred", choices=["eps", "x0", "v"], help=from_recipe("what the decoder predicts", "pred"))
    p.add_argument("--phase1-frac", type=float, help=from_recipe("share of training examples in phase 1 (t = 1)",
                                                                 "phase1_frac"))
    p.add_argument("--t-sampler", choices=["uniform", "logit-normal"], help=from_recipe("phase-2 t distribution",
                                                                                          "t_sampler"))
    p.add_argument("--phase1-mix", type=float, default=0.0,
                   help="share of every phase-1 batch trained at a phase-2 t instead of t = 1 (0: the paper's phase 1)")
    p.add_argument("--switch-reset-adam", action="store_true",
                   help="clear Adam's moment estimates at the phase switch (README: the phase switch)")
    p.add_argument("--switch-warmup", type=int, default=0,
                   help="examples over which the learning rate re-warms linearly after the phase switch")
    p.add_argument("--t-mean", type=float, default=0.0, help="logit-normal mean")
    p.add_argument("--t-std", type=float, default=1.0, help="logit-normal std")
    p.add_argument("--latent", choices=["vector", "spatial"], help=from_recipe(
        "vector: DiffAE's z (AdaGN); spatial: a map concatenated with x_t (epsilon-VAE, DGAE)", "latent"))
    p.add_argument("--latent-channels", type=int, help=from_recipe("channels of a spatial latent", "latent_channels"))
    p.add_argument("--latent-down", type=int, default=4, help="downsampling factor f of a spatial latent (H/f x W/f)")
    p.add_argument("--kl-weight", type=float, help=from_recipe(
        "> 0: a Gaussian latent (mu, log sigma^2) with this weight on its KL term (DGAE's beta)", "kl_weight"))
    p.add_argument("--gamma", type=float, help=from_recipe("noise scaling of the data term", "gamma"))
    p.add_argument("--se-weight", type=float, default=0.0, help="> 0: Diffusability's scale-equivariance term "
                   "with this weight (spatial latents; dae.py)")
    p.add_argument("--se-scales", type=ints, default=(2,), help="its downsampling factors, e.g. 2,4 (one drawn per batch)")
    p.add_argument("--se-t", choices=["1", "same"], default="1", help="its decode: at t = 1, from Down_s(z) alone, "
                   "or at the loss's own t ('same': the reading before, met by denoising at small t)")
    p.add_argument("--adv-weight", type=float, help=from_recipe(
        "> 0: adversarial trajectory matching with this weight on the decoder's term", "adv_weight"))
    p.add_argument("--r1-weight", type=float, default=1.0, help="R1 penalty weight of the discriminator")
    p.add_argument("--adv-start", type=int, default=0, help="examples before the decoder gets the adversarial term")
    p.add_argument("--lpips-weight", type=float, help=from_recipe(
        "LPIPS on the one-step x0_hat (needs requirements-extras.txt and the backbone's weights)", "lpips_weight"))
    preset_flags = [
        ("examples", int, "total training examples"), ("batch_size", int, "batch size"),
        ("lr", float, "Adam learning rate"), ("warmup", int, "examples of linear learning-rate warm-up"),
        ("lr_decay", ["constant", "cosine"], "learning rate after warm-up"), ("ema_decay", float, "EMA decay per step"),
        ("z_dim", int, "latent dimension"), ("base_channels", int, "UNet base channels"),
        ("channel_mult", ints, "decoder channel multipliers per resolution"),
        ("num_res_blocks", int, "decoder ResBlocks per resolution"),
        ("attn", ints, "resolutions with self-attention, e.g. 16 ('' for none)"),
        ("dropout", float, "dropout in the ResBlocks"), ("enc_channel_mult", ints, "encoder channel multipliers"),
        ("enc_num_res_blocks", int, "encoder ResBlocks per resolution"),
        ("enc_pool", ["mean", "flatten"], "encoder head: DiffAE's mean pool, or flatten"),
        ("upsample", ["conv", "transpose"], "decoder upsampling: nearest x2 + 3x3 conv (ADM), or a 2x2 stride-2 "
                                            "transposed conv (U-Net's up-convolution; 1/9 the MACs)"),
        ("norm_groups", int, "GroupNorm groups (gcd with each layer's channels; DDPM: 32)"),
        ("z_map_channels", int, "also feed z to the decoder as a spatial map of this many channels (0 = DiffAE)"),
        ("image_size", int, "image side in pixels (a folder's images are centre-cropped and resized to it)"),
    ]
    for key, kind, text in preset_flags:
        typed = dict(choices=kind) if isinstance(kind, list) else dict(type=kind)
        p.add_argument("--" + key.replace("_", "-"), **typed, help=from_preset(text, key))
    p.add_argument("--data", default="cifar10", help="'cifar10' (torchvision, downloaded to ./data) or a folder of images")
    p.add_argument("--holdout", type=int, default=1000, help="images of a folder held out from training (see data.py)")
    p.add_argument("--data-in-memory", default="auto", choices=["auto", "on", "off"],
                   help="on: decode the training images once into one uint8 tensor on the device; off: stream them "
                        "from the folder with DataLoader workers (same images, same order); auto: on if the "
                        "decoded set fits comfortably in memory (stream.py says which it chose)")
    p.add_argument("--data-workers", type=int, default=4, help="DataLoader worker processes when streaming")
    p.add_argument("--out", default="runs/dae", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint, with its flags")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (it is deleted only once the "
                   "new run has written its first checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="bf16: autocast the network to bfloat16 (weights, loss, EMA and Adam stay fp32); "
                        "auto: bf16 where the device computes it natively (a CUDA GPU, a CPU with AVX-512 BF16 "
                        "or AMX), else fp32")
    p.add_argument("--amp", dest="precision", action="store_const", const="bf16", help="the same as --precision bf16")
    p.add_argument("--compile", nargs="?", const="default", default=None, choices=COMPILE_MODES,
                   help="torch.compile the loss (forward and backward; a run has no graph break and at most "
                        "4 compilations: tests/test_compile.py); --compile reduce-overhead also replays it "
                        "as CUDA graphs on a GPU. Measured slower on a 2-core CPU (RESULTS.md, Speed)")
    for key, text in [("log_every", "steps between log lines"), ("sample_every", "examples between reconstruction grids"),
                      ("ckpt_every", "examples between checkpoints")]:
        p.add_argument("--" + key.replace("_", "-"), type=int, help=from_preset(text, key))
    p.add_argument("--allow-slow", action="store_true", help="start even if the run would take days on this device")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Flags, with the preset filling every flag not given; validated. Raises ValueError naming the flag."""
    p = build_parser()
    args = p.parse_args(argv)
    for k, v in RECIPES[args.recipe].items():  # first: a recipe's value beats the preset's
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, ints(v) if k in ("channel_mult", "attn", "enc_channel_mult") else v)
    # which flags the user typed (for --resume): parse again with every default suppressed
    for action in p._actions:
        action.default = argparse.SUPPRESS
    args.explicit = sorted(vars(p.parse_args(argv)))
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    check_numbers(args)  # finite numbers and a seed that fits, before the range checks below
    Schedule(args.schedule)  # raises on unknown or malformed names
    if not 0.0 <= args.phase1_frac <= 1.0:
        raise ValueError(f"--phase1-frac must be in [0, 1], got {args.phase1_frac}")
    if not 0.0 <= args.phase1_mix < 1.0:
        raise ValueError(f"--phase1-mix must be in [0, 1), got {args.phase1_mix}")
    for k in ("examples", "batch_size", "base_channels", "num_res_blocks", "z_dim", "image_size",
              "log_every", "sample_every", "ckpt_every", "enc_num_res_blocks", "norm_groups"):
        if getattr(args, k) <= 0:
            raise ValueError(f"--{k.replace('_', '-')} must be positive, got {getattr(args, k)}")
    for k in ("warmup", "switch_warmup", "holdout", "data_workers", "z_map_channels", "kl_weight", "lpips_weight", "adv_weight", "r1_weight",
              "adv_start"):
        if getattr(args, k) < 0:
            raise ValueError(f"--{k.replace('_', '-')} must be >= 0, got {getattr(args, k)}")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if not 0 <= args.ema_decay < 1:
        raise ValueError(f"--ema-decay must be in [0, 1), got {args.ema_decay} (1 would never move the EMA weights)")
    if args.latent_channels <= 0:
        raise ValueError(f"--latent-channels must be positive, got {args.latent_channels}")
    if not (math.isfinite(args.gamma) and args.gamma > 0):
        raise ValueError(f"--gamma must be a positive number, got {args.gamma}")
    if args.latent == "spatial":
        f = args.latent_down
        if f < 1 or f & (f - 1) or args.image_size % f:
            raise ValueError(f"--latent-down must be a power of 2 that divides --image-size {args.image_size}, got {f}")
        if args.z_map_channels:
            raise ValueError("--latent spatial needs --z-map-channels 0 (the cpu preset sets 16 for its vector z)")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not args.channel_mult or not args.enc_channel_mult:
        raise ValueError("--channel-mult and --enc-channel-mult need at least one value")
    if args.image_size % 2 ** (len(args.channel_mult) - 1) or args.image_size % 2 ** (len(args.enc_channel_mult) - 1):
        raise ValueError(f"--image-size {args.image_size} must be divisible by 2^(levels - 1) of the channel multipliers")
    levels = [args.image_size // 2 ** i for i in range(len(args.channel_mult))]
    if set(args.attn) - set(levels):
        raise ValueError(f"--attn {','.join(map(str, args.attn))}: the decoder's resolutions are "
                         f"{','.join(map(str, levels))} px; choose among them ('' for no attention)")
    check_se(model_config(args))
    return args


def model_config(args) -> DAEConfig:
    net = UNetConfig(image_size=args.image_size, base_channels=args.base_channels, channel_mult=args.channel_mult,
                     num_res_blocks=args.num_res_blocks, attn_resolutions=args.attn, dropout=args.dropout,
                     z_dim=args.z_dim, enc_channel_mult=args.enc_channel_mult,
                     enc_num_res_blocks=args.enc_num_res_blocks, enc_pool=args.enc_pool, upsample=args.upsample,
                     norm_groups=args.norm_groups,
                     z_map_channels=args.z_map_channels, latent=args.latent,
                     latent_channels=args.latent_channels, latent_down=args.latent_down)
    return DAEConfig(net=net, schedule=args.schedule, pred=args.pred, t_sampler=args.t_sampler,
                     t_mean=args.t_mean, t_std=args.t_std, kl_weight=args.kl_weight, gamma=args.gamma,
                     se_weight=args.se_weight, se_scales=tuple(args.se_scales), se_t=args.se_t)


def plain_args(args) -> dict:
    """The flags as plain types (lists for tuples) for the checkpoint."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k != "explicit"}


def merge_resume_args(args, saved: dict, data_may_move: bool = False):
    """The checkpoint's flags, with those of this invocation that the user typed. A typed flag that
    would change what is computed must agree with the checkpoint; one that does not (RUN_FLAGS) may
    change. Untyped flags never come from this invocation's defaults. data_may_move: --data may name
    another path (the folder was moved; the run folder then checks its contents against the record)."""
    if "amp" in saved:  # checkpoints written before --precision
        saved = {**{k: v for k, v in saved.items() if k != "amp"}, "precision": "bf16" if saved["amp"] else "fp32"}
    if "se_scales" in saved and "se_t" not in saved:  # checkpoints written before --se-t decoded at the loss's t
        saved = {**saved, "se_t": "same"}
    if "upsample" not in saved:  # checkpoints written before --upsample upsampled with nearest + conv
        saved = {**saved, "upsample": "conv"}
    if "norm_groups" not in saved:  # checkpoints written before --norm-groups had 32 groups
        saved = {**saved, "norm_groups": 32}
    clashes = []
    for k in args.explicit:
        mine = list(getattr(args, k)) if isinstance(getattr(args, k), tuple) else getattr(args, k)
        same = same_data(mine, saved[k]) if k == "data" and k in saved else mine == saved.get(k, mine)
        moved = k == "data" and data_may_move and "cifar10" not in (mine, saved.get(k))
        if k not in RUN_FLAGS and not same and not moved:
            clashes.append(f"--{k.replace('_', '-')} {mine} (checkpoint: {saved[k]})")
    if clashes:
        raise ValueError("--resume with flags that contradict the checkpoint: " + "; ".join(clashes))
    typed = {k: getattr(args, k) for k in args.explicit if k not in ("preset", "recipe")}
    # flags newer than the checkpoint take their defaults, which are what the code did before them
    newer = {k: v for k, v in vars(args).items() if k not in saved and k != "explicit"}
    merged = argparse.Namespace(**{**newer, **saved, **typed, "out": args.out, "resume": True, "overwrite": False})
    for k in ("channel_mult", "attn", "enc_channel_mult"):
        setattr(merged, k, tuple(getattr(merged, k)))
    return merged
