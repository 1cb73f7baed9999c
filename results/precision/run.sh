#!/usr/bin/env bash
# fp32 against bf16 autocast for the cpu preset's two-phase run (variant 4 of the ablation), one run
# after another on one machine: at an equal number of examples, then bf16 at the wall-clock time
# the fp32 run took. Resumable: experiments.py skips what has its result and resumes a training.
#   bash results/precision/run.sh ../shared/data/cifar10-jpeg/train
set -euo pipefail
data=${1:?usage: bash results/precision/run.sh DATA_FOLDER}
cd "$(dirname "$0")/../.."
run() {  # name, then experiments.py flags
    local name=$1; shift
    python -m tools.experiments --data "$data" --only 4-sc4-v-2phase --results "results/precision/$name" \
        --runs "runs/precision/$name" "$@"
}
run fp32 --precision fp32
run bf16 --precision bf16
# bf16 given the fp32 run's training time: examples scaled by the measured time ratio (whole batches of 32)
examples=$(python - <<'PY'
import json
fp32, bf16 = (json.load(open(f"results/precision/{n}/4-sc4-v-2phase.json"))[0] for n in ("fp32", "bf16"))
print(round(fp32["examples"] * fp32["train_seconds"] / bf16["train_seconds"] / 32) * 32)
PY
)
run bf16-equal-time --precision bf16 --examples "$examples"
