# Shared pieces of the CLI's end-to-end shell tests (cli_test.sh,
# cli_trust_test.sh, exec_cli_test.sh): a temporary directory and socket, a
# real procwarpd on it, checks that count failures, and the final verdict.
# Source it from a test run by Bazel (the working directory is the runfiles
# tree); the test sets DAEMON and CLI, then calls cli_test_setup.
#
#   cli_test_setup NAME   TMP (a fresh /tmp/procwarp_NAME.XXXXXX: unix socket
#                         paths must stay under 108 bytes, which Bazel's
#                         TEST_TMPDIR may not), SOCKET inside it, and cleanup
#                         at exit: the test's own cleanup_test function if it
#                         defines one, then the daemon, then TMP.
#   start_daemon [FLAG]...  procwarpd on SOCKET (mode 0666) with FLAGs,
#                         logging to TMP/daemon.log; DAEMON_PID; returns once
#                         `pw status` answers, exits the test if it never does.
#   pw ARG...             the CLI pointed at SOCKET.
#   fail, expect_eq, expect_contains, is_json: checks (below).
#   cli_test_finish       prints the verdict (and the daemon log on failure)
#                         and exits 1 if any check failed.

DAEMON_PID=""
FAILURES=0

cli_test_setup() {
  TMP="$(mktemp -d "/tmp/procwarp_$1.XXXXXX")"
  readonly TMP
  readonly SOCKET="${TMP}/procwarpd.sock"
  trap cli_test_cleanup EXIT
}

cli_test_cleanup() {
  if declare -F cleanup_test >/dev/null; then cleanup_test; fi
  if [[ -n "${DAEMON_PID}" ]]; then
    kill "${DAEMON_PID}" 2>/dev/null
    wait "${DAEMON_PID}" 2>/dev/null
  fi
  rm -rf "${TMP}"
}

fail() {
  # cat -v: a failure may quote raw escape sequences (cli_trust_test.sh).
  echo "FAIL: $*" | cat -v >&2
  FAILURES=$((FAILURES + 1))
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [[ "$2" != "$3" ]]; then
    fail "$1: expected [$2], got [$3]"
  else
    echo "ok: $1"
  fi
}

# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() {
  if [[ "$3" != *"$2"* ]]; then
    fail "$1: [$2] not found in [$3]"
  else
    echo "ok: $1"
  fi
}

# Succeeds when stdin is one JSON document.
is_json() {
  /usr/bin/python3 -c 'import json, sys; json.load(sys.stdin)'
}

pw() {
  "${CLI}" --socket "${SOCKET}" "$@"
}

# wait_for_daemon PID COMMAND...: polls COMMAND (bounded) until the daemon
# PID answers it; fails if it never does or the daemon exits.
wait_for_daemon() {
  local pid=$1
  shift
  for _ in $(seq 1 200); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.05
  done
  return 1
}

start_daemon() {
  "${DAEMON}" --socket "${SOCKET}" --socket_mode 0666 "$@" \
    >"${TMP}/daemon.log" 2>&1 &
  DAEMON_PID=$!
  if ! wait_for_daemon "${DAEMON_PID}" pw status; then
    echo "procwarpd did not come up; its log:" >&2
    cat "${TMP}/daemon.log" >&2
    exit 1
  fi
}

cli_test_finish() {
  if ((FAILURES > 0)); then
    echo "${FAILURES} check(s) failed; daemon log:" >&2
    cat "${TMP}/daemon.log" >&2 2>/dev/null
    exit 1
  fi
  echo "all checks passed"
}
