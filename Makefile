# gsm: two commands on a fresh machine — `make demo` and `make test` (each installs into .venv if needed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.14.1 torchvision==0.29.1
# TORCH_INDEX=cpu: torch's CPU-only build from torch's CPU wheel index, for a machine without a GPU (no NVIDIA
# libraries or Triton: 4.1 of the CUDA build's 6.3 GB .venv); any other value is used as the index URL itself.
# Read when .venv is installed: on a fresh clone, or after rm -rf .venv (README "Install").
TORCH_INDEX ?=
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--index-url $(if $(filter cpu,$(TORCH_INDEX)),https://download.pytorch.org/whl/cpu,$(TORCH_INDEX)))

.PHONY: install demo test test-fast clean-demo table1 table2 table3 table4 table5 table6 figures sweep estimate status

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_INDEX_ARGS) $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: softmax / L-softmax / G-softmax on digits, softmax / G-softmax on digits_mosaic,
# then outputs/tables/demo.md. Finished runs are skipped on a rerun (trainer.force=true retrains).
demo: $(STAMP)
	$(BIN)/python train.py -m output_root=outputs/demo dataset=digits head=softmax,lsoftmax,gsoftmax
	$(BIN)/python train.py -m output_root=outputs/demo dataset=digits_mosaic head=softmax,gsoftmax
	$(BIN)/python -m gsm.reproduce demo --runs outputs/demo/runs --out outputs/tables

# Every test but the cluster ones, slow ones included (3 min 7 s on 2 idle cores, a fresh clone, 2026-12-07; 7 min 22 s – 8 min 5 s
# under stress-ng --cpu 2; docs/development.md says where the time goes); the 10 slowest are listed at the end.
# --dist worksteal: a worker that runs out of tests takes half of the other's queue (with xdist's default, one
# worker ran two minutes alone at the end). Python's bytecode cache is on for the run even where the
# environment turns it off (PYTHONDONTWRITEBYTECODE): the processes the suite starts then read gsm compiled.
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=10 -m "not cluster"

# The cluster tests (tests/test_cluster_*.py and two sweeps of tests/test_cli_identity.py, marker cluster): a one-node
# SLURM (scripts/slurm_local.sh installs slurm-wlm and munge with apt-get where missing, as root), a Ray head
# started with `ray start`, torchrun with restarts, each driven through gsm's commands and faulted (time limit,
# scancel, killed submitter, killed Ray worker, killed rank). Minutes, one test at a time (they time SLURM jobs
# and share the node's cores). Where they cannot run (not root, no apt-get, not Linux) they skip with one line; in
# CI (CI=true) that is a failure.
test-cluster: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -p no:xdist -m cluster --durations=0

# The inner loop while editing: the tests not marked `slow` (no process starts, no end-to-end training), about a
# minute on 2 cores (docs/development.md). `make test` stays the whole suite.
test-fast: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

clean-demo:
	rm -rf outputs/demo outputs/tables/demo.md

# The paper's tables: run what is missing of the table's grid (Hydra launcher LAUNCHER), then write
# outputs/tables/tableN.{md,csv,tex} (table1 and table3 also draw Figures 3-8 into outputs/figures).
# PROFILE=smoke: the same pipeline on CPU in minutes (fixtures, tiny models), under outputs/smoke/.
# TABLE_ARGS: further gsm-tables options, e.g. TABLE_ARGS=--no-run (only read the runs there) or, for
# table2/3/4, TABLE_ARGS=--as-written: also train each G-softmax row with head.dist_update=autograd (the
# method as the paper describes it; the default recipes update mu, sigma as the authors' released code)
# and write outputs/tables/tableN_as_written.{md,csv,tex} (paper / ours as released / ours as written).
PROFILE ?= full
LAUNCHER ?= basic
TABLE_ARGS ?=

table1 table2 table3 table4 table5 table6: $(STAMP)
	$(BIN)/python -m gsm.reproduce $@ --profile $(PROFILE) --launcher $(LAUNCHER) $(TABLE_ARGS)

# Figures 3-8 from the runs that exist (no training).
figures: $(STAMP)
	$(BIN)/python -m gsm.reproduce figures --profile $(PROFILE) $(TABLE_ARGS)

# One table of every run under RUNS (the settings that differ, headline metrics, seeds as mean ± std):
# RUNS/../tables/sweep.{md,csv}.
RUNS ?= outputs/runs
sweep: $(STAMP)
	$(BIN)/python -m gsm.reproduce sweep --runs $(RUNS) $(TABLE_ARGS)

# What TABLE's runs would cost on this machine (time, memory), without training.
TABLE ?= table1
estimate: $(STAMP)
	$(BIN)/python -m gsm.reproduce $(TABLE) --estimate --profile $(PROFILE) --launcher $(LAUNCHER) $(TABLE_ARGS)

# Every run of TABLE's grid and its state (finished with its metric, training with epoch and ETA, interrupted,
# failed with its error line, not started), totals and the hours left; reads only the runs folder, so it works
# while a sweep runs, on any launcher: make status TABLE=table3 PROFILE=smoke (TABLE_ARGS="--seeds 0,1,2" for several seeds).
status: $(STAMP)
	$(BIN)/python -m gsm.reproduce status $(TABLE) --profile $(PROFILE) $(TABLE_ARGS)
