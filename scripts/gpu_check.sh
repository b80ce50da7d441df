#!/usr/bin/env bash
# Every GPU check of gsm as one command, printing one summary table (well under 8 minutes on one H100):
#   a. CPU vs GPU agreement of every head's loss and gradients (deep copies; L-softmax at margin 4)
#   d. each head's cost in a real training step vs softmax (heads alternating on one backbone), head alone vs nn.Linear
#   c. a 2-epoch full-size WRN-40-14 CIFAR-100 run: train vs eval_seconds / checkpoint_seconds per epoch
#   g. eager vs torch.compile on the WRN-40-14 and ResNet-101 448² recipes (DenseNet-100-24 with CUDA graphs:
#      --only compile_densenet, about 5 minutes alone)
#   f. the real CLI end to end on the digits sets (bf16 AMP, compile=auto; multi-label + empirical init)
#   b. the cost estimate (gsm.estimate) of Tables III, I and II on this GPU
#   e. the COCO JPEG pipeline's images/s per DataLoader worker (before / after) and a real DataLoader
# Sections run in this order, each in its own process with a time limit, while enough of --budget (default
# 450 s) is left; one failing does not stop the others.
#
#   scripts/gpu_check.sh                 # on a CUDA machine; summary also in $OUT (default /tmp/gsm-gpu-check)
#   scripts/gpu_check.sh --cpu-smoke     # every section with tiny sizes on the CPU (tests this script)
#   scripts/gpu_check.sh --only heads,loader
#
# Python: $PY, else the repository's .venv, else python3. Where hydra-core / omegaconf / antlr4 / pycocotools
# are missing (a bare machine whose python3 has torch), wheels in .whl/ are installed to /tmp/site, e.g.
# prepared with (python 3.12, x86-64):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl hydra-core==1.3.2 omegaconf==2.3.0 pycocotools==2.0.10
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3      # (no wheel on PyPI: built locally)
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
