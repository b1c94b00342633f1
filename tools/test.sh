#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite, every test
# once: the whole tree built and tested under ASan+UBSan (the stricter build;
# every binary and benchmark is compiled), and beside it a short libFuzzer run
# of every fuzz target (clang). Ends with "N passed, N failed" on a line of its own and
# exits non-zero on any failure. CI gives this 25 minutes on 2 cores: each
# extra build of the tree (a plain one besides the sanitized one) costs
# minutes of compiling, hence one build.
set -uo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

results=$(mktemp -d)
# The systemd container test's root file system (tests/systemd/nspawn_test.sh)
# is a debootstrap: minutes of downloading on a fresh machine, once. It is
# made now, beside the compiling, rather than when that test runs; the test
# waits for it (a lock) if it is not done yet.
tests/systemd/nspawn_test.sh --rootfs-only >"$results/rootfs.log" 2>&1 &
rootfs_pid=$!
fuzz_pid=
trap 'kill "$rootfs_pid" $fuzz_pid 2>/dev/null; rm -rf "$results"' EXIT
status=0

# Tests are mostly waiting on real processes and daemons, not computing: twice
# as many at once as cores keeps the machine busy. Bazel runs no more actions
# at once than --jobs (by default the number of cores), so it is raised too;
# compiles stay bounded by the cores through Bazel's CPU accounting.
test_jobs=$(( $(nproc) * 2 ))

# run_suite NAME "STARTUP" "FLAGS" QUERY PATTERNS...: one bazel test
# invocation of PATTERNS (which may exclude with -//pkg/...), with bazel
# startup options STARTUP (e.g. its own --output_base); the test.xml files of
# the tests QUERY names are kept under $results/NAME, and a failed run leaves
# $results/NAME/FAILED (the suite may run in the background: no variables).
run_suite() {
  local name=$1 startup=$2 flags=$3 query=$4; shift 4
  mkdir -p "$results/$name"
  # shellcheck disable=SC2086  # startup and flags are word lists on purpose
  bazel $startup test --keep_going --jobs="$test_jobs" --local_test_jobs="$test_jobs" $flags -- "$@"
  local rc=$?
  local testlogs target dir
  # shellcheck disable=SC2086
  testlogs=$(bazel $startup info $flags bazel-testlogs 2>/dev/null | tail -1)
  for target in $(bazel $startup query "$query" 2>/dev/null); do
    dir="${target#//}"; dir="${dir/://}"
    # One test.xml, or one per shard (shard_K_of_N/test.xml).
    find "$testlogs/$dir" -maxdepth 2 -name test.xml 2>/dev/null |
      while read -r xml; do
        local kept="$results/$name/${xml#"$testlogs"/}"
        mkdir -p "$(dirname "$kept")" && cp "$xml" "$kept"
      done
  done
  # A suite that leaves no results failed, whatever bazel said.
  if [ -z "$(find "$results/$name" -name test.xml -print -quit)" ]; then
    echo "bazel test ($name): no test results were found" >&2
    echo "no_results" > "$results/$name/BUILD_FAILED"
  fi
  # Exit code 4 means "no tests found"; 3 means some tests failed (counted
  # from test.xml); anything else non-zero is a build failure.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
    echo "bazel test ($name) failed with exit code $rc" >&2
    echo "build_failure" > "$results/$name/BUILD_FAILED"
  fi
  [ "$rc" -eq 0 ] || touch "$results/$name/FAILED"
}

# The fuzz targets, a few seconds each under libFuzzer (clang, ASan+UBSan):
# their smoke tests, built with --config=fuzz (docs/fuzzing.md); the long
# runs are tools/fuzz.sh. They run beside the main stage, in a Bazel server
# and output tree of their own (a second server may not share the first's):
# their clang build fills the CPU the main stage leaves idle while its tests
# wait on processes, instead of starting only when it ends. Their output is
# shown after the main stage's.
fuzz_smoke='attr(tags, "fuzz_smoke", tests(//...))'
fuzz_startup="--output_base=$(bazel info output_base 2>/dev/null)-fuzz"
mapfile -t fuzz_targets < <(bazel query "$fuzz_smoke" 2>/dev/null)
# --symlink_prefix=/: no bazel-* links from this server, which would replace
# the main server's and send its `//...` into this server's output tree. For
# the same reason this server is only ever given targets by name (the main
# server's links are foreign to it).
run_suite fuzz "$fuzz_startup" "--config=fuzz --symlink_prefix=/" \
  "set(${fuzz_targets[*]})" "${fuzz_targets[@]}" \
  >"$results/fuzz.log" 2>&1 &
fuzz_pid=$!

# Everything else is built (every binary and benchmark) and tested once,
# under ASan+UBSan: one build of the tree instead of a plain one and a
# sanitized one. The fuzz targets' smoke tests are left to the stage above.
run_suite asan "" "--config=asan --test_tag_filters=-fuzz_smoke" \
  "tests(//...) except $fuzz_smoke" //...
wait "$fuzz_pid"
echo "=== the fuzz stage (ran beside the one above) ==="
cat "$results/fuzz.log"
bazel $fuzz_startup shutdown 2>/dev/null

compgen -G "$results/*/FAILED" >/dev/null && status=1
python3 tools/count_tests.py "$results"
count_rc=$?
[ "$status" -eq 0 ] && [ "$count_rc" -eq 0 ]
