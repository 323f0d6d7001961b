# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo
DEMO_CONFIG ?= jobs/pipeline.yaml
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S := 0.2

.PHONY: install demo test test-fast bench bench-label bench-classic bench-serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/orpr pipeline --out $(RUN_DIR) --config $(DEMO_CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_sim.py
	$(BIN)/python bench/bench_rl.py
	$(BIN)/python bench/bench_train.py

bench-label: $(STAMP)
	$(BIN)/python bench/bench_label.py

bench-classic: $(STAMP)
	$(BIN)/python bench/bench_classic.py

bench-serve: $(STAMP)
	$(BIN)/python bench/bench_serve.py

clean:
	rm -rf $(VENV) runs .pytest_cache
