#!/usr/bin/env bash
# Every GPU check of gsm as one command, printing one summary table. The default run (--budget 450 s, about
# 450 s on one H100/H200 plus the machine's start) measures what the open GPU work needs, in this order:
#   h. profile           where a training step's time goes (gsm.profiling): WRN-40-14 b128, DenseNet-100-24 b32
#                        and b50, ResNet-101 448² b16 — convolutions, matmuls, normalisation, elementwise,
#                        reductions/loss, copies, optimiser step, input, launch gaps
#   g. compile_densenet  DenseNet-100-24 b32: eager today vs model.shared_concat=true vs CUDA graphs
#                        (trainer.compile_mode=reduce-overhead), img/s and speedup (goal 2x); its compile is most
#                        of the run, so it goes second
#   d. head_cost         G-softmax (and fused G-softmax, where the head has it) vs softmax on ResNet-101 448² b16,
#                        alternating rounds until the cost's 95 % interval is within ±1 % (or 40 s)
#   g. compile           WRN-40-14 b128 eager vs torch.compile: MFU against the 40 % goal
#   b. estimate1         make estimate TABLE=table1 (eager, short probes) against the goal of 50 GPU-hours
# A section starts only with the seconds it needs left of --budget; one failing does not stop the others; a
# section a long compile pushes out says so in its row: rerun it with --only. Only with --only (measured before,
# or minutes each): compile_wrn_modes, compile_resnet, head_cost_wrn, heads, overhead, end_to_end, estimate3,
# loader, estimate2 (scripts/gpu_check.py's docstring says what each measures).
#
#   scripts/gpu_check.sh                 # on a CUDA machine; summary also in $OUT (default /tmp/gsm-gpu-check)
#   scripts/gpu_check.sh --cpu-smoke     # every section with tiny sizes on the CPU, in one process (tests this script)
#   scripts/gpu_check.sh --only heads,loader
#
# Python: $PY, else the repository's .venv, else python3. Where hydra-core / omegaconf / antlr4 / pycocotools
# are missing (a bare machine whose python3 has torch), wheels in .whl/ are installed to /tmp/site: prepare them
# beforehand where the package registry is reachable with scripts/gpu_wheels.sh (Python 3.12, x86-64, the
# versions the tests run with; PYVER=3.11 for another Python), and carry .whl/ with the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! $PY -c "import hydra, omegaconf, pycocotools" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "installing $(ls .whl/*.whl | wc -l) wheel(s) from .whl/ into /tmp/site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_check: $PY lacks hydra-core/omegaconf/pycocotools and there is no .whl/ folder of wheels" >&2
    exit 2
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec $PY scripts/gpu_check.py "$@"
