"""Two-phase training of a diffusion autoencoder (Khungurn et al. 2025), one explicit loop.

    python train.py --phase1-frac 0.25 --schedule sc4          # the paper's CIFAR-10 run (one GPU)
    python train.py --preset cpu --recipe small --data ../shared/data/cifar10-jpeg/train   # minutes on a CPU

Phase 1 is the first phase1_frac of all training examples (t = 1, a plain autoencoder); phase 2 the
rest (t ~ U(0, 1) under the chosen schedule). train() reads top to bottom: set-up (flags, run folder,
model, optimizer, data), then the loop: learning rate, grid and checkpoint, batch, which examples are in
phase 1, forward, backward, clip, step, EMA, log. The run folder (plumbing/checkpoint.py) gets ckpt.pt,
log.jsonl (one JSON object per logging interval) and samples/ (reconstruction grids, EMA weights).
"""
import copy
import functools
import math
import sys
import time

import torch
from tqdm import tqdm

from dae import DiffusionAutoencoder, count_params
from data import load_images, to_float
from discriminator import Discriminator, discriminator_step, generator_loss
from perceptual import load_lpips
from plumbing import distributed, stream
from plumbing.checkpoint import restore, training_state
from plumbing.cli import check_apart, check_output, one_line
from plumbing.device import check_run_fits, optimizer_kwargs, pick_device, pick_precision, use_channels_last
from plumbing.flags import merge_resume_args, model_config, parse_args, plain_args
from plumbing.run_folder import Interrupted, RunFolder
from sample import save_grid
from schedules import sample_t


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


def train(args):
    # ---- set-up: the run folder, the processes, the model, its EMA and optimizer, the data ----
    device = pick_device(args.device)
    # checks --out before any work and locks it; run.resumed is the checkpoint to continue, or None
    run = RunFolder(args, main=distributed.env_rank() == 0)
    if run.resumed is not None:  # its flags; its data folder may have moved if the checkpoint records the split
        args = merge_resume_args(args, run.resumed["args"], data_may_move="split" in run.resumed)
        device = pick_device(args.device)
    check_apart({"--out": args.out}, {"--data": args.data})  # a run inside its data would train on its grids
    # torchrun: one process per device (plumbing/distributed.py); rank 0 writes the run folder
    rank, world, device = distributed.setup(device)
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} is the global batch: it must split evenly over the "
                         f"{world} processes")
    if world > 1 and args.adv_weight > 0:
        raise ValueError("--adv-weight is not yet supported under torchrun (its discriminator is not "
                         "synchronised); train it in one process")
    precision = pick_precision(args.precision, device)
    lpips = load_lpips(device) if args.lpips_weight > 0 else None  # fails now, not mid-run, when offline
    check_output(run.ckpt_path, "--out")
    torch.manual_seed(args.seed)
    model = DiffusionAutoencoder(model_config(args)).to(device)
    check_run_fits(model, args, device)  # refuses a run that would take days on this CPU
    run.check_data(args.data, args.holdout)  # records the split; a resumed run's folder must not have changed
    images, why = stream.training_images(args, device, stream.local_world_size())  # in memory, or streamed
    if rank == 0:
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
    step, elapsed = 0, 0.0
    if run.resumed is not None:
        step, elapsed = restore(run.resumed, model, ema, opt, disc, disc_opt, device)

    B, N, cfg = args.batch_size, len(images), model.cfg
    b, shard = B // world, (rank, world)  # this process's share of each global batch
    total_steps = math.ceil(args.examples / B)
    phase1_examples = round(args.phase1_frac * args.examples)
    # checkpoints fall on logging steps, so that a resumed run logs the same averages
    ckpt_steps = max(1, args.ckpt_every // B // args.log_every) * args.log_every
    sample_steps = max(1, args.sample_every // B)
    loss_fn = model.loss
    if world > 1:  # DDP averages the gradients over the processes during backward
        loss_fn = torch.nn.parallel.DistributedDataParallel(
            distributed.LossModule(model), device_ids=[device] if device.type == "cuda" else None,
            gradient_as_bucket_view=True)
    # --compile: the loss's forward and backward as few graphs (tests/test_compile.py); checkpoints before
    # the mode existed stored True. reduce-overhead replays them as CUDA graphs, whose outputs the next
    # replay overwrites: the loop uses loss and pred within their step only.
    compile_mode = "default" if args.compile is True else args.compile
    loss_fn = torch.compile(loss_fn, mode=compile_mode) if compile_mode else loss_fn
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    noise = functools.partial(distributed.global_randn, shard=shard)  # the KL and SE terms' N(0, I)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # the first non-finite step (no host sync)
    if rank == 0:
        print(f"{count_params(model):,} parameters; {N:,} training images; {args.examples:,} examples "
              f"({phase1_examples:,} in phase 1); device {device}, {precision}; run folder {args.out}"
              + (f"; {world} processes of {b} examples per batch" if world > 1 else ""))
    batches = images.batches(B, args.seed, step, total_steps, shard)  # this process's share of each global batch
    stopped = False

    # ---- the loop: one step per global batch ----
    run.start(step, args.overwrite)  # from here on the folder changes (locked); Ctrl-C stops cleanly
    bar = tqdm(total=total_steps * B, initial=step * B, unit="img", unit_scale=True, dynamic_ncols=True,
               disable=rank != 0)
    t_start = t_log = time.time()
    start_step = logged_step = step
    try:
        while step < total_steps:
            examples = step * B
            lr = lr_at(args, examples)
            for group in opt.param_groups:
                group["lr"] = lr
            if step > start_step and step % sample_steps == 0 and rank == 0:
                save_grid(ema, x_show, run.grid_path(examples))
            if step > start_step and step % ckpt_steps == 0 and first_bad.item() < 0:
                run.save(training_state(plain_args(args), model, ema, opt, disc, disc_opt, step, B, precision,
                                        elapsed + time.time() - t_start, device), scheduled=True)

            # the batch, flipped left-right at random
            x0 = to_float(next(batches))                                                 # (b, 3, H, W)
            flip = distributed.global_draw(torch.rand, (b, 1, 1, 1), shard, device=device) < 0.5
            x0 = torch.where(flip, x0.flip(3), x0).contiguous(memory_format=memory_format)
            # which examples are in phase 1 (t = 1): the global batch's first ones while phase 1 lasts
            n_phase1 = phase1_count(examples, B, phase1_examples, args.phase1_mix, shard)
            if args.switch_reset_adam and 0 < phase1_examples and examples <= phase1_examples < examples + B:
                opt.state.clear()  # the first step with phase-2 examples: Adam's moments start afresh

            # forward: the paper's loss (dae.py) on this process's slice of the global batch's t and eps
            if compile_mode:
                torch.compiler.cudagraph_mark_step_begin()  # a new step: CUDA graphs may reuse the last one's outputs
            with autocast:
                t = distributed.global_draw(sample_t, b, shard, cfg.t_sampler, cfg.t_mean, cfg.t_std, device=device)
                eps = distributed.global_randn(x0, shard)                               # (b, 3, H, W)
                se_scale = model.draw_se_scale() if cfg.se_weight > 0 else None  # drawn here: not a graph break
                loss, pred = loss_fn(x0, n_phase1, t, eps, noise, se_scale)
                # terms on the one-step estimate x0_hat: LPIPS (epsilon-VAE, DGAE), adversarial (epsilon-VAE)
                x0_hat = model.one_step_x0(pred) if lpips is not None or disc is not None else None
                terms = []
                if lpips is not None:
                    terms.append(args.lpips_weight * lpips(x0_hat, x0).mean())
                if disc is not None and examples >= args.adv_start:
                    terms.append(args.adv_weight * generator_loss(disc, x0_hat, pred.x_t, pred.t))
                if terms:
                    loss = loss + sum(terms)
            # backward, clip the gradient norm to 1 (DiffAE), Adam step
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            # EMA: theta_ema <- decay theta_ema + (1 - decay) theta. Early weights are noise, so at first the
            # decay averages over at most the steps seen so far (our departure from DiffAE's fixed 0.9999)
            ema_decay = min(args.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay)
            if disc is not None:  # epsilon-VAE's discriminator: one step on the batch the decoder just saw
                discriminator_step(disc, disc_opt, x0_hat, x0, pred.x_t, pred.t, args.r1_weight)
            loss = loss.detach()
            first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
            loss_sum += loss
            step += 1
            bar.update(B)

            # log: the means since the last line (a resumed run's first line covers only the steps it ran)
            stopped = step < total_steps and distributed.agree_to_stop(run.signal is not None, step, args.log_every,
                                                                       world, device)
            if step % args.log_every == 0 or step == total_steps or stopped:
                now, n_steps = time.time(), step - logged_step
                record = {"step": step, "examples": step * B, "phase": 1 if step * B <= phase1_examples else 2,
                          "loss": distributed.mean_over_ranks(loss_sum, world).item() / n_steps,
                          "examples_per_s": n_steps * B / (now - t_log), "lr": lr, "time": elapsed + now - t_start}
                if first_bad.item() >= 0:  # the run stops, and its last checkpoint is the last finite one
                    bad = first_bad.item() + 1
                    run.log({"step": bad, "event": "non-finite loss", "examples": bad * B})
                    raise FloatingPointError(f"the loss became non-finite at step {bad} (examples {bad * B:,}). "
                                             f"Try a lower --lr")
                run.log(record)
                bar.set_postfix(phase=record["phase"], loss=f"{record['loss']:.4f}")
                t_log, loss_sum, logged_step = now, torch.zeros((), device=device), step
            if stopped:
                break
        stopped = stopped or (world == 1 and run.signal is not None)
        bar.close()
        run.save(training_state(plain_args(args), model, ema, opt, disc, disc_opt, step, B, precision,
                                elapsed + time.time() - t_start, device), scheduled=not stopped)
        if not stopped and rank == 0:
            save_grid(ema, x_show, run.grid_path(step * B))
    except KeyboardInterrupt:  # the second Ctrl-C
        raise Interrupted(f"stopped at once at step {step:,}: {run.where()}") from None
    except (ValueError, OSError, RuntimeError, FloatingPointError) as e:  # mid-run: an unreadable image, a full
        # disk, a diverged loss, a process of the run that died: one sentence, and where the last checkpoint is
        raise ValueError(f"{one_line(e)}; stopped at step {step:,}: {run.where()}") from None
    finally:
        bar.close()
        run.close()
    if stopped:
        raise Interrupted(f"{run.signal or 'a signal to another process'}: stopped at step {step:,} "
                          f"({step * B:,} of {args.examples:,} examples): {run.where()}")
    if rank == 0:
        print(f"done: {step * B:,} examples in {elapsed + time.time() - t_start:.0f} s; checkpoint {run.ckpt_path}")


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
