# Two commands do everything on a fresh machine:
#   make run   — create .venv, install, run the whole pipeline (dvc repro) on embedded MNIST
#   make test  — create .venv if needed, install, run the test suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: run test lint lock ui clean chromium bench gpu-check

# constraints.txt pins every package to the version the suite last passed with, so that a fresh
# venv computes the same numbers as the one that produced the committed results (only torch and
# torchvision were pinned before: a rerun's third decimals moved with the rest). `make lock`
# rewrites it from .venv after an upgrade.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision first, pinned to the wheels this machine kind serves from disk
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

lock: $(STAMP)
	{ echo "# Every package's version as CI last passed with it (make lock rewrites this file from .venv)."; \
	  echo "# pip install -c: pins versions of what pyproject.toml asks for; installs nothing by itself."; \
	  $(PY) -m pip freeze --exclude-editable; } > constraints.txt

.dvc/config:
	$(VENV)/bin/dvc init --quiet $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm)
	$(VENV)/bin/dvc config core.analytics false

run: $(STAMP) .dvc/config
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/ugan run
	@echo "report: reports/report.md — MLflow UI: make ui"

# pytest-xdist workers, one per core (TEST_WORKERS=0: one process). `--dist loadscope` keeps a
# module's tests on one worker (its module fixture runs once); tests/conftest.py puts the slowest
# modules first and `--no-loadscope-reorder` keeps that order. On this 2-core machine, quiet:
# see README "Timing" for the measured wall times of both.
TEST_WORKERS ?= auto
test: $(STAMP) chromium
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadscope \
	    --no-loadscope-reorder --durations=15

# Headless Chromium for the browser tests (tests/test_ui_browser.py, tests/test_first_look.py;
# Debian packages, apt-get needs root). Where it cannot be installed they skip and say why;
# under CI (`CI` set, as .ci/run does) this target fails instead, and so would they.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; } 2>&1; \
	command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0; \
	if [ -n "$$CI" ]; then \
	  echo "error: chromium / chromedriver could not be installed (apt-get install chromium" \
	       "chromium-driver); CI needs them for the browser tests" >&2; exit 1; fi; \
	echo "chromium not installed: the browser tests will be skipped (under CI=1 they fail)"

lint: $(STAMP)
	$(VENV)/bin/ruff check src stages tests benchmarks

# MLflow 3.17's UI opens experiments in its GenAI view unless told otherwise: the link printed
# here opens the experiment's runs (`ugan run` prints it too).
ui: $(STAMP)
	@$(PY) -c "from mlflow.tracking import MlflowClient; from ugan.tracking.store import *; \
	  e = MlflowClient(tracking_uri()).get_experiment_by_name('ugan'); \
	  e and print('experiment ugan, its runs:', runs_url(e.experiment_id))" 2>/dev/null || true
	$(VENV)/bin/ugan ui

# Speed against references (benchmarks/README.md); figures also go to benchmarks/results/*.json.
# On a GPU machine: make bench BENCH_DEVICE=cuda
BENCH_DEVICE ?= auto
bench: $(STAMP)
	cd benchmarks && PATH=$(abspath $(VENV))/bin:$$PATH && \
	  $(abspath $(PY)) throughput.py --device $(BENCH_DEVICE) --json results/throughput.json && \
	  $(abspath $(PY)) scaling.py --device $(BENCH_DEVICE) --json results/scaling.json && \
	  $(abspath $(PY)) evaluation.py --device $(BENCH_DEVICE) --json results/evaluation.json && \
	  $(abspath $(PY)) pipeline_overhead.py --json results/pipeline_overhead.json && \
	  $(abspath $(PY)) stage_start.py --json results/stage_start.json && \
	  $(abspath $(PY)) queue_jobs.py --json results/queue_jobs.json && \
	  $(abspath $(PY)) cell_threads.py --json results/cell_threads.json && \
	  $(abspath $(PY)) run_jobs.py --gan-steps 300 --vae-steps 300 --json results/run_jobs_short.json && \
	  $(abspath $(PY)) mode_cells.py --json results/mode_cells.json && \
	  $(abspath $(PY)) mode_steps.py --json results/mode_steps.json && \
	  $(abspath $(PY)) omp_wait.py --json results/omp_wait.json && \
	  $(abspath $(PY)) stacked_labeller.py --json results/stacked_labeller.json

# On a GPU runner, one command of at most ~8 minutes: the CUDA tests (none may skip), throughput
# per preset at 28 / 64 px, the method x preset matrix (finite losses, loadable checkpoints, a
# sync audit, FID on CUDA vs CPU, cross-device checkpoints), a tiny `dvc repro` on CUDA and the
# Stacked MNIST steps that size `ugan reproduce gaan-stacked-mnist-long`, into
# benchmarks/results/gpu.json. Without a CUDA GPU it says so and exits 0.
gpu-check: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) benchmarks/gpu_check.py

clean:
	rm -rf data/prepared models runs evaluation reports/*.md reports/*.png reports/*.json metrics
