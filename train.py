"""Two-phase training of a diffusion autoencoder (Khungurn et al. 2025), one explicit loop.

    python train.py --phase1-frac 0.25 --schedule sc4          # the paper's CIFAR-10 run (one GPU)
    python train.py --preset cpu --data ../shared/data/cifar10-jpeg/train   # ~15 minutes on a CPU

Phase 1 is the first phase1_frac of all training examples (t = 1, a plain autoencoder); phase 2 the
rest (t ~ U(0, 1) under the chosen schedule). The run folder gets ckpt.pt (see checkpoint.py),
log.jsonl (one JSON object per logging interval) and samples/ (reconstruction grids, EMA weights).
"""
import copy
import functools
import json
import math
import os
import signal
import sys
import time

import torch
from tqdm import tqdm

import distributed
import stream
from checkpoint import (
    drop_set_aside,
    log_lines_up_to,
    prepare_run_folder,
    remove_partial_files,
    save_checkpoint,
    set_aside,
    write_log_lines,
)
from cli import check_output, optimizer_kwargs, pick_device, pick_precision, use_channels_last
from cost import estimate_hours
from dae import DiffusionAutoencoder, count_params
from data import load_images, to_float
from discriminator import Discriminator, discriminator_step, generator_loss
from flags import merge_resume_args, model_config, parse_args, plain_args
from perceptual import load_lpips
from sample import save_grid


def lr_at(args, examples: int) -> float:
    """Linear warm-up, then constant or cosine; --switch-warmup re-warms it after the phase switch."""
    B, switch = args.batch_size, round(args.phase1_frac * args.examples)
    rewarm = 1.0  # --switch-warmup: from ~0 to 1, linearly over its examples after the switch
    if 0 < switch <= examples < switch + args.switch_warmup:
        rewarm = (examples - switch + B) / (args.switch_warmup + B)
    if examples < args.warmup:
        return rewarm * args.lr * (examples + B) / (args.warmup + B)
    if args.lr_decay == "cosine":
        progress = (examples - args.warmup) / max(1, args.examples - args.warmup)
        return rewarm * args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return rewarm * args.lr


def phase1_count(examples, B, phase1_examples, mix, shard=(0, 1)) -> int:
    """Examples of this process's share of the batch at `examples` that train at t = 1: the global
    batch's first ones while phase 1 lasts, less its last round(mix B) (--phase1-mix keeps x_t in use)."""
    rank, world = shard
    n = min(max(phase1_examples - examples, 0), B)
    if n > 0:
        n = min(n, B - round(mix * B))
    return min(max(n - rank * (B // world), 0), B // world)


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


def train(args):
    device = pick_device(args.device)
    ckpt = prepare_run_folder(args)
    if ckpt is not None:
        args = merge_resume_args(args, ckpt["args"])
        device = pick_device(args.device)
    # torchrun: one process per device (distributed.py); rank 0 writes the run folder
    rank, world, device = distributed.setup(device)
    main_rank = rank == 0
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} is the global batch: it must split evenly over the "
                         f"{world} processes")
    if world > 1 and args.adv_weight > 0:
        raise ValueError("--adv-weight is not yet supported under torchrun (its discriminator is not "
                         "synchronised); train it in one process")
    precision = pick_precision(args.precision, device)
    lpips = load_lpips(device) if args.lpips_weight > 0 else None  # fails now, not mid-run, when offline
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
    images, why = stream.training_images(args, device, stream.local_world_size())  # in memory, or streamed
    if main_rank:
        print(why)
    # the grids show held-out images (CIFAR-10's test split, or the folder's held-out part) when there are any
    has_heldout = args.holdout > 0 or args.data == "cifar10"
    shown = load_images(args.data, "heldout", args.holdout, args.image_size)[:8] if has_heldout else images.head(8)
    x_show = to_float(shown).to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if use_channels_last(device) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, **optimizer_kwargs(device))
    disc = disc_opt = None
    if args.adv_weight > 0:  # epsilon-VAE's adversarial trajectory matching (discriminator.py)
        torch.manual_seed(args.seed + 1)  # D's initialisation from a seed of its own (this reseeds the run too)
        disc = Discriminator(model.cfg.net.in_channels).to(device)
        # betas (0.5, 0.9): a common GAN setting; epsilon-VAE does not state D's optimizer
        disc_opt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    step, elapsed, saved_step = 0, 0.0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        if disc is not None:
            disc.load_state_dict(ckpt["disc"])
            disc_opt.load_state_dict(ckpt["disc_opt"])
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
    aside = None
    if main_rank:
        remove_partial_files(args.out)
        aside = set_aside(args.out) if args.overwrite else None
        if aside:
            print(f"--overwrite: the previous run is moved to {aside} and deleted once this run writes its first "
                  f"checkpoint")
        os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
        write_log_lines(log_path, log_lines_up_to(log_path, step) if ckpt is not None else [])  # later steps are redone

    def checkpoint():
        nonlocal aside, saved_step
        if not main_rank:
            return
        save_checkpoint(ckpt_path, {
            "config": model.cfg.to_dict(), "args": plain_args(args), "model": model.state_dict(),
            "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step, "examples": step * B,
            "precision": precision, "elapsed": elapsed + time.time() - t_start,
            **({"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()} if disc is not None else {}),
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}})
        drop_set_aside(aside)  # the replacement exists now
        aside, saved_step = None, step

    def where_checkpoint():
        if saved_step is None:
            return "no checkpoint had been written yet" + (f"; the run this one replaced is still in {aside}" if aside else "")
        return (f"the last checkpoint is {ckpt_path} (step {saved_step:,}); continue with: "
                f"python train.py --out {args.out} --resume")

    B, N = args.batch_size, len(images)
    b, shard = B // world, (rank, world)  # this process's share of each global batch
    total_steps = math.ceil(args.examples / B)
    phase1_examples = round(args.phase1_frac * args.examples)
    # checkpoints fall on logging steps, so that a resumed run logs the same averages
    ckpt_steps = max(1, args.ckpt_every // B // args.log_every) * args.log_every
    sample_steps = max(1, args.sample_every // B)
    fake = []  # the batch the decoder just saw, for the discriminator's step
    adv_on = [False]  # set by the loop (a list, so that a compiled loss sees two cases, not every step)

    def extra(x0_hat, x0, x_t, t):
        """Terms on the one-step estimate of x_0: LPIPS (epsilon-VAE, DGAE), adversarial (epsilon-VAE)."""
        total = torch.zeros((), device=x0.device)
        if lpips is not None:
            total = total + args.lpips_weight * lpips(x0_hat, x0).mean()
        if disc is not None:
            fake[:] = [x0_hat, x0, x_t, t]
            if adv_on[0]:
                total = total + args.adv_weight * generator_loss(disc, x0_hat, x_t, t)
        return total
    uses_extra = lpips is not None or disc is not None
    loss_fn = functools.partial(model.loss, extra=extra if uses_extra else None, shard=shard)
    if world > 1:  # DDP averages the gradients over the processes during backward
        loss_fn = torch.nn.parallel.DistributedDataParallel(
            distributed.LossModule(model, extra=extra if uses_extra else None, shard=shard),
            device_ids=[device] if device.type == "cuda" else None, gradient_as_bucket_view=True)
    loss_fn = torch.compile(loss_fn) if args.compile else loss_fn
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    params, ema_params = list(model.parameters()), list(ema.parameters())
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    if main_rank:
        print(f"{count_params(model):,} parameters; {N:,} training images; {args.examples:,} examples "
              f"({phase1_examples:,} in phase 1); device {device}, {precision}; run folder {args.out}"
              + (f"; {world} processes of {b} examples per batch" if world > 1 else ""))
    bar = tqdm(total=total_steps * B, initial=step * B, unit="img", unit_scale=True, dynamic_ncols=True,
               disable=not main_rank)
    t_start = t_log = time.time()
    start_step = logged_step = step

    def log(lr):
        """One log line: the means over the steps since the last line (a resumed run's first line
        covers only the steps it ran). Stops the run if a loss was non-finite."""
        nonlocal t_log, loss_sum, logged_step
        n_steps, now = step - logged_step, time.time()
        record = {"step": step, "examples": step * B, "phase": 1 if step * B <= phase1_examples else 2,
                  "loss": distributed.mean_over_ranks(loss_sum, world).item() / n_steps, "examples_per_s": n_steps * B / (now - t_log),
                  "lr": lr, "time": elapsed + now - t_start}
        t_log, loss_sum, logged_step = now, torch.zeros((), device=device), step
        bad = first_bad.item()
        if bad >= 0:
            record = {"step": bad + 1, "event": "non-finite loss", "examples": (bad + 1) * B}
        if main_rank:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if bad >= 0:
            bar.close()
            raise ValueError(f"the loss became non-finite at step {bad + 1} (examples {(bad + 1) * B:,}); "
                             f"stopped: {where_checkpoint()}. Try a lower --lr")
        bar.set_postfix(phase=record["phase"], loss=f"{record['loss']:.4f}")

    def stopping() -> bool:
        """A signal stops every process at the same step: they agree at each logging step."""
        if world == 1:
            return bool(stop)
        return step % args.log_every == 0 and distributed.any_rank(bool(stop), world, device)

    stopped = False
    batches = images.batches(B, args.seed, step, total_steps, shard)  # this process's share of each global batch
    try:
        while step < total_steps and not (stopped := stopping()):
            examples = step * B
            lr = lr_at(args, examples)
            for group in opt.param_groups:
                group["lr"] = lr
            if step > start_step and step % sample_steps == 0 and main_rank:
                save_grid(ema, x_show, os.path.join(args.out, "samples", f"recon_{examples:010d}.png"))
            if step > start_step and step % ckpt_steps == 0 and first_bad.item() < 0:
                checkpoint()

            x0 = to_float(next(batches))                                             # (b, 3, H, W)
            # this process's slice of the global batch's flips
            flip = distributed.global_draw(lambda m: torch.rand(m, 1, 1, 1, device=device) < 0.5, b, shard)
            x0 = torch.where(flip, x0.flip(3), x0)
            x0 = x0.contiguous(memory_format=memory_format)
            n_phase1 = phase1_count(examples, B, phase1_examples, args.phase1_mix, shard)
            adv_on[0] = disc is not None and examples >= args.adv_start
            if args.switch_reset_adam and 0 < phase1_examples and examples <= phase1_examples < examples + B:
                opt.state.clear()  # the first step with phase-2 examples: Adam's moments start afresh
            # EMA warm-up: early weights are noise, so average over at most the steps seen so far
            ema_decay = min(args.ema_decay, (1 + step) / (10 + step))
            loss = train_step(loss_fn, opt, params, ema_params, ema_decay, x0, n_phase1, autocast)
            if disc is not None:
                discriminator_step(disc, disc_opt, *fake, args.r1_weight)
            first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
            loss_sum += loss
            step += 1
            bar.update(B)
            if step % args.log_every == 0 or step == total_steps:
                log(lr)
        stopped = stopped or (world == 1 and bool(stop))
        if stopped and step > logged_step:
            log(lr)  # the partial interval, so that every step is in the log once
        bar.close()
        checkpoint()
        if not stopped and main_rank:
            save_grid(ema, x_show, os.path.join(args.out, "samples", f"recon_{step * B:010d}.png"))
    except KeyboardInterrupt:  # the second Ctrl-C
        bar.close()
        raise Interrupted(f"stopped at once at step {step:,}: {where_checkpoint()}") from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if stopped:
        raise Interrupted(f"{stop[0] if stop else 'a signal to another process'}: stopped at step {step:,} ({step * B:,} of {args.examples:,} examples): "
                          f"{where_checkpoint()}")
    if main_rank:
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
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
