"""Train the small CIFAR-10 classifier whose features plumbing/frechet.py's Fréchet distance uses.

    python -m tools.train_classifier --data ../shared/data/cifar10-jpeg/train --out models/classifier.pt

Trained on the training split only (data.py's held-out split is what eval.py measures on, so it must not be
seen here), with random crops (4 px reflect padding) and flips, SGD with Nesterov momentum, a linear
warm-up and decay of the learning rate, and label smoothing; its accuracy on the held-out split is printed and
written to the record (--log, a JSON file beside the weights). Seeded: one machine gives the same weights.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data import load_images, load_labels, to_float
from plumbing.cli import HelpFormatter, check_apart, check_numbers, check_output, write_all
from plumbing.device import device_model, pick_precision
from plumbing.frechet import Classifier, accuracy


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random 32 x 32 crops of the 4-px reflect-padded batch, and horizontal flips, each per image."""
    n = len(x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2, n), generator=g)
    rows = (dy[:, None] + torch.arange(32))[:, None, :, None]       # (n, 1, 32, 1)
    cols = (dx[:, None] + torch.arange(32))[:, None, None, :]       # (n, 1, 1, 32)
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--data", required=True, help="a folder of images in class sub-folders, or 'cifar10'")
    p.add_argument("--out", required=True, help="the weights to write (.pt)")
    p.add_argument("--log", help="the training record (JSON; default: --out with .json)")
    p.add_argument("--holdout", type=int, default=1000, help="held-out images (data.py's split)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=256, help="images per step")
    p.add_argument("--lr", type=float, default=0.2, help="peak learning rate")
    p.add_argument("--width", type=int, default=32, help="channels of the first layer (x2, x4, x8 after)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="autocast bf16 or fp32")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, crops, flips and order")
    args = p.parse_args(argv)
    args.log = args.log or args.out.rsplit(".", 1)[0] + ".json"
    try:
        check_numbers(args)
        for name in ("epochs", "batch_size", "width", "holdout"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
        if not args.lr > 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        check_output(args.out, "--out")
        check_output(args.log, "--log")
        check_apart({"--out": args.out, "--log": args.log}, {"--data": args.data})
        precision = pick_precision(args.precision, torch.device("cpu"))
        x_train, (y_train, classes) = load_images(args.data, "train", args.holdout), load_labels(args.data, "train", args.holdout)
        x_held, (y_held, _) = load_images(args.data, "heldout", args.holdout), load_labels(args.data, "heldout", args.holdout)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    net = Classifier(args.width, len(classes))
    decay = [p for n, p in net.named_parameters() if p.dim() > 1]
    rest = [p for n, p in net.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(x_train) // args.batch_size
    total, warm = steps_per_epoch * args.epochs, steps_per_epoch // 2
    log, t0 = [], time.time()
    bar = tqdm(total=total, desc="classifier", unit="step", dynamic_ncols=True)
    for step in range(total):
        epoch, i = divmod(step, steps_per_epoch)
        if i == 0:
            order = torch.randperm(len(x_train), generator=g)
        idx = order[i * args.batch_size:(i + 1) * args.batch_size]
        lr = args.lr * min((step + 1) / warm, (total - step) / (total - warm))
        for group in opt.param_groups:
            group["lr"] = lr
        x = augment(to_float(x_train[idx]), g)
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(net(x).float(), y_train[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update()
        if (step + 1) % 50 == 0 or step + 1 == total:
            log.append({"step": step + 1, "epoch": epoch, "loss": float(loss.detach()), "lr": lr, "time": time.time() - t0})
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if not torch.isfinite(loss):
            sys.exit(f"error: the loss is not finite at step {step + 1}: lower --lr; nothing was written")
    bar.close()
    net.eval()
    acc = accuracy(net, x_held, y_held)
    print(f"held-out accuracy {acc:.4f} on {len(x_held)} images ({time.time() - t0:.0f} s)", flush=True)
    state = {"weights": net.state_dict(), "width": args.width, "classes": len(classes)}
    record = {"heldout_accuracy": acc, "heldout": len(x_held), "train_images": len(x_train), "classes": classes,
              "args": vars(args), "precision": precision, "seconds": time.time() - t0, "cpu": device_model(torch.device("cpu")),
              "torch": torch.__version__, "parameters": sum(p.numel() for p in net.parameters()), "log": log}
    try:
        write_all({args.out: lambda f: torch.save(state, f),
                   args.log: lambda f: f.write(json.dumps(record, indent=1).encode())})
    except OSError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
