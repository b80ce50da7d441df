#!/usr/bin/env bash
# The wheels that scripts/gpu_check.sh installs on a GPU machine whose python3 has torch (and numpy, PyYAML,
# matplotlib, pandas, scipy, TensorBoard) but not gsm's config and COCO libraries: hydra-core, omegaconf, its
# antlr4 runtime and pycocotools. Run it here, where the package registry is reachable, before the GPU session;
# it fills .whl/ (ignored by git) with the versions this checkout's .venv runs its tests with, then carry .whl with
# the checkout (for the device tool: `carry: [".whl"]`) and run scripts/gpu_check.sh there.
#
#   scripts/gpu_wheels.sh                 # for Python 3.12 on x86-64 (the lent H200 machines' python3)
#   PYVER=3.11 scripts/gpu_wheels.sh      # another Python there
#
# PY: the Python whose installed versions are fetched (default .venv/bin/python, as `make install` makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}
if ! "$PY" -c "import hydra, omegaconf, pycocotools" 2>/dev/null; then
  echo "gpu_wheels: $PY has no hydra-core/omegaconf/pycocotools to take the versions from; run make install first" >&2
  exit 2
fi
version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
pins=("hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" "pycocotools==$(version pycocotools)")
antlr="antlr4-python3-runtime==$(version antlr4-python3-runtime)"
rm -rf .whl
mkdir .whl
# pip matches each manylinux_2_N tag exactly: the usual ones, newest first
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${pins[@]}"
"$PY" -m pip wheel --quiet --no-deps -w .whl "$antlr"   # pure Python, and PyPI has only its source: built here
echo "gpu_wheels: for Python $PYVER in .whl/ (${pins[*]} $antlr):"
ls -l .whl
