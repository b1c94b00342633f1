#!/bin/bash
# End-to-end test of the procwarp CLI (and the C++ client example) against a
# real procwarpd on a temporary socket: run in the foreground and detached,
# ps, kill, wait, rm, attach, status, events, --json output, and the error
# printed when no daemon is running; `procwarp thread ...` and the thread
# example against real agent threads.
set -u

readonly DAEMON="${PWD}/daemon/procwarpd"
readonly CLI="${PWD}/client/cli/procwarp"
readonly EXAMPLE="${PWD}/client/cc/spawn_and_wait"
readonly THREAD_EXAMPLE="${PWD}/client/cc/thread_example"
readonly AGENT="${PWD}/agent/procwarp-agent"
source "${PWD}/client/cli/testing/cli_test_lib.sh"
cli_test_setup cli_test
EVENTS_PID=""

cleanup_test() {
  [[ -n "${EVENTS_PID}" ]] && kill "${EVENTS_PID}" 2>/dev/null
}

test_not_running() {
  local out rc
  out="$("${CLI}" --socket "${TMP}/absent.sock" status 2>&1)"
  rc=$?
  expect_eq "not running: exit code" 1 "${rc}"
  expect_eq "not running: message" \
    "procwarp: procwarpd is not running at ${TMP}/absent.sock (start it with: sudo procwarpd, or systemctl start procwarpd.socket)" \
    "${out}"
  out="$(PROCWARP_SOCKET="${TMP}/env.sock" "${CLI}" ps 2>&1)"
  expect_contains "not running: PROCWARP_SOCKET is the default" \
    "not running at ${TMP}/env.sock" "${out}"
}

test_status() {
  local out
  out="$(pw status)"
  expect_eq "status: exit code" 0 $?
  expect_contains "status: daemon line" "procwarpd" "${out}"
  expect_contains "status: caller" "uid $(id -u)" "${out}"
  pw --json status | is_json
  expect_eq "status --json parses" 0 $?
}

test_run_foreground() {
  local rc
  pw run -- /bin/sh -c 'echo out; echo err >&2; exit 3' \
    >"${TMP}/run.out" 2>"${TMP}/run.err"
  rc=$?
  expect_eq "run: exit code" 3 "${rc}"
  expect_eq "run: stdout" "out" "$(cat "${TMP}/run.out")"
  expect_eq "run: stderr" "err" "$(cat "${TMP}/run.err")"

  expect_eq "run: stdin is forwarded" "piped" \
    "$(echo piped | pw run -- /bin/cat)"
  expect_eq "run: no argv separator needed" "a -n b" \
    "$(pw run /bin/echo a -n b)"
  expect_eq "run: empty environment by default" "" \
    "$(pw run -- /usr/bin/env)"
  expect_eq "run: -e" "A=1 B=x=y" \
    "$(pw run -e A=1 -e B=x=y -- /usr/bin/env | tr '\n' ' ' | sed 's/ $//')"
  expect_contains "run: --inherit-env" "PROCWARP_TEST_VAR=42" \
    "$(PROCWARP_TEST_VAR=42 pw run --inherit-env -- /usr/bin/env)"
  expect_eq "run: cwd defaults to ours" "${TMP}" \
    "$(cd "${TMP}" && pw run -- /bin/pwd)"
  expect_eq "run: --cwd" "/" "$(pw run --cwd / -- /bin/pwd)"

  pw run -- /bin/sh -c 'kill -TERM $$'
  expect_eq "run: killed by a signal exits 128+signal" 143 $?

  local out
  out="$(echo hi | pw run -t -- /bin/cat)"
  rc=$?
  expect_eq "run -t with piped stdin: exit code" 0 "${rc}"
  expect_contains "run -t with piped stdin: output" "hi" "${out}"

  out="$(pw run -- /nonexistent/program 2>&1)"
  rc=$?
  expect_eq "run: missing program exit code" 1 "${rc}"
  expect_contains "run: missing program message" "procwarp: " "${out}"
}

test_detached_lifecycle() {
  local id out rc
  id="$(pw run -d --name sleeper -- /bin/sleep 100)"
  expect_eq "run -d: exit code" 0 $?
  [[ -n "${id}" ]] || fail "run -d printed no id"

  out="$(pw ps)"
  expect_contains "ps: header" "ID" "${out}"
  expect_contains "ps: lists the process" "${id:0:12}" "${out}"
  expect_contains "ps: running" "running" "${out}"
  expect_contains "ps: command" "/bin/sleep 100" "${out}"

  out="$(pw --json ps)"
  echo "${out}" | is_json
  expect_eq "ps --json parses" 0 $?
  expect_contains "ps --json: full id" "\"${id}\"" "${out}"
  pw ps --json | is_json
  expect_eq "ps --json after the subcommand parses" 0 $?

  out="$(pw kill -s NOPE "${id}" 2>&1)"
  expect_eq "kill: bad signal exit code" 1 $?
  expect_contains "kill: bad signal message" "unknown signal 'NOPE'" "${out}"

  pw kill -s KILL "${id:0:10}"
  expect_eq "kill by id prefix: exit code" 0 $?
  out="$(pw wait "${id}")"
  rc=$?
  expect_eq "wait: exit code propagated" 137 "${rc}"
  expect_contains "wait: description" "signal 9" "${out}"
  expect_contains "ps: exited by SIGKILL" "SIGKILL" "$(pw ps)"

  expect_eq "rm: prints the id" "${id}" "$(pw rm "${id}")"
  out="$(pw ps)"
  [[ "${out}" == *"${id:0:12}"* ]] && fail "ps still lists a removed process"
  out="$(pw rm "${id}" 2>&1)"
  expect_eq "rm again: exit code" 1 $?
  expect_contains "rm again: message" "procwarp: " "${out}"

  id="$(pw run -d -- /bin/sleep 100)"
  out="$(pw rm "${id}" 2>&1)"
  expect_eq "rm of a running process: exit code" 1 $?
  pw rm -f "${id}" >/dev/null
  expect_eq "rm -f of a running process" 0 $?

  out="$(pw --json run -d -- /bin/true)"
  echo "${out}" | is_json
  expect_eq "run -d --json parses" 0 $?
}

test_attach_replays_output() {
  local id out rc
  id="$(pw run -d -- /bin/sh -c 'echo hello; echo oops >&2; exit 5')"
  pw wait "${id}" >/dev/null
  expect_eq "wait: exit code 5" 5 $?
  out="$(pw attach --no-stdin "${id}" 2>"${TMP}/attach.err")"
  rc=$?
  expect_eq "attach: exit code" 5 "${rc}"
  expect_eq "attach: replayed stdout" "hello" "${out}"
  expect_eq "attach: replayed stderr" "oops" "$(cat "${TMP}/attach.err")"
  out="$(pw --json wait "${id}")"
  expect_eq "wait --json: exit code" 5 $?
  echo "${out}" | is_json
  expect_eq "wait --json parses" 0 $?
  pw rm "${id}" >/dev/null
}

# Succeeds once the JSON event lines on stdin show one process both started
# and exited.
saw_start_and_exit() {
  /usr/bin/python3 -c '
import json, sys
kinds = {}
for line in sys.stdin:
    try:
        event = json.loads(line)
    except ValueError:
        continue  # a line still being written
    kinds.setdefault(event["process"]["id"], set()).add(event["kind"])
sys.exit(0 if any({"KIND_STARTED", "KIND_EXITED"} <= k for k in kinds.values()) else 1)
'
}

test_events() {
  pw --json events >"${TMP}/events.jsonl" 2>"${TMP}/events.err" &
  EVENTS_PID=$!
  # The subscription starts asynchronously: run short processes until one
  # shows up whole in the stream (bounded).
  local seen=1
  for _ in $(seq 1 100); do
    pw run -- /bin/true
    saw_start_and_exit <"${TMP}/events.jsonl" && seen=0 && break
    sleep 0.05
  done
  kill "${EVENTS_PID}" 2>/dev/null
  wait "${EVENTS_PID}" 2>/dev/null
  EVENTS_PID=""
  expect_eq "events: a process started and exited" 0 "${seen}"
  local bad=0 line
  while IFS= read -r line; do
    echo "${line}" | is_json || bad=1
  done <"${TMP}/events.jsonl"
  expect_eq "events --json: every line parses" 0 "${bad}"
  pw events >"${TMP}/events.txt" 2>&1 &
  EVENTS_PID=$!
  for _ in $(seq 1 100); do
    pw run -- /bin/true
    grep -q " exited .* exit code 0 /bin/true" "${TMP}/events.txt" && break
    sleep 0.05
  done
  kill "${EVENTS_PID}" 2>/dev/null
  wait "${EVENTS_PID}" 2>/dev/null
  EVENTS_PID=""
  expect_contains "events: text line" "exit code 0 /bin/true" \
    "$(cat "${TMP}/events.txt")"
}

test_example() {
  local out
  out="$("${EXAMPLE}" "${SOCKET}")"
  expect_eq "spawn_and_wait: exit code" 0 $?
  expect_contains "spawn_and_wait: output" "hello" "${out}"
  expect_contains "spawn_and_wait: exit" "exit code 0" "${out}"
}

test_threads() {
  local id out pid
  id="$(pw thread create --name poke)"
  expect_eq "thread create: exit code" 0 $?
  [[ -n "${id}" ]] || fail "thread create printed no id"

  out="$(pw thread ls)"
  expect_contains "thread ls: header" "PERSISTENT" "${out}"
  expect_contains "thread ls: lists the thread" "${id:0:12}" "${out}"
  expect_contains "thread ls: running" "running" "${out}"
  pid="$(pw --json thread ls | /usr/bin/python3 -c '
import json, sys
for t in json.load(sys.stdin)["threads"]:
    if t["id"] == sys.argv[1]:
        print(t["pid"])
' "${id}")"
  [[ -n "${pid}" ]] || fail "thread ls --json has no pid for ${id}"

  expect_eq "thread syscall getpid is the listed pid" "${pid}" \
    "$(pw thread syscall "${id}" getpid)"
  expect_eq "thread syscall by number (39 = getpid)" "${pid}" \
    "$(pw thread syscall "${id:0:10}" 39)"
  expect_eq "thread syscall close 9999" "-1 EBADF (Bad file descriptor)" \
    "$(pw thread syscall "${id}" close 9999)"
  expect_eq "thread syscall with hex and negative args" \
    "-1 EBADF (Bad file descriptor)" \
    "$(pw thread syscall "${id}" fcntl -5 0x1)"
  out="$(pw --json thread syscall "${id}" close 9999)"
  echo "${out}" | is_json
  expect_eq "thread syscall --json parses" 0 $?
  expect_contains "thread syscall --json: errno name" '"EBADF"' "${out}"
  out="$(pw thread syscall "${id}" no_such_call 2>&1)"
  expect_eq "thread syscall unknown name: exit code" 1 $?
  expect_contains "thread syscall unknown name: message" \
    "unknown syscall 'no_such_call'" "${out}"

  pw thread kill "${id}"
  expect_eq "thread kill: exit code" 0 $?
  local gone=1
  for _ in $(seq 1 100); do
    kill -0 "${pid}" 2>/dev/null || { gone=0; break; }
    sleep 0.05
  done
  expect_eq "thread kill: the agent process is gone" 0 "${gone}"
  out="$(pw thread ls)"
  [[ "${out}" == *"${id:0:12}"* ]] && fail "thread ls still lists a killed thread"
  out="$(pw thread syscall "${id}" getpid 2>&1)"
  expect_eq "thread syscall after kill: exit code" 1 $?

  out="$(pw --json thread create --userns --mountns)"
  echo "${out}" | is_json
  expect_eq "thread create --json parses" 0 $?
  id="$(echo "${out}" | /usr/bin/python3 -c \
    'import json, sys; print(json.load(sys.stdin)["thread"]["id"])')"
  expect_contains "thread ls: namespaces" "user,mnt" "$(pw thread ls)"
  pw thread kill "${id}"
  expect_eq "thread kill of a namespaced thread" 0 $?
}

test_thread_exec() {
  local id pid out process
  id="$(pw thread create)"
  pid="$(pw thread syscall "${id}" getpid)"
  out="$(pw thread exec "${id}" -- /nonexistent/program 2>&1)"
  expect_eq "thread exec of a missing program: exit code" 1 $?
  expect_contains "thread exec of a missing program: message" "execve" "${out}"
  process="$(pw thread exec -e A=1 "${id}" -- /bin/sh -c 'exit 6')"
  expect_eq "thread exec: exit code" 0 $?
  out="$(pw wait "${process}")"
  expect_eq "thread exec: the process's exit code" 6 $?
  expect_contains "thread exec: same pid" "${pid}" "$(pw ps)"
  pw rm "${process}" >/dev/null
  out="$(pw thread syscall "${id}" getpid 2>&1)"
  expect_eq "thread syscall after exec: exit code" 1 $?
}

# Attached threads: a process the daemon did not start, with fd 5 open on a
# file of ours.
test_attach() {
  local id out pid keeper
  printf 'stolen text\n' > "${TMP}/stolen"
  ( exec 5<"${TMP}/stolen"; exec sleep 1000 ) &
  pid=$!
  # Wait for the exec (the subshell is replaced by sleep).
  while [[ "$(readlink "/proc/${pid}/exe")" != */sleep ]]; do sleep 0.01; done
  id="$(pw thread attach "${pid}")"
  expect_eq "thread attach: exit code" 0 $?
  expect_eq "thread syscall in an attached process" "${pid}" \
    "$(pw thread syscall "${id}" getpid)"
  out="$(pw thread ls)"
  expect_contains "thread ls: the attached thread" "${id:0:12}" "${out}"
  out="$(pw --json thread ls)"
  expect_contains "thread ls --json: kind" "THREAD_KIND_ATTACHED" "${out}"
  pw thread kill "${id}"
  expect_eq "thread kill detaches: exit code" 0 $?
  expect_eq "detached: TracerPid" "0" \
    "$(awk '/^TracerPid:/ {print $2}' "/proc/${pid}/status")"
  out="$(pw fds "${pid}")"
  expect_eq "fds: exit code" 0 $?
  expect_contains "fds: header" "OFFSET" "${out}"
  expect_contains "fds: the file" "${TMP}/stolen" "${out}"
  pw --json fds "${pid}" | is_json
  expect_eq "fds --json parses" 0 $?
  out="$(pw steal-fd "${pid}" 5 -- cat)"
  expect_eq "steal-fd -- cat: exit code" 0 $?
  expect_eq "steal-fd -- cat: the file's text" "stolen text" "${out}"
  out="$(pw steal-fd "${pid}" 5)"
  expect_eq "steal-fd into a thread: exit code" 0 $?
  expect_contains "steal-fd into a thread: where" " fd " "${out}"
  keeper="$(echo "${out}" | awk '{print $2}')"
  pw thread kill "${keeper}"
  out="$(pw steal-fd "${pid}" 99 -- cat 2>&1)"
  expect_eq "steal-fd of a closed fd: exit code" 1 $?
  kill "${pid}"
  wait "${pid}" 2>/dev/null
}

test_thread_example() {
  local out
  out="$("${THREAD_EXAMPLE}" "${SOCKET}")"
  expect_eq "thread_example: exit code" 0 $?
  expect_contains "thread_example: hostname" "hostname: $(cat /etc/hostname)" \
    "${out}"
  expect_contains "thread_example: pipe" "pipe: through the pipe" "${out}"
  expect_contains "thread_example: errno" "close(9999): -1 EBADF" "${out}"
}

test_not_running
start_daemon --agent_path "${AGENT}"
test_status
test_run_foreground
test_detached_lifecycle
test_attach_replays_output
test_events
test_example
test_threads
test_thread_exec
test_thread_example
test_attach

cli_test_finish
