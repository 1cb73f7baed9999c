#!/usr/bin/env bash
# fd_classifier (plumbing/frechet.py), the Fréchet distance in the features of the repo's own CIFAR-10
# classifier: what its numbers mean (anchors: blur, noise, another real set), then the paper's trade-off on
# the shipped models: two-phase training (models/small.pt) at 1-10 DDIM steps against phase 1 alone
# (models/small-phase1.pt, one step). 1,000 held-out images, random x_T, EMA weights.
#   bash results/frechet/run.sh ../shared/data/cifar10-jpeg/train
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:?give the training folder, e.g. ../shared/data/cifar10-jpeg/train}
out=results/frechet
[ -f models/classifier.pt ] || python -m tools.train_classifier --data "$data" --out models/classifier.pt
python -m tools.fd_anchors --data "$data" --json "$out/anchors.json"
python eval.py --ckpt models/small.pt --data "$data" --n 1000 --steps 1,2,5,10 --json "$out/small.json"
python eval.py --ckpt models/small-phase1.pt --data "$data" --n 1000 --steps 1 --json "$out/small-phase1.json"
