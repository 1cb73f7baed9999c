"""Command-line plumbing shared by the scripts (train, sample, eval, probe, the tools).

Nothing here is part of the method: it is how a script loads a checkpoint with its images, checks
the files it will write before the long work starts, and writes them so that a failure leaves
either all of them or none (never a JSON beside a missing .npz).
"""
import argparse
import math
import os
import tempfile

from data import heldout_problem, load_images
from plumbing.checkpoint import build_model, load_checkpoint
from plumbing.device import pick_device


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' unless there is none (None, or False for a switch) or the help says it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def check_output(path: str, flag: str) -> None:
    """Fail now, naming the flag, if `path` could not be written later (creates nothing)."""
    if not path:
        return
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the nearest folder that exists decides
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path} cannot be written: {parent} is a file, not a folder")
    try:  # a nameless temporary file: a real write, which permission bits alone do not show to root
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise ValueError(f"{flag} {path} cannot be written: {e.strerror or e} in {parent}") from None


def check_numbers(args) -> None:
    """Every number a script was given is finite, and a seed fits a generator (64 bits), before any work:
    NaN passes both `< 0` and `> 0` checks, so each script's range checks come after this one."""
    for key, value in vars(args).items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            flag = "--" + key.replace("_", "-")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{flag} must be a finite number, got {v}")
            if key == "seed" and isinstance(v, int) and not 0 <= v < 2 ** 63:
                raise ValueError(f"{flag} must be in 0 .. 2^63 - 1, got {v}")


def one_line(e: BaseException) -> str:
    """An exception as one sentence: a DataLoader worker's error is its original last line, not the traceback
    text torch wraps it in; any other, its first line."""
    lines = [line for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    if "Original Traceback" in str(e):
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def check_apart(outputs: dict, inputs: dict) -> None:
    """{flag: path} of what a script writes and of what it reads: refuse, naming the flags, an output that
    is an input, lies inside an input folder (a grid in --data would become a training image), or is
    another output."""
    ins = {flag: os.path.realpath(p) for flag, p in inputs.items() if p and p != "cifar10"}
    seen = {}
    for flag, path in outputs.items():
        if not path:
            continue
        real = os.path.realpath(path)
        for other, source in ins.items():
            if real == source or real.startswith(source.rstrip(os.sep) + os.sep):
                raise ValueError(f"{flag} {path} would {'overwrite' if real == source else 'be written inside'} "
                                 f"{other} {inputs[other]}: choose another {flag}")
        if real in seen:
            raise ValueError(f"{flag} and {seen[real]} name the same file {path}: give each its own")
        seen[real] = flag


def write_all(writers: dict) -> None:
    """{path: function(file object)}: every file is written to path.tmp first, then all are renamed,
    so that a failure (disk full, say) leaves none of them half-written or missing beside the rest."""
    tmps = []
    try:
        for path, write in writers.items():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            tmps.append(path + ".tmp")
            with open(tmps[-1], "wb") as f:
                write(f)
    except OSError as e:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise OSError(f"could not write {tmps[-1][:-4]}: {e.strerror or e}; no output was written") from None
    for tmp, path in zip(tmps, writers):
        os.replace(tmp, path)


def same_data(a: str, b: str) -> bool:
    """Whether two --data values name the same data set (one folder written as two paths counts)."""
    if "cifar10" in (a, b):
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def step_counts(text: str) -> tuple:
    """--steps as a comma-separated list of DDIM step counts, e.g. 1,2,3,5,10,50."""
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step counts such as 50 or 1,2,3,5,10,50, got {text!r}") from None
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"step counts must be positive, got {text!r}")
    return counts


def add_source_flags(p, n_default, many_steps=False):
    """The flags sample.py and eval.py share: a checkpoint, its weights, images, steps, device.
    many_steps: --steps takes a comma-separated list (eval.py evaluates each count in one call)."""
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--weights", default="ema", choices=["ema", "model"], help="EMA or raw weights")
    p.add_argument("--data", default="cifar10", help="'cifar10' or a folder of images")
    p.add_argument("--split", default="heldout", choices=["train", "heldout", "all"],
                   help="heldout = CIFAR-10's test split, or the folder's held-out images (data.py)")
    p.add_argument("--holdout", type=int, default=None,
                   help="held-out count of a folder (default: the checkpoint's; at most the checkpoint's)")
    p.add_argument("--n", type=int, default=n_default, help="images (the first n of the split)")
    if many_steps:
        p.add_argument("--steps", type=step_counts, default=(50,), help="DDIM steps, or a comma-separated list "
                       "(1,2,3,5,10,50: one record per count, one model load); inversion uses as many again")
    else:
        p.add_argument("--steps", type=int, default=50, help="DDIM steps (inversion uses as many again)")
    p.add_argument("--time-grid", default="uniform", choices=["uniform", "reversed-log"], help="sampling times")
    p.add_argument("--seed", type=int, default=0, help="seed for x_T")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")


def load_source(args):
    """(checkpoint, model on its device, the first --n uint8 images) from add_source_flags' flags.
    Refuses what would give a wrong figure: more images than the split holds, or a held-out split
    larger than the one the checkpoint was trained without, or of a folder whose contents changed since."""
    check_numbers(args)
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    if isinstance(args.steps, int) and args.steps < 1:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    if args.holdout is not None and args.holdout < 0:
        raise ValueError(f"--holdout must be >= 0, got {args.holdout}")
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.ckpt)
    model = build_model(ckpt, args.weights).to(device)
    trained_data, trained_holdout = ckpt["args"].get("data"), ckpt["args"].get("holdout", 1000)
    if args.holdout is None:  # the split the checkpoint was trained with
        args.holdout = trained_holdout
    if (args.split == "heldout" and args.data != "cifar10" and trained_data is not None
            and same_data(args.data, trained_data) and args.holdout > trained_holdout):
        raise ValueError(f"--holdout {args.holdout} is more than the {trained_holdout} images this checkpoint "
                         f"was trained without: {args.holdout - trained_holdout} of them were trained on. "
                         f"Use --holdout {trained_holdout} or less")
    split = ckpt.get("split")  # what identifies the training's split (train.py records it)
    if split and args.split == "heldout" and args.data != "cifar10":
        problem = heldout_problem(split, args.data, args.holdout)
        if problem:
            raise ValueError(problem)
    images = load_images(args.data, args.split, args.holdout, model.cfg.net.image_size)
    if args.n > len(images):
        raise ValueError(f"--n {args.n} is more than the {len(images)} images of the {args.split} split of "
                         f"{args.data}; pass --n {len(images)} or less")
    return ckpt, model, images[:args.n]
