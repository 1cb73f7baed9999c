#!/usr/bin/env bash
# What this repo measures on a lent CUDA GPU, in two stages that each fit a 10-minute command:
#   bash results/gpu/run.sh tests OUT          # the test suite on CUDA, then bench.py (fp32, bf16, compile)
#   bash results/gpu/run.sh train OUT DATA     # a one-rank NCCL torchrun, then a short paper-preset run
# DATA is the CIFAR-10 image folder (data.py's held-out split). The outputs land in OUT; the committed
# copies are results/gpu/*. Each stage prints the GPU, the driver and the torch build first.
set -uo pipefail
stage=$1 out=$2
export PYTHONUNBUFFERED=1
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } | tee "$out/env-$stage.txt"

if [ "$stage" = tests ]; then
  # The whole suite with a GPU present: --device auto picks cuda, so the training tests run on it.
  # 8 workers x 2 threads: 8 x 16 threads on 16 cores oversubscribes the CPU and stalls the suite.
  OMP_NUM_THREADS=2 timeout 330 python3 -m pytest -q -n 8 -p no:benchmark 2>&1 | tee "$out/pytest-cuda.log" | tail -15
  python3 -m tools.bench --preset paper --batch-size 128 --steps 20 --json "$out/bench-paper-cuda.json" > /dev/null
  python3 -m tools.bench --preset cpu --batch-size 32 --steps 20 --json "$out/bench-cpu-cuda.json" > /dev/null
  python3 -m tools.bench --table "$out"/bench-*.json
elif [ "$stage" = train ]; then
  data=$3
  # torchrun with one rank: the NCCL process group and DDP on one GPU, then eval of what it wrote.
  torchrun --standalone --nproc_per_node 1 train.py --preset cpu --data "$data" --out /tmp/ddp \
    --examples 16000 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -4 | tee "$out/torchrun-nccl.txt"
  python3 eval.py --ckpt /tmp/ddp/ckpt.pt --data "$data" --n 1000 --steps 50 | tee -a "$out/torchrun-nccl.txt"
  # The paper preset (two phases, SC-4, v) for as many examples as fit ~5 minutes at bench.py's rate.
  examples=${EXAMPLES:-1000000}
  python3 train.py --preset paper --phase1-frac 0.25 --schedule sc4 --data "$data" --out /tmp/paper \
    --examples "$examples" --log-every 100 --sample-every 100000000 --ckpt-every 100000000 2>&1 \
    | tr '\r' '\n' | grep -v '^\s*$' | tail -3
  cp /tmp/paper/log.jsonl "$out/paper-short.log.jsonl"
  for w in ema model; do
    python3 eval.py --ckpt /tmp/paper/ckpt.pt --weights $w --data "$data" --n 1000 --steps 1,10,50 \
      --json "$out/paper-short-$w.json" | tail -3
  done
  timeout 150 python3 -m tools.bench --preset paper --batch-size 128 --steps 20 --compile \
    --json "$out/bench-paper-cuda-compile.json" > /dev/null && python3 -m tools.bench --table "$out"/bench-*.json
fi
