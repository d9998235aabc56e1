# The two commands a user needs: `make demo` (the main job on the embedded default
# model) and `make test` (the test suite). Both create the virtualenv on first use.
PY       ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
TORCH    ?= torch==2.13.0

.PHONY: install demo test lint bench stack-down clean

$(BIN)/hybrid: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the range in pyproject.toml is then already satisfied.
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(BIN)/hybrid

install: $(BIN)/hybrid

# Starts the local stack (Prefect, MLflow, Ray on 127.0.0.1), deploys prefect.yaml, starts a
# worker and runs 'hybrid-pipeline/quick'; prints the report paths and the MLflow run URL.
demo: install
	$(BIN)/python -m infra.demo

stack-down: install
	$(BIN)/python -m infra.stack down

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hybrid tasks flows infra tests bench

bench: install
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python -m bench.run_all

clean:
	rm -rf runs .pytest_cache
