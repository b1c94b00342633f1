#!/bin/bash
# The CLI, run as root, against a daemon it must not trust and against text it
# must not print raw (issue 8, point 7); "another user" is uid 65534:
#  - a fake daemon served by uid 65534 that PROCWARP_SOCKET or --socket points
#    at is refused with an explanation and receives zero bytes (no request,
#    no environment, no stdin);
#  - positive controls: the real root daemon serves root; a daemon run by
#    uid 65534 serves uid 65534 itself, and root only with
#    PROCWARP_DAEMON_UID=65534;
#  - uid 65534's escape sequences in argv and labels reach root's
#    `ps --all`, `events`, `thread ls --all` and error messages escaped (and
#    the argv words still read back in bash as what was run); --json output
#    stays valid JSON holding the exact strings.
set -u

readonly DAEMON="${PWD}/daemon/procwarpd"
readonly CLI="${PWD}/client/cli/procwarp"
readonly AGENT="${PWD}/agent/procwarp-agent"
readonly LISTENER="${PWD}/client/cc/foreign_listener"
readonly NOBODY=65534
# Another user's window-title escape: OSC 0 ; pwned BEL.
readonly ESC_TITLE=$'\e]0;pwned\a'
# How it must look once escaped, and as a bash word.
readonly ESCAPED='\x1b]0;pwned\x07'
readonly DOLLAR_QUOTED="\$'${ESCAPED}'"
source "${PWD}/client/cli/testing/cli_test_lib.sh"
cli_test_setup cli_trust
# uid 65534 may reach sockets inside, not list the directory.
chmod 0711 "${TMP}"
USER_DAEMON_PID=""
EVENTS_PIDS=()

cleanup_test() {
  local pid
  for pid in "${EVENTS_PIDS[@]}" ${USER_DAEMON_PID}; do
    kill "${pid}" 2>/dev/null
    wait "${pid}" 2>/dev/null
  done
}

# expect_no_controls WHAT FILE: FILE holds no byte a terminal acts on other
# than the newlines between lines (C0 controls, DEL, UTF-8 C1 controls).
expect_no_controls() {
  if LC_ALL=C tr -d '\n' <"$2" | LC_ALL=C grep -q $'[\x01-\x1f\x7f]\|\xc2[\x80-\x9f]'; then
    fail "$1: raw control characters in: $(cat -v "$2")"
  else
    echo "ok: $1"
  fi
}

# The binaries uid 65534 runs are copied out of Bazel's tree, which it may
# not be able to reach.
install -m 0755 "${CLI}" "${TMP}/procwarp"
install -m 0755 "${DAEMON}" "${TMP}/procwarpd"

as_nobody() {
  setpriv --reuid="${NOBODY}" --regid="${NOBODY}" --clear-groups "$@"
}

pw_nobody() {
  as_nobody "${TMP}/procwarp" --socket "${SOCKET}" "$@"
}

# refused_by_fake HOW COMMAND...: starts a fake daemon as uid 65534 at
# ${TMP}/fake/procwarpd.sock, runs COMMAND (which must point the CLI at it)
# as root with a secret in its environment and stdin, and checks that the
# CLI refuses with the explanation and sent nothing.
refused_by_fake() {
  local how=$1
  shift
  local dir="${TMP}/fake"
  rm -rf "${dir}"
  mkdir -m 1777 "${dir}"
  local fake_socket="${dir}/procwarpd.sock"
  local line out rc
  coproc FAKE { exec "${LISTENER}" "${fake_socket}" "${NOBODY}"; }
  local fake_pid=${FAKE_PID} fake_out
  # Our own copy of its stdout: bash closes FAKE's once it has exited.
  exec {fake_out}<&"${FAKE[0]}"
  read -r -t 30 line <&"${fake_out}"
  expect_eq "${how}: the fake daemon listens" "listening" "${line}"
  out="$(echo 'root secret stdin' | FAKE_SOCKET="${fake_socket}" \
    ROOT_SECRET=hunter2 "$@" 2>&1)"
  rc=$?
  expect_eq "${how}: exit code" 1 "${rc}"
  expect_eq "${how}: message" \
    "procwarp: the socket ${fake_socket} is served by uid ${NOBODY} (pid ${fake_pid}, comm foreign_listene), not by root or you; refusing to send your request; set PROCWARP_DAEMON_UID=${NOBODY} if you trust it" \
    "${out}"
  read -r -t 30 line <&"${fake_out}"
  expect_eq "${how}: the fake daemon received nothing" "received 0" "${line}"
  exec {fake_out}<&-
  wait "${fake_pid}" 2>/dev/null
}

test_fake_daemon_is_refused() {
  refused_by_fake "PROCWARP_SOCKET" \
    bash -c 'PROCWARP_SOCKET="${FAKE_SOCKET}" "$0" run --inherit-env -- /bin/cat' \
    "${CLI}"
  refused_by_fake "--socket" \
    bash -c '"$0" --socket "${FAKE_SOCKET}" status' "${CLI}"
}

test_user_daemon() {
  local dir="${TMP}/user"
  mkdir -m 0700 "${dir}"
  chown "${NOBODY}:${NOBODY}" "${dir}"
  local user_socket="${dir}/procwarpd.sock"
  # Not through as_nobody: $! must be the daemon's pid (setpriv execs it).
  setpriv --reuid="${NOBODY}" --regid="${NOBODY}" --clear-groups \
    "${TMP}/procwarpd" --socket "${user_socket}" \
    >"${TMP}/user_daemon.log" 2>&1 &
  USER_DAEMON_PID=$!
  if ! wait_for_daemon "${USER_DAEMON_PID}" \
    as_nobody "${TMP}/procwarp" --socket "${user_socket}" status; then
    fail "a daemon run by uid ${NOBODY} did not come up: $(cat "${TMP}/user_daemon.log")"
    return
  fi
  local out rc
  out="$(as_nobody "${TMP}/procwarp" --socket "${user_socket}" status 2>&1)"
  expect_eq "own user daemon: exit code" 0 $?
  expect_contains "own user daemon: caller" "caller:     uid ${NOBODY}" "${out}"

  out="$("${CLI}" --socket "${user_socket}" status 2>&1)"
  rc=$?
  expect_eq "root refuses uid ${NOBODY}'s daemon: exit code" 1 "${rc}"
  expect_contains "root refuses uid ${NOBODY}'s daemon: message" \
    "is served by uid ${NOBODY} (pid ${USER_DAEMON_PID}, comm procwarpd), not by root or you" \
    "${out}"

  out="$(PROCWARP_DAEMON_UID=${NOBODY} "${CLI}" --socket "${user_socket}" \
    status 2>&1)"
  expect_eq "PROCWARP_DAEMON_UID=${NOBODY} trusts it: exit code" 0 $?
  expect_contains "PROCWARP_DAEMON_UID=${NOBODY} trusts it: caller" \
    "caller:     uid 0" "${out}"

  out="$(PROCWARP_DAEMON_UID=nobody "${CLI}" --socket "${user_socket}" \
    status 2>&1)"
  expect_eq "PROCWARP_DAEMON_UID not a number: exit code" 1 $?
  expect_contains "PROCWARP_DAEMON_UID not a number: message" \
    "PROCWARP_DAEMON_UID='nobody' is not a uid" "${out}"

  kill "${USER_DAEMON_PID}"
  wait "${USER_DAEMON_PID}" 2>/dev/null
  USER_DAEMON_PID=""
}

start_root_daemon() {
  start_daemon --agent_path "${AGENT}"
  pw status >/dev/null
  expect_eq "the root daemon serves root" 0 $?
  pw_nobody status >/dev/null
  expect_eq "the root daemon serves uid ${NOBODY}" 0 $?
}

# Succeeds once FILE shows an exited event of a process whose argv holds the
# escape sequence.
saw_escape_exit() {
  case "$1" in
    *.jsonl)
      /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue  # a line still being written
    if event["kind"] == "KIND_EXITED" and sys.argv[2] in event["process"]["argv"]:
        sys.exit(0)
sys.exit(1)
' "$1" "${ESC_TITLE}" ;;
    *) grep -F " exited " "$1" | grep -qF "${DOLLAR_QUOTED}" ;;
  esac
}

test_escapes() {
  pw events >"${TMP}/events.txt" 2>&1 &
  EVENTS_PIDS+=($!)
  pw --json events >"${TMP}/events.jsonl" 2>&1 &
  EVENTS_PIDS+=($!)
  # The subscriptions start asynchronously: uid 65534 runs short processes
  # until one shows up whole in both streams (bounded).
  local seen=1
  for _ in $(seq 1 100); do
    pw_nobody run --cwd / --name "${ESC_TITLE}" -- \
      /bin/sh -c : "${ESC_TITLE}" </dev/null
    if saw_escape_exit "${TMP}/events.txt" &&
      saw_escape_exit "${TMP}/events.jsonl"; then
      seen=0
      break
    fi
  done
  local pid
  for pid in "${EVENTS_PIDS[@]}"; do
    kill "${pid}" 2>/dev/null
    wait "${pid}" 2>/dev/null
  done
  EVENTS_PIDS=()
  expect_eq "events: uid ${NOBODY}'s process seen by root" 0 "${seen}"
  expect_no_controls "events: no raw escape" "${TMP}/events.txt"
  expect_contains "events: the argv escaped" "/bin/sh -c : ${DOLLAR_QUOTED}" \
    "$(cat "${TMP}/events.txt")"
  expect_no_controls "events --json: no raw escape" "${TMP}/events.jsonl"
  local bad=0 line
  while IFS= read -r line; do
    echo "${line}" | is_json || bad=1
  done <"${TMP}/events.jsonl"
  expect_eq "events --json: every line parses" 0 "${bad}"
  expect_contains "events --json: \\u escapes" '\u001b]0;pwned\u0007' \
    "$(cat "${TMP}/events.jsonl")"

  # A process left running, for ps.
  local id
  id="$(pw_nobody run -d --cwd / --name "${ESC_TITLE}" -- \
    /bin/sh -c 'exec sleep 1000' "${ESC_TITLE}")"
  [[ -n "${id}" ]] || fail "uid ${NOBODY} could not start a process"
  pw ps --all >"${TMP}/ps.txt"
  expect_eq "ps --all: exit code" 0 $?
  expect_no_controls "ps --all: no raw escape" "${TMP}/ps.txt"
  local row
  row="$(grep -F "${id:0:12}" "${TMP}/ps.txt")"
  expect_contains "ps --all: the argv escaped" \
    "/bin/sh -c 'exec sleep 1000' ${DOLLAR_QUOTED}" "${row}"
  # The COMMAND column still reads back in bash as the words that were run.
  local offset
  offset="$(head -1 "${TMP}/ps.txt" | awk '{ print index($0, "COMMAND") }')"
  local words=()
  eval "words=(${row:offset-1})"
  expect_eq "ps --all: COMMAND reads back as the argv" \
    "4|/bin/sh|-c|exec sleep 1000|${ESC_TITLE}" \
    "${#words[@]}|$(IFS='|'; echo "${words[*]}")"

  pw --json ps --all >"${TMP}/ps.json"
  is_json <"${TMP}/ps.json"
  expect_eq "ps --all --json parses" 0 $?
  expect_no_controls "ps --all --json: no raw escape" "${TMP}/ps.json"
  expect_eq "ps --all --json: exact argv and label" "ok" \
    "$(/usr/bin/python3 -c '
import json, sys
for p in json.load(open(sys.argv[1]))["processes"]:
    if p["id"] == sys.argv[2]:
        ok = p["argv"][-1] == sys.argv[3] and p["labels"]["name"] == sys.argv[3]
        print("ok" if ok else p)
' "${TMP}/ps.json" "${id}" "${ESC_TITLE}")"

  # An error message that echoes user data.
  pw kill "${ESC_TITLE}" 2>"${TMP}/kill.err"
  expect_eq "kill of an escape-sequence id: exit code" 1 $?
  expect_no_controls "error message: no raw escape" "${TMP}/kill.err"
  expect_contains "error message: the id escaped" "'${ESCAPED}'" \
    "$(cat "${TMP}/kill.err")"
  pw_nobody rm -f "${id}" >/dev/null

  # A thread's name label.
  local thread
  thread="$(pw_nobody thread create --name "${ESC_TITLE}")"
  [[ -n "${thread}" ]] || fail "uid ${NOBODY} could not create a thread"
  pw thread ls --all >"${TMP}/threads.txt"
  expect_eq "thread ls --all: exit code" 0 $?
  expect_no_controls "thread ls --all: no raw escape" "${TMP}/threads.txt"
  expect_contains "thread ls --all: the name escaped" \
    "${ESCAPED}" "$(grep -F "${thread:0:12}" "${TMP}/threads.txt")"
  pw_nobody thread kill "${thread}"
}

test_fake_daemon_is_refused
test_user_daemon
start_root_daemon
test_escapes

cli_test_finish
