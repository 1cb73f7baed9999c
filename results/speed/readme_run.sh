#!/bin/bash
# README's CPU run exactly as README types it (--precision auto: bf16 on a CPU with native bf16, fp32
# otherwise), then evaluated as run2.sh evaluates its runs (1,000 held-out images, 1, 2, 5 and 10 DDIM
# steps). Resumable: a finished training is not repeated, an interrupted one resumes.
#     bash results/speed/readme_run.sh [DATA]
set -euo pipefail
DATA=$(realpath "${1:-../shared/data/cifar10-jpeg/train}")
PY=${PY:-python}
out=runs/speed2/readme
if [ ! -f "$out/done" ]; then
    if [ -f "$out/ckpt.pt" ]; then
        $PY train.py --out "$out" --resume
    else
        $PY train.py --preset cpu --recipe small --phase1-frac 0.4 --data "$DATA" --out "$out"
    fi
    touch "$out/done"
fi
precision=$($PY -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True, map_location='cpu')['precision'])" "$out/ckpt.pt")
json=results/speed/readme-$precision.json
[ -f "$json" ] && { echo "done: $json"; exit 0; }
$PY eval.py --ckpt "$out/ckpt.pt" --data "$DATA" --n 1000 --steps 1,2,5,10 --json "$json.tmp"
cp "$out/log.jsonl" "results/speed/readme-$precision.log.jsonl"
mv "$json.tmp" "$json"
