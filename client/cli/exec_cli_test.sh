#!/bin/bash
# End-to-end test of `procwarp call`, `inject`, `uninject` and `doctor`
# against a real procwarpd and a real target it did not spawn
# (tests/testcases/attach_target.c blocked in read on a FIFO): return values,
# crashes (exit code 2), injection with a relative path, --json on all four,
# uid 65534 refused on root's process, and the target's own read intact;
# and `procwarp py exec` on a sleeping CPython (docs/python.md): output, eval,
# an exception's exit code and traceback, -f -, --json, --no-wait, a
# non-admin's --override-opt-out refused.
set -u

readonly DAEMON="${PWD}/daemon/procwarpd"
readonly CLI_BUILT="${PWD}/client/cli/procwarp"
readonly TARGET="${PWD}/tests/testcases/attach_target"
readonly LIBRARY="${PWD}/tests/testcases/attach_marker_lib.so"
readonly PY_TARGET="${PWD}/tests/testcases/python_target.py"
readonly PYTHON=/usr/bin/python3.11
# Unix socket paths must stay under 108 bytes: Bazel's TEST_TMPDIR may not.
TMP="$(mktemp -d /tmp/procwarp_exec_cli.XXXXXX)"
readonly TMP
chmod 755 "${TMP}"
readonly SOCKET="${TMP}/procwarpd.sock"
# A copy uid 65534 can run (the runfiles are under root's home).
readonly CLI="${TMP}/procwarp"
cp "${CLI_BUILT}" "${CLI}"
chmod 755 "${CLI}"
DAEMON_PID=""
TARGET_PID=""
FAILURES=0

cleanup() {
  [[ -n "${TARGET_PID}" ]] && kill -9 "${TARGET_PID}" 2>/dev/null
  if [[ -n "${DAEMON_PID}" ]]; then
    kill "${DAEMON_PID}" 2>/dev/null
    wait "${DAEMON_PID}" 2>/dev/null
  fi
  rm -rf "${TMP}"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  FAILURES=$((FAILURES + 1))
}

expect_eq() {
  if [[ "$2" != "$3" ]]; then fail "$1: expected [$2], got [$3]"; else echo "ok: $1"; fi
}

expect_contains() {
  if [[ "$3" != *"$2"* ]]; then fail "$1: [$2] not found in [$3]"; else echo "ok: $1"; fi
}

is_json() {
  /usr/bin/python3 -c 'import json, sys; json.load(sys.stdin)'
}

pw() {
  "${CLI}" --socket "${SOCKET}" "$@"
}

start_daemon() {
  "${DAEMON}" --socket "${SOCKET}" --socket_mode 0666 >"${TMP}/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 200); do
    pw doctor >/dev/null 2>&1 && return 0
    kill -0 "${DAEMON_PID}" 2>/dev/null || break
    sleep 0.05
  done
  echo "procwarpd did not come up; its log:" >&2
  cat "${TMP}/daemon.log" >&2
  exit 1
}

# The target blocks in read(0) on a FIFO we hold open on fd 3.
start_target() {
  mkfifo "${TMP}/in"
  PW_MARKER_PATH="${TMP}/marker" "${TARGET}" read <"${TMP}/in" >"${TMP}/out" &
  TARGET_PID=$!
  exec 3>"${TMP}/in"
  for _ in $(seq 1 200); do
    grep -q '^ready' "${TMP}/out" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "target did not start" >&2
  exit 1
}

test_call() {
  local out rc
  out="$(pw call "${TARGET_PID}" getpid)"
  expect_eq "call: getpid" "${TARGET_PID}" "${out}"
  out="$(pw call "${TARGET_PID}" main-program:checksum_step 0x10 20)"
  expect_eq "call: hex and decimal arguments" \
    "$(/usr/bin/python3 -c 'm=(1<<64)-1
s=0x10; i=20
s^=(i+0x9e3779b97f4a7c15+((s<<6)&m)+(s>>2))&m
print((s*0xff51afd7ed558ccd)&m)')" "${out}"
  out="$(pw --json call "${TARGET_PID}" getpid)"
  echo "${out}" | is_json
  expect_eq "call --json parses" 0 $?
  expect_contains "call --json: return_value" "\"return_value\":\"${TARGET_PID}\"" "${out}"
  local address
  address="$(echo "${out}" | /usr/bin/python3 -c 'import json,sys; print(hex(int(json.load(sys.stdin)["address"])))')"
  expect_eq "call: by address" "${TARGET_PID}" "$(pw call "${TARGET_PID}" "${address}")"
  out="$(pw call "${TARGET_PID}" main-program:crash_null 1)"
  rc=$?
  expect_eq "call: crash exit code" 2 "${rc}"
  expect_contains "call: crash says the signal" "crashed: SIGSEGV at fault address 0x0" "${out}"
  out="$(pw call "${TARGET_PID}" no_such_function_xyz 2>&1)"
  rc=$?
  expect_eq "call: unknown symbol exit code" 1 "${rc}"
  expect_contains "call: unknown symbol message" "procwarp: no symbol no_such_function_xyz" "${out}"
  out="$(pw call abc getpid 2>&1)"
  expect_contains "call: bad pid" "bad process id 'abc'" "${out}"
}

test_inject() {
  local handle out rc
  # A relative path is taken against the CLI's current directory.
  handle="$(cd "$(dirname "${LIBRARY}")" && pw inject "${TARGET_PID}" attach_marker_lib.so)"
  expect_eq "inject: exit code" 0 $?
  [[ "${handle}" =~ ^[0-9a-f]{32}$ ]] || fail "inject: handle [${handle}]"
  expect_eq "inject: constructor ran" "loaded pid=${TARGET_PID}" "$(cat "${TMP}/marker")"
  expect_eq "inject: library callable" 42 \
    "$(pw call "${TARGET_PID}" attach_marker_lib.so:pw_marker_answer)"
  pw uninject "${handle}"
  expect_eq "uninject: exit code" 0 $?
  expect_contains "uninject: destructor ran" "unloaded pid=${TARGET_PID}" "$(cat "${TMP}/marker")"
  out="$(pw uninject "${handle}" 2>&1)"
  rc=$?
  expect_eq "uninject twice: exit code" 1 "${rc}"
  expect_contains "uninject twice: message" "no library handle" "${out}"
  out="$(pw --json inject "${TARGET_PID}" "${LIBRARY}")"
  echo "${out}" | is_json
  expect_eq "inject --json parses" 0 $?
  handle="$(echo "${out}" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["handle"])')"
  expect_eq "uninject --json" "{}" "$(pw --json uninject "${handle}")"
}

test_doctor() {
  local out
  out="$(pw doctor)"
  expect_contains "doctor: daemon side" "procwarpd:" "${out}"
  expect_contains "doctor: capabilities" "CAP_SYS_PTRACE" "${out}"
  out="$(pw doctor "${TARGET_PID}")"
  expect_contains "doctor PID: call" "call: will work" "${out}"
  expect_contains "doctor PID: inject" "inject: will work" "${out}"
  expect_contains "doctor PID: exe" "attach_target" "${out}"
  pw --json doctor "${TARGET_PID}" | is_json
  expect_eq "doctor --json parses" 0 $?
}

test_nobody() {
  local out rc
  out="$(cd "${TMP}" && setpriv --reuid 65534 --regid 65534 --clear-groups \
    "${CLI}" --socket "${SOCKET}" call "${TARGET_PID}" getpid 2>&1)"
  rc=$?
  expect_eq "nobody: call on root's process exit code" 1 "${rc}"
  expect_contains "nobody: refused with the rule" "ptrace" "${out}"
  out="$(cd "${TMP}" && setpriv --reuid 65534 --regid 65534 --clear-groups \
    "${CLI}" --socket "${SOCKET}" doctor "${TARGET_PID}" 2>&1)"
  expect_contains "nobody: doctor says why" "FAIL  ptrace rule" "${out}"
  expect_contains "nobody: doctor says call will not work" "call: will not work" "${out}"
}

test_py_exec() {
  if [[ ! -x "${PYTHON}" ]]; then
    echo "skipped: py exec (${PYTHON} is not installed)"
    return
  fi
  cp "${PY_TARGET}" "${TMP}/python_target.py"
  "${PYTHON}" "${TMP}/python_target.py" sleep >"${TMP}/pyout" 2>&1 </dev/null &
  local pid=$! out rc
  for _ in $(seq 1 200); do
    grep -q ready "${TMP}/pyout" 2>/dev/null && break
    sleep 0.05
  done
  expect_eq "py exec: stdout" "hi 3" "$(pw py exec "${pid}" -c 'print("hi", 1 + 2)')"
  expect_eq "py exec --eval" "'sleep'" "$(pw py exec "${pid}" --eval -c 'mode')"
  out="$(pw py exec "${pid}" -c '1/0' 2>&1)"
  rc=$?
  expect_eq "py exec: raised exit code" 1 "${rc}"
  expect_contains "py exec: traceback" "ZeroDivisionError" "${out}"
  expect_eq "py exec -f -" "from stdin" "$(echo 'print("from stdin")' | pw py exec "${pid}" -f -)"
  pw --json py exec "${pid}" -c 'pass' | is_json
  expect_eq "py exec --json parses" 0 $?
  expect_eq "py exec --no-wait" "queued" "$(pw py exec "${pid}" --no-wait -c 'pass')"
  out="$(cd "${TMP}" && setpriv --reuid 65534 --regid 65534 --clear-groups \
    "${CLI}" --socket "${SOCKET}" py exec "${pid}" --override-opt-out -c 'pass' 2>&1)"
  expect_contains "py exec: a user's --override-opt-out" "admins" "${out}"
  pw py exec "${pid}" -c 'message = "cli"; stop = True' >/dev/null
  wait "${pid}"
  expect_contains "py exec: the target carried on" "done message=cli" "$(cat "${TMP}/pyout")"
}

test_target_intact() {
  echo "fine" >&3
  exec 3>&-
  wait "${TARGET_PID}"
  TARGET_PID=""
  expect_contains "target: its read saw the data" "read=5 data=fine" "$(cat "${TMP}/out")"
}

start_daemon
start_target
test_call
test_inject
test_doctor
test_nobody
test_py_exec
test_target_intact

if ((FAILURES > 0)); then
  echo "${FAILURES} check(s) failed" >&2
  exit 1
fi
echo "all checks passed"
