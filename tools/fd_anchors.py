"""What fd_classifier's numbers mean: the Fréchet distance (plumbing/frechet.py) between the held-out images
and themselves blurred, themselves with noise added, and as many training images (two real sets: the floor
that a perfect model of the data would still show at this sample size).

    python -m tools.fd_anchors --data ../shared/data/cifar10-jpeg/train --json results/frechet/anchors.json
"""
import argparse
import json
import sys

import torch

from data import load_images
from plumbing.cli import HelpFormatter, check_output, write_all
from plumbing.frechet import WEIGHTS, add_noise, blur, fd_classifier, load_classifier

BLURS = (0.5, 1.0, 1.5, 2.0)    # Gaussian sigma, pixels
NOISES = (4, 8, 16, 32)         # additive Gaussian std, uint8 units


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--data", required=True, help="the image folder (its held-out split is compared)")
    p.add_argument("--n", type=int, default=1000, help="held-out images")
    p.add_argument("--classifier", default=WEIGHTS, help="the classifier's weights")
    p.add_argument("--json", required=True, help="write the distances to this JSON file")
    args = p.parse_args(argv)
    try:
        if args.n < 2:
            raise ValueError(f"--n must be at least 2, got {args.n}")
        check_output(args.json, "--json")
        net = load_classifier(args.classifier)
        held = load_images(args.data, "heldout")[:args.n]
        train = load_images(args.data, "train")
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    other = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(held)]]
    rows = [{"what": "the same images", "fd_classifier": fd_classifier(net, held, held)},
            {"what": f"{len(held)} training images (another real set)", "fd_classifier": fd_classifier(net, held, other)}]
    rows += [{"what": f"Gaussian blur, sigma {s} px", "fd_classifier": fd_classifier(net, held, blur(held, s))} for s in BLURS]
    rows += [{"what": f"additive noise, std {s} / 255", "fd_classifier": fd_classifier(net, held, add_noise(held, s))}
             for s in NOISES]
    for r in rows:
        print(f"{r['what']:>40}: {r['fd_classifier']:8.2f}")
    record = {"n": len(held), "data": args.data, "classifier": args.classifier, "rows": rows}
    write_all({args.json: lambda f: f.write(json.dumps(record, indent=2).encode())})


if __name__ == "__main__":
    main()
