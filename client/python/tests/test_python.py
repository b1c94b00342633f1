"""python_exec (Exec.RunPython) and python_stack (Snapshots.PythonStack)
through the Python client, against real /usr/bin/python3 targets procwarp
did not spawn.

The daemon side is written separately (issue 10); until it is merged these
RPCs answer UNIMPLEMENTED and the tests skip, only then
(skip_if_unimplemented). The full interpreter matrix is the daemon's own
tests; here the client's side of each result kind is checked.
"""

import textwrap

import pytest

import procwarp
from procwarp.snapshots.v1 import snapshots_pb2
from conftest import NOBODY, run_as_nobody, skip_if_unimplemented

# Waits in time.sleep inside known nested functions with known locals, until
# a remote exec sets MESSAGE; then prints it and exits.
NESTED_TARGET = textwrap.dedent("""\
    import sys
    import time

    MESSAGE = None


    def outer(count):
        label = "outer"
        return inner(count + 1, [1, 2, 3])


    def inner(number, items):
        ratio = 0.5
        name = "procwarp"
        data = b"xy"
        flag = True
        nothing = None
        print("ready", flush=True)
        while MESSAGE is None:
            time.sleep(0.01)  # SLEEP LINE
        print("message:", MESSAGE, flush=True)


    outer(41)
""")
SLEEP_LINE = NESTED_TARGET.splitlines().index(
    "        time.sleep(0.01)  # SLEEP LINE") + 1
OUTER_CALL_LINE = NESTED_TARGET.splitlines().index(
    '    return inner(count + 1, [1, 2, 3])') + 1
MODULE_CALL_LINE = NESTED_TARGET.splitlines().index("outer(41)") + 1

# Busy in a pure-Python loop.
BUSY_TARGET = textwrap.dedent("""\
    print("ready", flush=True)
    counter = 0
    while True:
        counter += 1
""")


def python_exec(client, pid, code, **kwargs):
    try:
        return client.python_exec(pid, code, **kwargs)
    except procwarp.Error as error:
        skip_if_unimplemented(error, "Exec.RunPython")
        raise


def python_stack(client, pid, **kwargs):
    try:
        return client.python_stack(pid, **kwargs)
    except procwarp.Error as error:
        skip_if_unimplemented(error, "Snapshots.PythonStack")
        raise


def test_exec_returns_what_the_code_prints(client, python_target):
    target = python_target(BUSY_TARGET)
    result = python_exec(client, target.pid,
                         "import sys\nprint('to stdout')\n"
                         "print('to stderr', file=sys.stderr)")
    assert result.stdout == b"to stdout\n"
    assert result.stderr == b"to stderr\n"
    assert not result.HasField("exception")
    assert result.interpreter.implementation == "CPython"
    assert result.interpreter.version.startswith("3.")


def test_exec_that_raises_is_a_result(client, python_target):
    target = python_target(BUSY_TARGET)
    result = python_exec(client, target.pid, "1 / 0")
    assert result.exception.type == "ZeroDivisionError"
    assert result.exception.message == "division by zero"
    assert "ZeroDivisionError" in result.exception.traceback


def test_eval_returns_the_repr(client, python_target):
    target = python_target(BUSY_TARGET)
    result = python_exec(client, target.pid, "[6 * 7, 'x']", eval=True)
    assert result.value_repr == "[42, 'x']"


def test_exec_sets_a_global_the_target_then_prints(client, python_target):
    target = python_target(NESTED_TARGET)
    python_exec(client, target.pid, "MESSAGE = 'from procwarp'")
    assert target.readline() == "message: from procwarp\n"
    assert target.process.wait() == 0


def test_stack_with_native_frames(client, python_target):
    """native=True: the sleep's libc frame under the Python frames, merged
    where the daemon can match them, else beside them; the target is left
    running and untraced."""
    target = python_target(NESTED_TARGET)
    # The target sleeps most of the time: read until it is caught in the
    # sleep (a bound on the reads, not a timeout).
    for _ in range(200):
        stack = python_stack(client, target.pid, native=True)
        main = next(t for t in stack.threads if t.is_main)
        assert main.native_stack in (snapshots_pb2.NATIVE_STACK_MERGED,
                                     snapshots_pb2.NATIVE_STACK_SEPARATE)
        native = (main.frames if main.native_stack ==
                  snapshots_pb2.NATIVE_STACK_MERGED else main.native_frames)
        if native[-1].function in ("clock_nanosleep", "__clock_nanosleep"):
            break
    else:
        pytest.fail("never caught in clock_nanosleep: %s" %
                    [f.function for f in native])
    assert native[-1].is_native and "libc" in native[-1].file
    python = [f.function for f in main.frames if not f.is_native]
    assert python == ["<module>", "outer", "inner"]
    with open("/proc/%d/status" % target.pid) as status:
        assert "TracerPid:\t0\n" in status.read()


def test_stack_with_locals(client, python_target):
    target = python_target(NESTED_TARGET)
    # "ready" is read while its print() may not have returned yet: read
    # until the target is in its loop (a bound on the reads, not a timeout).
    for _ in range(1000):
        stack = python_stack(client, target.pid, locals=True)
        lines = [f.line for t in stack.threads if t.is_main for f in t.frames]
        if lines and lines[-1] == SLEEP_LINE:
            break
    assert stack.interpreter.implementation == "CPython"
    main = [t for t in stack.threads if t.is_main]
    assert len(main) == 1
    assert main[0].tid == target.pid
    assert main[0].name == "MainThread"
    frames = [(f.function, f.file, f.line) for f in main[0].frames
              if not f.is_native]
    assert frames == [
        ("<module>", target.script, MODULE_CALL_LINE),
        ("outer", target.script, OUTER_CALL_LINE),
        ("inner", target.script, SLEEP_LINE),
    ]

    def local_values(frame):
        return {l.name: (l.value.type, l.value.repr, l.is_argument)
                for l in frame.locals}

    outer_frame, inner_frame = main[0].frames[-2], main[0].frames[-1]
    assert local_values(outer_frame) == {
        "count": ("int", "41", True),
        "label": ("str", "'outer'", False),
    }
    assert local_values(inner_frame) == {
        "number": ("int", "42", True),
        "items": ("list", "", True),
        "ratio": ("float", "0.5", False),
        "name": ("str", "'procwarp'", False),
        "data": ("bytes", "b'xy'", False),
        "flag": ("bool", "True", False),
        "nothing": ("NoneType", "None", False),
    }
    items = [l for l in inner_frame.locals if l.name == "items"][0]
    assert items.value.length == 3


# As uid 65534: exec and stack on argv[2] (root's target: refused) and
# argv[3] (its own: works); prints one "name CODE-or-result" line each.
NOBODY_PYTHON = textwrap.dedent("""
    import sys
    import procwarp
    client = procwarp.Client(sys.argv[1])
    for name, pid in (("root", int(sys.argv[2])), ("own", int(sys.argv[3]))):
        for what, attempt in (
                ("exec", lambda: client.python_exec(pid, "6 * 7", eval=True).value_repr),
                ("stack", lambda: len(client.python_stack(pid).threads))):
            try:
                print(name, what, attempt())
            except procwarp.Error as error:
                print(name, what, error.code.name)
""")


def test_nobody_refused_on_roots_python_and_served_on_its_own(
        daemon, package_copy, python_target):
    roots = python_target(BUSY_TARGET)
    own = python_target(BUSY_TARGET, user=NOBODY)
    result = run_as_nobody(package_copy, NOBODY_PYTHON, daemon.socket_path,
                           str(roots.pid), str(own.pid))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if all(line.endswith("UNIMPLEMENTED") for line in lines):
        pytest.skip("daemon lacks Exec.RunPython and Snapshots.PythonStack")
    assert lines == [
        "root exec PERMISSION_DENIED",
        "root stack PERMISSION_DENIED",
        "own exec 42",
        "own stack 1",
    ]
