#!/usr/bin/env bash
# The models shipped in models/ (issue 25), made by the repo's own commands: README's CPU run as it was
# until b041db5 (--preset cpu-v1: the cpu preset then; README's run now uses the cheaper cpu preset), its
# phase-1-only twin (the same network and latent, every example at t = 1), a latent DDIM on the first,
# and their held-out evaluations in both conventions. Resumable: a finished step is skipped.
#   bash results/shipped/run.sh ../shared/data/cifar10-jpeg/train
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:?give the training folder, e.g. ../shared/data/cifar10-jpeg/train}
out=results/shipped
train() {  # run folder, then train.py flags
  local run=$1; shift
  if [ -f "$run/done" ]; then return; fi
  if [ -f "$run/ckpt.pt" ]; then python train.py --out "$run" --resume; else python train.py "$@" --data "$data" --out "$run"; fi
  touch "$run/done"
}
train runs/shipped/small --preset cpu-v1 --recipe small
train runs/shipped/small-phase1 --preset cpu-v1 --recipe small --phase1-frac 1
cp runs/shipped/small/log.jsonl "$out/small.log.jsonl"
cp runs/shipped/small-phase1/log.jsonl "$out/small-phase1.log.jsonl"
python -m tools.ship --ckpt runs/shipped/small/ckpt.pt --out models/small.pt --data "$data" --images models/heldout.npz --n 500
python -m tools.ship --ckpt runs/shipped/small-phase1/ckpt.pt --out models/small-phase1.pt
[ -f models/small-latent.pt ] || python latent_sampler.py --ckpt models/small.pt --data "$data" --out models/small-latent.pt \
  --examples 500000 --hidden 256 --layers 4 --n 64 --steps 10 --json "$out/small-latent.json" --grid "$out/small-latent.png"
python eval.py --ckpt models/small.pt --data "$data" --n 1000 --steps 1,2,5,10,50 --json "$out/small.json"
python eval.py --ckpt models/small.pt --data "$data" --n 250 --steps 10,50 --mode inversion --json "$out/small-inversion.json"
python eval.py --ckpt models/small-phase1.pt --data "$data" --n 1000 --steps 1 --json "$out/small-phase1.json"
python eval.py --ckpt models/small.pt --data models/heldout.npz --n 500 --steps 10 --json "$out/small-heldout-npz.json"
# README's picture: held-out originals, random x_T, inverted x_T (and an interpolation strip)
python sample.py --ckpt models/small.pt --data models/heldout.npz --n 8 --steps 10 --out figures/shipped
# the same run in fp32 on the same CPU (the time a CPU without native bf16 would take, at this core's speed)
train runs/shipped/small-fp32 --preset cpu-v1 --recipe small --precision fp32
cp runs/shipped/small-fp32/log.jsonl "$out/small-fp32.log.jsonl"
python eval.py --ckpt runs/shipped/small-fp32/ckpt.pt --data "$data" --n 1000 --steps 10 --json "$out/small-fp32.json"
