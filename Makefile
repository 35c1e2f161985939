# Task runner. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup kafka-jars demo test chaos lint bench dagster clean-data

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,dagster]'
	@touch $(STAMP)

kafka-jars: setup
	@if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(BIN)/rwi-etl kafka fetch; fi

demo: setup kafka-jars
	$(BIN)/rwi-etl demo

test: setup kafka-jars
	$(BIN)/pytest

# The fault suite alone (also part of `make test`).
chaos: setup kafka-jars
	$(BIN)/pytest -m chaos

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy pipelines connectors dagster_project

# The Dagster UI and daemon on 127.0.0.1:3000, with an instance that gives DuckDB one slot.
dagster: setup kafka-jars
	@mkdir -p .dagster && cp dagster_project/dagster.yaml .dagster/dagster.yaml
	@if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(BIN)/rwi-etl kafka up; fi
	DAGSTER_HOME=$(CURDIR)/.dagster $(BIN)/dagster dev -h 127.0.0.1 -p 3000

bench: setup kafka-jars
	$(BIN)/python bench/run_all.py

clean-data:
	@echo "removes ./data (lake, DuckDB, local broker data) — stop the broker first"
	rm -rf data
