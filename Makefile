# The two commands a user needs: `make demo` (the main job on the embedded default
# model) and `make test` (the test suite). Both create the virtualenv on first use.
PY       ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
TORCH    ?= torch==2.13.0
DATA     ?= ../shared/data
RUNS     ?= runs

.PHONY: install demo test lint bench clean

$(BIN)/hybrid: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the range in pyproject.toml is then already satisfied.
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(BIN)/hybrid

install: $(BIN)/hybrid

demo: install
	$(BIN)/hybrid data prepare --benchmark xquad-r --source $(DATA)/lareqa/xquad-r --out $(RUNS)/data/xquad-r

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hybrid tasks flows infra tests bench

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(RUNS) .pytest_cache
