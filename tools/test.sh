#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: every test
# in the normal build, then the daemon and integration tests again under
# ASan+UBSan, then a short libFuzzer run of every fuzz target. Ends with "N passed, N failed" on a line of its own and exits
# non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0

# run_suite NAME "FLAGS" TARGETS...: one bazel test invocation; its test.xml
# files are kept under $results/NAME.
run_suite() {
  local name=$1 flags=$2; shift 2
  # shellcheck disable=SC2086  # flags is a word list on purpose
  bazel test --keep_going $flags "$@"
  local rc=$?
  mkdir -p "$results/$name"
  local testlogs
  # shellcheck disable=SC2086
  testlogs=$(bazel info $flags bazel-testlogs 2>/dev/null | tail -1)
  local target dir
  for target in $(bazel query "tests(set($*))" 2>/dev/null); do
    dir="${target#//}"; dir="${dir/://}"
    if [ -f "$testlogs/$dir/test.xml" ]; then
      mkdir -p "$results/$name/$dir"
      cp "$testlogs/$dir/test.xml" "$results/$name/$dir/"
    fi
  done
  # Exit code 4 means "no tests found"; 3 means some tests failed (counted
  # from test.xml); anything else non-zero is a build failure.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
    echo "bazel test ($name) failed with exit code $rc" >&2
    echo "build_failure" > "$results/$name/BUILD_FAILED"
  fi
  [ "$rc" -eq 0 ] || status=1
}

run_suite default "" //...
run_suite asan "--config=asan" //daemon/... //tests/integration/... //agent/...
# The fuzz targets, a few seconds each under libFuzzer (clang, ASan+UBSan):
# their smoke tests, built with --config=fuzz (docs/fuzzing.md). The long
# runs are tools/fuzz.sh.
mapfile -t fuzz_smoke < <(bazel query 'attr(tags, "fuzz_smoke", tests(//...))' 2>/dev/null)
run_suite fuzz "--config=fuzz" "${fuzz_smoke[@]}"

python3 tools/count_tests.py "$results"
count_rc=$?
[ "$status" -eq 0 ] && [ "$count_rc" -eq 0 ]
