#!/usr/bin/env bash
# Every GPU check in one short script (a few minutes on one H100/H200). Run on a CUDA machine whose
# Python has gsm's dependencies:   PY=python3 OUT=/tmp/gpu scripts/gpu_check.sh
# It prints the numbers that go into the closing note / README (device, wall times, images/s).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/gsm-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PY

echo "== 1. heads on CUDA agree with the CPU (float64) and run under bf16 autocast"
$PY - <<'PY'
import torch
from gsm.heads import build_head, head_loss
for name, ml in (("gsoftmax", False), ("gsoftmax", True), ("lsoftmax", False), ("softmax", True)):
    torch.manual_seed(0)
    h = build_head(name, 64, 100, ml).double()
    f = torch.randn(32, 64, dtype=torch.float64)
    y = torch.randint(0, 2, (32, 100)).double() if ml else torch.randint(0, 100, (32,))
    cpu = head_loss(h, h(f, y), y)
    hc = h.cuda()
    gpu = head_loss(hc, hc(f.cuda(), y.cuda()), y.cuda())
    print(f"{name:9s} multilabel={ml!s:5s} |loss_cpu - loss_gpu| = {abs(cpu.item() - gpu.item()):.2e}")
    assert abs(cpu.item() - gpu.item()) < 1e-9
PY

echo "== 2. end to end on CUDA: digits with bf16 AMP + channels_last, then the same with torch.compile"
for extra in "trainer.compile=false" "trainer.compile=true"; do
  /usr/bin/time -f "wall %e s ($extra)" $PY train.py output_root="$OUT" trainer.device=cuda $extra trainer.force=true \
    2>&1 | grep -E "finished|wall|Error|error:" || true
done

echo "== 3. multi-label G-softmax on CUDA (digits_mosaic) and empirical init"
$PY train.py output_root="$OUT" trainer.device=cuda dataset=digits_mosaic head.init=empirical trainer.force=true 2>&1 | grep -E "empirical|finished"

echo "== 4. training throughput (synthetic data on the GPU, bf16, channels_last)"
$PY scripts/benchmark.py --preset gpu --steps 30
