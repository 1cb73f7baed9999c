#!/bin/bash
# Issue 24, sixth session: the bf16 step of README's CPU run's network (--preset cpu) against the one it
# replaced (--preset cpu-v1), side by side: tools.bench in bf16 (and fp32), 30 timed steps of batch 32,
# alternating A B A B A B, so that a drift of the machine's speed hits both. Writes
# results/speed/bf16-check/<preset>-<i>.json and prints each run's training examples/s.
#     bash results/speed/bf16_check.sh
set -euo pipefail
PY=${PY:-python}
out=results/speed/bf16-check
mkdir -p $out
for i in 1 2 3; do
    for preset in cpu cpu-v1; do
        $PY -m tools.bench --preset $preset --recipe small --precision both --steps 30 --json $out/$preset-$i.json.tmp > /dev/null
        mv $out/$preset-$i.json.tmp $out/$preset-$i.json
        $PY -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[1], r['device_model'],
            *(f\"{k} {v['train_images_per_s']:.1f} ex/s\" for k, v in r['precisions'].items()))" $out/$preset-$i.json
    done
done
