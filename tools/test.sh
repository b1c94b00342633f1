#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite, every test
# once: the daemon's own, integration and agent tests under ASan+UBSan (the
# stricter build of the same tests), everything else in the normal build (which
# also builds every binary and benchmark), then a short libFuzzer run of every
# fuzz target. Ends with "N passed, N failed" on a line of its own and exits
# non-zero on any failure. CI gives this 25 minutes on 2 cores: a test that
# runs in both builds costs its compile and run time twice, hence the split.
set -uo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0

# Tests are mostly waiting on real processes and daemons, not computing: more
# of them at once than cores keeps the machine busy.
test_jobs=$(( $(nproc) + 1 ))

# run_suite NAME "FLAGS" PATTERNS...: one bazel test invocation (PATTERNS may
# exclude with -//pkg/...); its test.xml files are kept under $results/NAME.
run_suite() {
  local name=$1 flags=$2; shift 2
  # shellcheck disable=SC2086  # flags is a word list on purpose
  bazel test --keep_going --local_test_jobs="$test_jobs" $flags -- "$@"
  local rc=$?
  mkdir -p "$results/$name"
  local testlogs
  # shellcheck disable=SC2086
  testlogs=$(bazel info $flags bazel-testlogs 2>/dev/null | tail -1)
  local target dir
  local query="" pattern
  for pattern in "$@"; do
    case "$pattern" in
      -*) query+=" except ${pattern#-}" ;;
      *) query+="${query:+ + }$pattern" ;;
    esac
  done
  for target in $(bazel query "tests($query)" 2>/dev/null); do
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

daemon_tests=(//daemon/... //tests/integration/... //agent/...)
run_suite asan "--config=asan" "${daemon_tests[@]}"
run_suite default "" //... "${daemon_tests[@]/#/-}"
# The fuzz targets, a few seconds each under libFuzzer (clang, ASan+UBSan):
# their smoke tests, built with --config=fuzz (docs/fuzzing.md). The long
# runs are tools/fuzz.sh.
mapfile -t fuzz_smoke < <(bazel query 'attr(tags, "fuzz_smoke", tests(//...))' 2>/dev/null)
run_suite fuzz "--config=fuzz" "${fuzz_smoke[@]}"

python3 tools/count_tests.py "$results"
count_rc=$?
[ "$status" -eq 0 ] && [ "$count_rc" -eq 0 ]
