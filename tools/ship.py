"""A trained model to ship in the repository: its EMA weights and config only, and an image set of its
held-out images, so that sample.py, eval.py and the notebooks work on a fresh clone with no data.

    python -m tools.ship --ckpt runs/cpu/ckpt.pt --out models/small.pt --data ../shared/data/cifar10-jpeg/train \
        --images models/heldout.npz --n 500

The shipped file is a checkpoint as train.py writes it, less the raw weights, the optimizer and the RNG
states (it can be evaluated and sampled, not resumed); it loads with torch.load(weights_only=True).
The image set holds --n images evenly spaced over the checkpoint's held-out split (so every class, in its
share), with their labels and their paths in the folder (eval.py checks them against the split the checkpoint records).
"""
import argparse
import os
import sys

import numpy as np

from data import list_images, load_images, load_labels, split_files
from plumbing.checkpoint import load_checkpoint, save_checkpoint
from plumbing.cli import HelpFormatter, check_apart, check_output, write_all

KEPT = ("config", "args", "ema", "step", "examples", "precision", "elapsed", "split")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--ckpt", required=True, help="a checkpoint written by train.py")
    p.add_argument("--out", required=True, help="the shipped checkpoint to write")
    p.add_argument("--data", help="the folder it was trained on (needed for --images)")
    p.add_argument("--images", help="also write this image set (.npz) of its held-out images")
    p.add_argument("--n", type=int, default=500, help="held-out images in the image set")
    args = p.parse_args(argv)
    try:
        check_output(args.out, "--out")
        check_output(args.images, "--images")
        check_apart({"--out": args.out, "--images": args.images}, {"--ckpt": args.ckpt, "--data": args.data})
        if args.images and not (args.data and args.images.endswith(".npz") and args.n > 0):
            raise ValueError("--images needs --data (the training folder), a name ending in .npz, and --n > 0")
        ckpt = load_checkpoint(args.ckpt)
        shipped = {k: ckpt[k] for k in KEPT if k in ckpt}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        save_checkpoint(args.out, shipped)
        print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MB: EMA weights and config, "
              f"step {ckpt['step']:,})")
        if args.images:
            holdout, size = ckpt["args"]["holdout"], ckpt["config"]["net"]["image_size"]
            images = load_images(args.data, "heldout", holdout, size)
            labels, classes = load_labels(args.data, "heldout", holdout)
            paths = [os.path.relpath(f, args.data) for f in split_files(list_images(args.data), "heldout", holdout)]
            # evenly spaced over the split, which is in path order: every class, in its share
            pick = np.unique(np.linspace(0, len(images) - 1, min(args.n, len(images))).round().astype(int))
            arrays = {"images": images.numpy()[pick], "labels": labels.numpy()[pick], "classes": np.array(classes),
                      "paths": np.array(paths)[pick]}
            write_all({args.images: lambda f: np.savez_compressed(f, **arrays)})
            print(f"wrote {args.images} ({len(pick)} held-out images of {args.data}, "
                  f"{os.path.getsize(args.images) / 2 ** 20:.1f} MB)")
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
