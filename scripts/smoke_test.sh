#!/usr/bin/env bash
# Smoke test: a handful of tasks of each type (tasks.jsonl) end to end on a fresh local Kafka,
# with the scripted stub LLM, real bubblewrap and real Chromium. Exits non-zero unless every
# task got its trajectory file.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s venv system-deps
exec .venv/bin/adp demo --llm stub --tasks "${1:-tasks.jsonl}" --out "${ADP_OUTPUT_DIR:-output/smoke}" --timeout 600
