#!/usr/bin/env bash
# Runs one fuzz target briefly (docs/fuzzing.md): SECONDS of libFuzzer
# fuzzing from an empty corpus in the fuzz build, the fixed pseudo-random
# inputs of standalone_main.cc otherwise. Any crash, sanitizer report or
# leak fails the test.
# Usage: smoke_test.sh FUZZER SECONDS
set -euo pipefail
fuzzer=$1 seconds=$2
corpus="${TEST_TMPDIR:-$(mktemp -d)}/corpus"
mkdir -p "$corpus"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$corpus"
