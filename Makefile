# The two commands of README.md: `make quickstart` (the main job) and `make test`.
# Both create .venv and install everything on first use. `make bench` reads the
# toxic-questions dataset shipped inside the package (guardrail_dro/data/bundled/).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install quickstart test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "guardrail-dro needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

quickstart: install
	$(BIN)/guardrail-dro quickstart

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench: install
	$(BIN)/guardrail-dro bench --train toxic-questions:train --valid toxic-questions:valid \
		--test toxic-questions:test --seeds 3 --out benchmarks/results/toxic-questions

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
