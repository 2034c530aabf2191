# make test   creates .venv (CPU only), installs what the tests need once, runs the linter, then the test suite.
# make lint   checks the code with ruff (lint rules and formatting), as make test does first.
# make format rewrites the code to ruff's formatting and applies its safe lint fixes.
# make bench  prints the benchmarks' figures.
# make data   writes TinyZero's Countdown and multiplication datasets into data/.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION := 2.13.0
OPENRLHF_VERSION := 0.11.2
# Extra pip arguments for torch, e.g. an index that serves the CPU build on machines without a local wheel.
TORCH_PIP_ARGS ?=

PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RUFF := $(VENV)/bin/ruff
# The install is redone only when what it installs changes: the stamp's name is a hash of it.
INSTALL_HASH := $(shell cat requirements-test.txt | sha256sum | cut -c1-12)-$(TORCH_VERSION)-$(OPENRLHF_VERSION)
STAMP := $(VENV)/.installed-$(INSTALL_HASH)

.PHONY: test lint format bench data train smoke preflight sweep venv clean-venv

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Both checks run and report before the target fails, so one run shows every lint and format problem.
lint: $(STAMP)
	status=0; $(RUFF) check . || status=1; $(RUFF) format --check . || status=1; exit $$status

format: $(STAMP)
	$(RUFF) format .
	$(RUFF) check --fix .

bench: $(STAMP)
	$(PY) -m bench.rewards
	$(PY) -m bench.countdown_data
	$(PY) -m bench.reward_service
	$(PY) -m bench.journal
	$(PY) -m bench.run_report

# Launcher lines are not echoed: ARGS may hold a secret (--set logger.wandb.key=...).
# make train RECIPE=recipes/countdown/qwen2.5-3b-ppo.yaml [ARGS="--set actor.adam.lr=5e-7 --dry-run"]
# Preflight runs first; the GPU runtime (requirements.txt) is installed only once it has passed.
train: $(STAMP)
	@test -n "$(RECIPE)$(RESUME)" || { echo "make train: give RECIPE=recipes/... (or RESUME=runs/...)"; exit 2; }
	@$(PY) -m launch train $(RECIPE) $(if $(RESUME),--resume $(RESUME)) $(ARGS)

# make smoke RECIPE=recipes/countdown/qwen2.5-3b-ppo.yaml: the same recipe for a few steps, then a table of what
# worked, how fast, and what the full run will take. Run it first on a new node.
smoke: $(STAMP)
	@test -n "$(RECIPE)" || { echo "make smoke: give RECIPE=recipes/..."; exit 2; }
	@$(PY) -m launch smoke $(RECIPE) $(ARGS)

preflight: $(STAMP)
	@test -n "$(RECIPE)" || { echo "make preflight: give RECIPE=recipes/..."; exit 2; }
	@$(PY) -m launch preflight $(RECIPE) $(ARGS)

sweep: $(STAMP)
	@test -n "$(ABLATION)" || { echo "make sweep: give ABLATION=recipes/ablations/..."; exit 2; }
	@$(PY) -m launch sweep $(ABLATION) $(ARGS)

# A dataset already in data/ is kept and said so; replace one with python -m data_tools.countdown --out ... --force.
data: $(STAMP)
	$(PY) -m data_tools.countdown --out data/countdown --skip-existing
	$(PY) -m data_tools.multiply --out data/multiply --skip-existing

venv: $(STAMP)

$(STAMP): requirements-test.txt
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' || \
		{ echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); openrlhf 0.11.2 has wheels for 3.10 to 3.12 only: make ... PYTHON=python3.11"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(PIP) install --quiet --no-deps openrlhf==$(OPENRLHF_VERSION)
	$(PIP) install --quiet -r requirements-test.txt
	rm -f $(VENV)/.installed-*
	touch $@

clean-venv:
	rm -rf $(VENV) .venv-gpu
