#!/usr/bin/env bash
# What the latent holds (README), measured on the checkpoints of `experiments.py --suite recipes`
# (runs/recipes/<recipe>/): a linear probe of z for every recipe, block-DCT spectra of every recipe's
# reconstructions and of the spatial latents, a class manipulation and latent-DDIM samples of the
# paper's recipe. Each output is skipped if it exists (delete it to redo it).
#   bash results/latent/run.sh ../shared/data/cifar10-jpeg/train
set -euo pipefail
data=${1:?usage: bash results/latent/run.sh DATA_FOLDER}
cd "$(dirname "$0")/../.."
out=results/latent
for run in runs/recipes/*/; do
    name=$(basename "$run")
    [ -f "$run/done" ] || { echo "skip $name: its training has not finished"; continue; }
    [ -f "$out/probe-$name.json" ] || python probe.py --ckpt "$run/ckpt.pt" --data "$data" --json "$out/probe-$name.json"
    [ -f "$out/spectrum-$name.json" ] || python spectrum.py --npz "$run/eval-stochastic.npz" --json "$out/spectrum-$name.json"
    # the spectra of the images and of a spatial latent (a vector latent has no spectrum: no latent entry)
    [ -f "$out/latent-spectrum-$name.json" ] || python spectrum.py --ckpt "$run/ckpt.pt" --data "$data" \
        --json "$out/latent-spectrum-$name.json"
done
# does phase 1 make z more semantic? the phase1 sweep's models at one budget (40,000 examples): one-phase
# SC-4 (frac-0), two-phase (0.1 ... 0.9), phase 1 only (frac-1)
for run in runs/phase1/*/; do
    name=$(basename "$run")
    [ -f "$run/done" ] || { echo "skip phase1 $name: its training has not finished"; continue; }
    [ -f "$out/probe-phase1-$name.json" ] || python probe.py --ckpt "$run/ckpt.pt" --data "$data" \
        --json "$out/probe-phase1-$name.json"
done
paper=runs/recipes/2-paper
[ -f "$out/manipulation-2-paper.json" ] || python probe.py --ckpt "$paper/ckpt.pt" --data "$data" \
    --manipulate ship --strengths 0,2,4,8 --json "$out/manipulation-2-paper.json" --grid figures/manipulation.png
[ -f "$out/samples-2-paper.json" ] || python latent_sampler.py --ckpt "$paper/ckpt.pt" --data "$data" \
    --out "$paper/latent.pt" --json "$out/samples-2-paper.json" --grid figures/samples.png
