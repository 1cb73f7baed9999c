#!/bin/bash
# Issue 24, second session: README's CPU run at 48ef550 (the baseline) and cheaper networks, all in fp32
# on this CPU, one seed each, one after another; then each evaluated on the 1,000 held-out images at
# 1, 2, 5 and 10 DDIM steps (random x_T, EMA weights). Resumable: a run whose eval JSON exists is
# skipped, one with a checkpoint is resumed.
#
#     bash results/speed/run2.sh [DATA] [RUN ...]     # RUN: a key of FLAGS below (default: all)
#
# Runs go to runs/speed2/<run>; the JSONs and training logs are copied to results/speed/.
set -euo pipefail
DATA=$(realpath "${1:-../shared/data/cifar10-jpeg/train}")
shift || true
PY=${PY:-python}
ROOT=$(pwd)
CHEAP="--channel-mult 1,1,2 --enc-channel-mult 1,1,2 --upsample transpose"
B16="--base-channels 16 --channel-mult 1,2,4 --enc-channel-mult 1,2,4 --upsample transpose"  # base 16: 16 / 32 / 64 channels in decoder and encoder
declare -A FLAGS=([base48]="" [tx112]="$CHEAP" [tx112-64k]="$CHEAP --examples 64000" [b28tx]="--base-channels 28 --upsample transpose"
                [b16m144tx]="--base-channels 16 --channel-mult 1,4,4 --upsample transpose"
                [tx-50k]="--upsample transpose --examples 50000"
                [b28tx-s1]="--base-channels 28 --upsample transpose --seed 1"
                [g4tx-48k]="--upsample transpose --norm-groups 4 --examples 48000" [g4tx]="--upsample transpose --norm-groups 4"
                [b16m124g4tx]="$B16 --norm-groups 4"
                [b16m124g4tx-p1]="$B16 --norm-groups 4 --phase1-frac 0.125"
                [b16m124g4tx-p4]="$B16 --norm-groups 4 --phase1-frac 0.4"
                [b16m124g4tx-92k]="$B16 --norm-groups 4 --examples 92000"
                [b16m124g8tx-92k]="$B16 --norm-groups 8 --examples 92000"
                [b16m124g16tx-92k]="$B16 --norm-groups 16 --examples 92000"
                [b16m124g8tx-92k-p4]="$B16 --norm-groups 8 --examples 92000 --phase1-frac 0.4")
RUNS=("$@")
[ ${#RUNS[@]} -eq 0 ] && RUNS=(base48 tx112-64k tx112 b28tx b16m144tx tx-50k b28tx-s1 g4tx-48k g4tx b16m124g4tx b16m124g4tx-p1 b16m124g4tx-p4 b16m124g4tx-92k b16m124g8tx-92k b16m124g16tx-92k b16m124g8tx-92k-p4)
for r in "${RUNS[@]}"; do
    [ -n "${FLAGS[$r]+x}" ] || { echo "unknown run $r: choose ${!FLAGS[*]}"; exit 2; }
done
[[ " ${RUNS[*]} " == *" base48 "* && ! -d /tmp/base48 ]] && git worktree add /tmp/base48 48ef550
mkdir -p runs/speed2
for r in "${RUNS[@]}"; do
    out=$ROOT/runs/speed2/$r
    [ -f results/speed/$r.json ] && { echo "$r: done (results/speed/$r.json)"; continue; }
    code=$ROOT; [ "$r" = base48 ] && code=/tmp/base48   # the baseline trains with the code of 48ef550
    preset=cpu-v1; [ "$r" = base48 ] && preset=cpu   # cpu-v1 is 48ef550's cpu preset: every run's flags are on top of it
    resume=(); [ -f "$out/ckpt.pt" ] && resume=(--resume)
    (cd "$code" && $PY train.py --preset $preset --recipe small --precision fp32 --data "$DATA" --out "$out" \
        ${FLAGS[$r]} "${resume[@]}")
    $PY eval.py --ckpt "$out/ckpt.pt" --data "$DATA" --n 1000 --steps 1,2,5,10 --json "results/speed/$r.json.tmp"
    cp "$out/log.jsonl" "results/speed/$r.log.jsonl"
    mv "results/speed/$r.json.tmp" "results/speed/$r.json"
done
