#!/usr/bin/env bash
# Runs every libFuzzer target of procwarp (docs/fuzzing.md) for a number of
# inputs each, under ASan+UBSan with leak detection, built by Bazel with
# --config=fuzz (clang). Prints one line per target and a summary; exits
# non-zero if any target crashed, leaked or failed to build.
#
# Usage: tools/fuzz.sh [--runs N] [--jobs J] [TARGET...]
#   --runs N   inputs per target (default 1000000, the issue's bar)
#   --jobs J   targets run at once (default 1; the machine has 2 CPUs)
#   TARGET     Bazel labels (default: every target tagged procwarp_fuzzer)
# Corpora persist in ${PROCWARP_FUZZ_DIR:-/var/tmp/procwarp-fuzz}/NAME, crash
# inputs land in .../NAME/crashes, logs in .../NAME.log.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=1000000
jobs=1
targets=()
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(bazel query 'attr(tags, "procwarp_fuzzer", //...)' 2>/dev/null)
fi
if ((${#targets[@]} == 0)); then
  echo "no fuzz targets found" >&2
  exit 1
fi

bazel build --config=fuzz "${targets[@]}" || { echo "fuzz build failed" >&2; exit 1; }
bin=$(bazel info --config=fuzz bazel-bin 2>/dev/null)
work=${PROCWARP_FUZZ_DIR:-/var/tmp/procwarp-fuzz}
mkdir -p "$work"

# run_target LABEL: fuzzes one target; prints its summary line.
run_target() {
  local label=$1 path name dir log start end rc execs
  path="${label#//}"; path="${path/://}"
  name=$(basename "$path")
  dir="$work/$name"
  log="$work/$name.log"
  mkdir -p "$dir/corpus" "$dir/crashes"
  start=$(date +%s)
  (cd "$dir" && "$bin/$path" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 -artifact_prefix="$dir/crashes/" corpus) >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  local cov
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  printf '%-28s %s  inputs=%s  cov=%s  seconds=%s  corpus=%s\n' "$name" \
    "$([ "$rc" -eq 0 ] && echo PASS || echo "FAIL(rc=$rc, see $log)")" \
    "${execs:-?}" "${cov:-?}" "$((end - start))" "$(ls "$dir/corpus" | wc -l)"
  return "$rc"
}

failed=0
running=0
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for target in "${targets[@]}"; do
  run_target "$target" >>"$results" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
  fi
done
while ((running > 0)); do
  wait -n || failed=$((failed + 1))
  running=$((running - 1))
done
sort "$results"
echo "$(( ${#targets[@]} - failed )) passed, $failed failed (fuzz, $runs inputs each)"
[ "$failed" -eq 0 ]
