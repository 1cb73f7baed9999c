"""Two-phase training of a diffusion autoencoder (Khungurn et al. 2025), one explicit loop.

    python train.py --phase1-frac 0.25 --schedule sc4          # the paper's CIFAR-10 run (one GPU)
    python train.py --preset cpu --data ../shared/data/cifar10-jpeg/train   # ~15 minutes on a CPU

Phase 1 is the first phase1_frac of all training examples (t = 1, a plain autoencoder); phase 2 the
rest (t ~ U(0, 1) under the chosen schedule). The run folder gets ckpt.pt (see checkpoint.py),
log.jsonl (one JSON object per logging interval) and samples/ (reconstruction grids, EMA weights).
"""
import argparse
import copy
import json
import math
import os
import signal
import sys
import time

import torch
from tqdm import tqdm

from checkpoint import (
    drop_set_aside,
    find_set_aside,
    load_checkpoint,
    log_lines_up_to,
    remove_partial_files,
    save_checkpoint,
    set_aside,
    write_log_lines,
)
from cli import HelpFormatter, check_output, pick_device, same_data
from cost import estimate_hours
from dae import DAEConfig, DiffusionAutoencoder, count_params
from data import batch_indices, load_images, to_float
from sample import reconstruct
from schedules import Schedule, time_grid
from unet import UNetConfig

# 'paper': DDPM's CIFAR-10 UNet (Ho et al. 2020) as DiffAE's decoder, its down path as the encoder,
# z 512, Adam 1e-4, EMA 0.9999 (DiffAE), 32M examples (Khungurn et al.). Batch 128 is our reading.
# 'cpu': a small network that learns as much as it can in ~15 minutes on 2 CPU cores (README, Speed).
PRESETS = {
    "paper": dict(base_channels=128, channel_mult="1,2,2,2", num_res_blocks=2, attn="16", dropout=0.1,
                  enc_channel_mult="1,2,2,2", enc_num_res_blocks=2, enc_pool="mean", z_dim=512,
                  z_map_channels=0, batch_size=128, lr=1e-4, warmup=0, lr_decay="constant", ema_decay=0.9999,
                  examples=32_000_000, log_every=100, sample_every=1_000_000, ckpt_every=1_000_000),
    "cpu": dict(base_channels=32, channel_mult="1,2,2", num_res_blocks=1, attn="", dropout=0.0,
                enc_channel_mult="1,2,2", enc_num_res_blocks=1, enc_pool="flatten", z_dim=512,
                z_map_channels=16, batch_size=32, lr=1e-3, warmup=5_000, lr_decay="cosine", ema_decay=0.995,
                examples=80_000, log_every=10, sample_every=16_000, ckpt_every=8_000),
}
# Flags that may change when a run is resumed: they do not change what is computed.
RUN_FLAGS = {"out", "resume", "overwrite", "device", "amp", "compile", "log_every", "sample_every",
             "ckpt_every", "allow_slow"}


def ints(s: str) -> tuple:
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def from_preset(text: str, key: str) -> str:
    """A flag's help with each preset's value, since its default comes from --preset."""
    return f"{text} (" + "; ".join(f"{name}: {p[key]}" for name, p in PRESETS.items()) + ")"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter,
                                epilog="Flags whose help lists a value per preset take it from --preset unless given.")
    p.add_argument("--preset", default="paper", choices=list(PRESETS), help="a coherent group of defaults; flags override it")
    p.add_argument("--schedule", default="sc4", help="linear | cosine | sc<S> (shifted cosine, e.g. sc4) | rf")
    p.add_argument("--pred", default="v", choices=["eps", "x0", "v"], help="what the decoder predicts")
    p.add_argument("--phase1-frac", type=float, default=0.25, help="share of training examples in phase 1 (t = 1)")
    p.add_argument("--t-sampler", default="uniform", choices=["uniform", "logit-normal"], help="phase-2 t distribution")
    p.add_argument("--t-mean", type=float, default=0.0, help="logit-normal mean")
    p.add_argument("--t-std", type=float, default=1.0, help="logit-normal std")
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
        ("z_map_channels", int, "also feed z to the decoder as a spatial map of this many channels (0 = DiffAE)"),
    ]
    for key, kind, text in preset_flags:
        typed = dict(choices=kind) if isinstance(kind, list) else dict(type=kind)
        p.add_argument("--" + key.replace("_", "-"), **typed, help=from_preset(text, key))
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    p.add_argument("--data", default="cifar10", help="'cifar10' (torchvision, downloaded to ./data) or a folder of images")
    p.add_argument("--holdout", type=int, default=1000, help="images of a folder held out from training (see data.py)")
    p.add_argument("--out", default="runs/dae", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint, with its flags")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (it is deleted only once the "
                   "new run has written its first checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only; a no-op elsewhere)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    for key, text in [("log_every", "steps between log lines"), ("sample_every", "examples between reconstruction grids"),
                      ("ckpt_every", "examples between checkpoints")]:
        p.add_argument("--" + key.replace("_", "-"), type=int, help=from_preset(text, key))
    p.add_argument("--allow-slow", action="store_true", help="start even if the run would take days on this device")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Flags, with the preset filling every flag not given; validated. Raises ValueError naming the flag."""
    p = build_parser()
    args = p.parse_args(argv)
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, ints(v) if k in ("channel_mult", "attn", "enc_channel_mult") else v)
    # which flags the user typed (for --resume): parse again with every default suppressed
    for action in p._actions:
        action.default = argparse.SUPPRESS
    args.explicit = sorted(vars(p.parse_args(argv)))
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    Schedule(args.schedule)  # raises on unknown or malformed names
    if not 0.0 <= args.phase1_frac <= 1.0:
        raise ValueError(f"--phase1-frac must be in [0, 1], got {args.phase1_frac}")
    for k in ("examples", "batch_size", "base_channels", "num_res_blocks", "z_dim", "image_size",
              "log_every", "sample_every", "ckpt_every", "enc_num_res_blocks"):
        if getattr(args, k) <= 0:
            raise ValueError(f"--{k.replace('_', '-')} must be positive, got {getattr(args, k)}")
    for k in ("warmup", "holdout", "z_map_channels"):
        if getattr(args, k) < 0:
            raise ValueError(f"--{k.replace('_', '-')} must be >= 0, got {getattr(args, k)}")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if not 0 <= args.ema_decay < 1:
        raise ValueError(f"--ema-decay must be in [0, 1), got {args.ema_decay} (1 would never move the EMA weights)")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not args.channel_mult or not args.enc_channel_mult:
        raise ValueError("--channel-mult and --enc-channel-mult need at least one value")
    if args.image_size % 2 ** (len(args.channel_mult) - 1) or args.image_size % 2 ** (len(args.enc_channel_mult) - 1):
        raise ValueError(f"--image-size {args.image_size} must be divisible by 2^(levels - 1) of the channel multipliers")
    return args


def model_config(args) -> DAEConfig:
    net = UNetConfig(image_size=args.image_size, base_channels=args.base_channels, channel_mult=args.channel_mult,
                     num_res_blocks=args.num_res_blocks, attn_resolutions=args.attn, dropout=args.dropout,
                     z_dim=args.z_dim, enc_channel_mult=args.enc_channel_mult,
                     enc_num_res_blocks=args.enc_num_res_blocks, enc_pool=args.enc_pool,
                     z_map_channels=args.z_map_channels)
    return DAEConfig(net=net, schedule=args.schedule, pred=args.pred, t_sampler=args.t_sampler,
                     t_mean=args.t_mean, t_std=args.t_std)


def plain_args(args) -> dict:
    """The flags as plain types (lists for tuples) for the checkpoint."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k != "explicit"}


def merge_resume_args(args, saved: dict):
    """The checkpoint's flags, with those of this invocation that the user typed. A typed flag that
    would change what is computed must agree with the checkpoint; one that does not (RUN_FLAGS) may
    change. Untyped flags never come from this invocation's defaults."""
    clashes = []
    for k in args.explicit:
        mine = list(getattr(args, k)) if isinstance(getattr(args, k), tuple) else getattr(args, k)
        same = same_data(mine, saved[k]) if k == "data" and k in saved else mine == saved.get(k, mine)
        if k not in RUN_FLAGS and not same:
            clashes.append(f"--{k.replace('_', '-')} {mine} (checkpoint: {saved[k]})")
    if clashes:
        raise ValueError("--resume with flags that contradict the checkpoint: " + "; ".join(clashes))
    typed = {k: getattr(args, k) for k in args.explicit if k != "preset"}
    merged = argparse.Namespace(**{**saved, **typed, "out": args.out, "resume": True, "overwrite": False})
    for k in ("channel_mult", "attn", "enc_channel_mult"):
        setattr(merged, k, tuple(getattr(merged, k)))
    return merged


def lr_at(args, examples: int) -> float:
    if examples < args.warmup:
        return args.lr * (examples + args.batch_size) / (args.warmup + args.batch_size)
    if args.lr_decay == "cosine":
        progress = (examples - args.warmup) / max(1, args.examples - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return args.lr


def save_grid(ema, x_show, path, steps=20):
    from torchvision.utils import save_image
    rec = reconstruct(ema, x_show, time_grid(steps, device=x_show.device), "stochastic",
                      torch.Generator().manual_seed(0))
    save_image((torch.cat([x_show, rec]).float() + 1) / 2, path, nrow=x_show.shape[0], padding=1)


def use_channels_last(device) -> bool:
    """channels_last (NHWC) suits cuDNN; on CPU it measured slower here (results/bench-*.json)."""
    return device.type == "cuda"


def optimizer_kwargs(device) -> dict:
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def train_step(loss_fn, opt, params, ema_params, ema_decay, x0, n_phase1, autocast):
    """forward -> backward -> clip the gradient norm to 1 -> Adam step -> EMA; returns the loss (no host sync)."""
    with autocast:
        loss = loss_fn(x0, n_phase1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    # EMA: theta_ema <- decay theta_ema + (1 - decay) theta
    torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay)
    return loss.detach()


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training: a checkpoint was written and the run can be resumed."""


def prepare_run_folder(args):
    """Checks of --out before any work: (checkpoint to resume or None). Deletes nothing."""
    ckpt_path, log_path = os.path.join(args.out, "ckpt.pt"), os.path.join(args.out, "log.jsonl")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file; give a folder for the run")
    aside = find_set_aside(args.out)
    note = f" ({aside[-1]} holds a run that an interrupted --overwrite set aside)" if aside else ""
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise ValueError(f"--resume: no checkpoint in {args.out} to resume from{note}")
        return load_checkpoint(ckpt_path)
    if os.path.exists(ckpt_path) or os.path.exists(log_path):
        if not args.overwrite:
            what = "a run" if os.path.exists(ckpt_path) else "the log of a run that never wrote a checkpoint"
            raise ValueError(f"{args.out} already holds {what}: pass --resume to continue it, "
                             f"--overwrite to replace it, or another --out")
    return None


def train(args):
    device = pick_device(args.device)
    ckpt = prepare_run_folder(args)
    if ckpt is not None:
        args = merge_resume_args(args, ckpt["args"])
        device = pick_device(args.device)
    ckpt_path, log_path = os.path.join(args.out, "ckpt.pt"), os.path.join(args.out, "log.jsonl")
    check_output(ckpt_path, "--out")
    torch.manual_seed(args.seed)
    model = DiffusionAutoencoder(model_config(args)).to(device)
    if device.type != "cuda" and not args.allow_slow:  # refuse to start a run that would take days
        gflop, hours = estimate_hours(model, args.image_size, args.examples, device)
        if hours > 3:
            raise ValueError(f"this run is {args.examples:,} examples at {gflop:.1f} GFLOP each: about {hours:,.0f} "
                             f"hours ({hours / 24:.1f} days) on this {device.type}. Use --preset cpu for a ~15-minute "
                             f"run, a GPU for the paper's run, or --allow-slow to start anyway")
    data = load_images(args.data, "train", args.holdout, args.image_size).to(device)
    # the grids show held-out images (CIFAR-10's test split, or the folder's held-out part) when there are any
    has_heldout = args.holdout > 0 or args.data == "cifar10"
    shown = load_images(args.data, "heldout", args.holdout, args.image_size)[:8] if has_heldout else data[:8]
    x_show = to_float(shown).to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if use_channels_last(device) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, **optimizer_kwargs(device))
    step, elapsed, saved_step = 0, 0.0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        step, elapsed = ckpt["step"], ckpt["elapsed"]
        saved_step = step
        torch.set_rng_state(ckpt["rng"]["cpu"])
        if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])

    # Every check has passed: from here on the run folder changes. Ctrl-C / SIGTERM now stop cleanly
    # at the end of a step, with a checkpoint.
    stop = []

    def on_signal(signum, frame):
        if stop:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)
        tqdm.write(f"{stop[0]}: stopping after this step to write a checkpoint (Ctrl-C again to stop at once)")

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    remove_partial_files(args.out)
    aside = set_aside(args.out) if args.overwrite else None
    if aside:
        print(f"--overwrite: the previous run is moved to {aside} and deleted once this run writes its first checkpoint")
    os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
    write_log_lines(log_path, log_lines_up_to(log_path, step) if ckpt is not None else [])  # later steps are redone

    def checkpoint():
        nonlocal aside, saved_step
        save_checkpoint(ckpt_path, {
            "config": model.cfg.to_dict(), "args": plain_args(args), "model": model.state_dict(),
            "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step, "examples": step * B,
            "elapsed": elapsed + time.time() - t_start,
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}})
        drop_set_aside(aside)  # the replacement exists now
        aside, saved_step = None, step

    def where_checkpoint():
        if saved_step is None:
            return "no checkpoint had been written yet" + (f"; the run this one replaced is still in {aside}" if aside else "")
        return (f"the last checkpoint is {ckpt_path} (step {saved_step:,}); continue with: "
                f"python train.py --out {args.out} --resume")

    B, N = args.batch_size, data.shape[0]
    total_steps = math.ceil(args.examples / B)
    phase1_examples = round(args.phase1_frac * args.examples)
    # checkpoints fall on logging steps, so that a resumed run logs the same averages
    ckpt_steps = max(1, args.ckpt_every // B // args.log_every) * args.log_every
    sample_steps = max(1, args.sample_every // B)
    loss_fn = torch.compile(model.loss) if args.compile else model.loss
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
    params, ema_params = list(model.parameters()), list(ema.parameters())
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    print(f"{count_params(model):,} parameters; {N:,} training images; {args.examples:,} examples "
          f"({phase1_examples:,} in phase 1); device {device}; run folder {args.out}")
    bar = tqdm(total=total_steps * B, initial=step * B, unit="img", unit_scale=True, dynamic_ncols=True)
    t_start = t_log = time.time()
    start_step = logged_step = step

    def log(lr):
        """One log line: the means over the steps since the last line (a resumed run's first line
        covers only the steps it ran). Stops the run if a loss was non-finite."""
        nonlocal t_log, loss_sum, logged_step
        n_steps, now = step - logged_step, time.time()
        record = {"step": step, "examples": step * B, "phase": 1 if step * B <= phase1_examples else 2,
                  "loss": loss_sum.item() / n_steps, "examples_per_s": n_steps * B / (now - t_log),
                  "lr": lr, "time": elapsed + now - t_start}
        t_log, loss_sum, logged_step = now, torch.zeros((), device=device), step
        bad = first_bad.item()
        if bad >= 0:
            record = {"step": bad + 1, "event": "non-finite loss", "examples": (bad + 1) * B}
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if bad >= 0:
            bar.close()
            raise ValueError(f"the loss became non-finite at step {bad + 1} (examples {(bad + 1) * B:,}); "
                             f"stopped: {where_checkpoint()}. Try a lower --lr")
        bar.set_postfix(phase=record["phase"], loss=f"{record['loss']:.4f}")

    try:
        while step < total_steps and not stop:
            examples = step * B
            lr = lr_at(args, examples)
            for group in opt.param_groups:
                group["lr"] = lr
            if step > start_step and step % sample_steps == 0:
                save_grid(ema, x_show, os.path.join(args.out, "samples", f"recon_{examples:010d}.png"))
            if step > start_step and step % ckpt_steps == 0 and first_bad.item() < 0:
                checkpoint()

            idx = batch_indices(step, B, N, args.seed).to(device)
            x0 = to_float(data[idx])                                                 # (B, 3, H, W)
            flip = torch.rand(B, 1, 1, 1, device=device) < 0.5
            x0 = torch.where(flip, x0.flip(3), x0)
            x0 = x0.contiguous(memory_format=memory_format)
            n_phase1 = min(max(phase1_examples - examples, 0), B)  # examples of this batch still in phase 1
            # EMA warm-up: early weights are noise, so average over at most the steps seen so far
            ema_decay = min(args.ema_decay, (1 + step) / (10 + step))
            loss = train_step(loss_fn, opt, params, ema_params, ema_decay, x0, n_phase1, autocast)
            first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
            loss_sum += loss
            step += 1
            bar.update(B)
            if step % args.log_every == 0 or step == total_steps:
                log(lr)
        if stop and step > logged_step:
            log(lr)  # the partial interval, so that every step is in the log once
        bar.close()
        checkpoint()
        if not stop:
            save_grid(ema, x_show, os.path.join(args.out, "samples", f"recon_{step * B:010d}.png"))
    except KeyboardInterrupt:  # the second Ctrl-C
        bar.close()
        raise Interrupted(f"stopped at once at step {step:,}: {where_checkpoint()}") from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if stop:
        raise Interrupted(f"{stop[0]}: stopped at step {step:,} ({step * B:,} of {args.examples:,} examples): "
                          f"{where_checkpoint()}")
    print(f"done: {step * B:,} examples in {elapsed + time.time() - t_start:.0f} s; checkpoint {ckpt_path}")


def main(argv=None):
    try:
        args = parse_args(argv)
        train(args)
    except Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:  # before training started (train() handles it from then on)
        print("interrupted before training started; the run folder was not changed", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
