# Two commands on a fresh machine with only Python 3.11 and make:
#   make demo   create .venv, install, dry-run the flagship protocol on the simulators
#   make test   create .venv, install, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vegard dry-run configs/protocols/esm_temperature_series.yaml --data-dir $(CURDIR)/vegard-data

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/clock_speedup.py
	$(BIN)/python benchmarks/sho_fit.py
	$(BIN)/python benchmarks/esm_map.py
	$(BIN)/python benchmarks/dry_run_speed.py

clean:
	rm -rf $(VENV) vegard-data
