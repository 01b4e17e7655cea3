# Two commands: `make run` (quickstart experiment) and `make test` (test suite).
# Each first creates/updates .venv from the pinned lock file.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test test-all figures images venv clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r requirements.lock
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python experiments/quickstart.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -m "" $(ARGS)

# Regenerate docs/figures from the experiments (about 85 min on 2 idle CPU cores; ARGS="--experiments quickstart")
figures: $(STAMP)
	$(VENV)/bin/python experiments/make_figures.py $(ARGS)

# The image experiments (digits, patches); on an accelerator: ARGS="--preset gpu" (README, "Images")
images: $(STAMP)
	$(VENV)/bin/python experiments/digits.py $(ARGS)
	$(VENV)/bin/python experiments/patches.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
