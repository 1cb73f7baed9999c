#!/usr/bin/env bash
# What this repo measures on a lent CUDA GPU, as one script that ends within 8 minutes (each part has its
# own time limit, so that a slow compilation costs only its part and the script can be rerun once):
#   bash results/gpu/run.sh OUT DATA
# DATA is the CIFAR-10 image folder (data.py's held-out split). The outputs land in OUT; the committed
# copies are results/gpu/*. It prints the GPU, the driver and the torch build first; every bench JSON
# records the GPU model too.
#   1. bench of the paper preset at batch 128 in bf16: eager, --compile, --compile reduce-overhead
#      (CUDA graphs), one after the other on the same GPU (compilation is not timed: bench warms up)
#   2. a short paper-preset run with --compile reduce-overhead that crosses the phase switch (log.jsonl
#      holds examples/s per 20 steps, before and after it)
#   3. the compile and speed tests on CUDA (--device auto picks the GPU)
set -uo pipefail
out=${1:?give an output folder} data=${2:?give the CIFAR-10 image folder}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; date -u; } | tee "$out/env.txt"

bench() {  # limit in s, JSON name, then bench flags
  local limit=$1 name=$2; shift 2
  timeout "$limit" python3 -m tools.bench --preset paper --batch-size 128 --steps 30 --precision bf16 "$@" \
    --json "$out/$name.json" > "$out/$name.txt" 2>&1 || echo "$name: stopped (exit $?) after $limit s" | tee -a "$out/limits.txt"
}
bench 60 bench-paper-eager
bench 170 bench-paper-compile --compile
bench 100 bench-paper-graphs --compile reduce-overhead   # reuses the graphs inductor just cached
python3 -m tools.bench --table "$out"/bench-paper-*.json | tee "$out/bench-table.md"

# 25,600 examples of 128, phase 1 the first 6,400 (50 steps): the compiled step before and after the switch
timeout 130 python3 train.py --preset paper --phase1-frac 0.25 --schedule sc4 --data "$data" --out /tmp/paper \
  --examples 25600 --log-every 20 --sample-every 100000000 --ckpt-every 100000000 --compile reduce-overhead 2>&1 \
  | tr '\r' '\n' | grep -v '^\s*$' | tail -4 | tee "$out/paper-compiled.txt" \
  || echo "paper run: stopped after 130 s" | tee -a "$out/limits.txt"
cp /tmp/paper/log.jsonl "$out/paper-compiled.log.jsonl" 2>/dev/null

# 8 workers x 2 threads: 8 x 16 threads on 16 cores oversubscribes the CPU and stalls the suite
OMP_NUM_THREADS=2 timeout 45 python3 -m pytest -q -n 8 -p no:benchmark tests/test_compile.py tests/test_data_speed.py \
  2>&1 | tail -5 | tee "$out/pytest-cuda.log"
