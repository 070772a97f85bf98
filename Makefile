# Two commands from a fresh clone:  `make demo` (the hospital consortium) and `make test`.
# Both create .venv on first use (CPU torch first, from local disk), then reuse it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: demo test lint typecheck bench setup clean

demo: $(STAMP)
	$(VENV)/bin/secagg simulate examples/hospitals.toml

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(JOBS) -q

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m benchmarks secagg --quick --json
	$(PY) -m benchmarks he --quick --json
	$(PY) -m benchmarks gas --quick --json

setup: $(STAMP)

$(STAMP): pyproject.toml contracts/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	# Solidity compiler, OpenZeppelin and anvil for the contract tests (npm registry); the
	# package itself runs from the committed artifacts and needs no Node.
	if command -v npm >/dev/null; then npm ci --prefix contracts --no-audit --no-fund --loglevel=error || echo "npm ci failed: the contract tests that need Node will skip"; fi
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis contracts/node_modules
