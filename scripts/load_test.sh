#!/usr/bin/env bash
# Load test: thousands of tasks with the stub LLM, printing throughput and lag as it goes.
# Arguments go to bench/load_test.py (--tasks, --runtimes, --concurrency, --latency, --port).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s venv system-deps
exec .venv/bin/python -m bench.load_test "$@"
