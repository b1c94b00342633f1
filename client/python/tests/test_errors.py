"""Errors as exceptions carrying the gRPC code, and the client's own checks:
no daemon, an untrusted daemon (refused before anything is sent), a socket
path swapped after the check, and uid 65534 refused on root's processes."""

import gc
import os
import shutil
import signal
import socket
import subprocess
import textwrap

import grpc
import pytest

import procwarp
from conftest import NOBODY, PYTHON, make_temp_dir, run_as_nobody, start_daemon


def test_not_found_on_unknown_ids(client):
    for call in (lambda: client.wait("0123456789abcdef"),
                 lambda: client.kill("0123456789abcdef"),
                 lambda: client.get("0123456789abcdef"),
                 lambda: client.remove("0123456789abcdef"),
                 lambda: client.thread("0123456789abcdef")):
        with pytest.raises(procwarp.NotFound) as raised:
            call()
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
        assert isinstance(raised.value, procwarp.Error)
        assert "0123456789abcdef" in raised.value.details


def test_invalid_argument_from_the_daemon(client):
    with pytest.raises(procwarp.InvalidArgument) as raised:
        client.spawn([])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_exceeded_on_wait_with_timeout(client):
    process = client.spawn(["/bin/sleep", "1000"])
    try:
        with pytest.raises(procwarp.DeadlineExceeded):
            process.wait(timeout=0.2)
    finally:
        process.remove(force=True)


def test_unavailable_when_no_daemon_runs():
    directory = make_temp_dir()
    try:
        path = os.path.join(directory, "absent.sock")
        with pytest.raises(procwarp.Unavailable) as raised:
            procwarp.Client(path)
        assert f"procwarpd is not running at {path}" in raised.value.details
    finally:
        shutil.rmtree(directory)


def test_default_socket_path(monkeypatch):
    monkeypatch.setenv("PROCWARP_SOCKET", "/somewhere/else.sock")
    assert procwarp.default_socket_path() == "/somewhere/else.sock"
    monkeypatch.delenv("PROCWARP_SOCKET")
    # These tests run as root.
    assert procwarp.default_socket_path() == "/run/procwarp/procwarpd.sock"


def test_bad_daemon_uid_setting(daemon, monkeypatch):
    monkeypatch.setenv("PROCWARP_DAEMON_UID", "nobody")
    with pytest.raises(procwarp.InvalidArgument) as raised:
        procwarp.Client(daemon.socket_path)
    assert "PROCWARP_DAEMON_UID is not a uid" in raised.value.details
    monkeypatch.setenv("PROCWARP_DAEMON_UID", "4294967295")  # (uid_t)-1
    with pytest.raises(procwarp.InvalidArgument):
        procwarp.Client(daemon.socket_path)


# Listens on argv[1] as whoever runs it, prints "ready", and at EOF on stdin
# prints how many bytes its clients sent.
FOREIGN_LISTENER = textwrap.dedent("""
    import selectors, socket, sys
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    listener.listen(16)
    print("ready", flush=True)
    received = 0
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                print(received, flush=True)
                sys.exit(0)
            if key.fileobj is listener:
                connection, _ = listener.accept()
                selector.register(connection, selectors.EVENT_READ)
            else:
                data = key.fileobj.recv(4096)
                received += len(data)
                if not data:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
""")


def test_untrusted_daemon_refused_before_anything_is_sent():
    directory = make_temp_dir()
    os.chown(directory, NOBODY, NOBODY)
    path = os.path.join(directory, "procwarpd.sock")
    script = os.path.join(directory, "listener.py")
    with open(script, "w") as out:
        out.write(FOREIGN_LISTENER)
    listener = subprocess.Popen(
        [PYTHON, script, path], user=NOBODY, group=NOBODY, extra_groups=[],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline() == "ready\n"
        with pytest.raises(procwarp.PermissionDenied) as raised:
            procwarp.Client(path)
        assert f"served by uid {NOBODY}" in raised.value.details
        assert f"PROCWARP_DAEMON_UID={NOBODY}" in raised.value.details
        # Trusted when asked to (gRPC connects only at the first call).
        procwarp.Client(path, daemon_uid=NOBODY).close()
        listener.stdin.close()
        assert listener.stdout.readline() == "0\n"
        assert listener.wait() == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_socket_swapped_after_the_check_is_not_used():
    # gRPC connects at the first call, not in Client(): whatever listens at
    # the path by then must not receive it. The client pinned the checked
    # socket's inode, so the call still reaches the checked daemon.
    directory = make_temp_dir()
    daemon = start_daemon(directory)
    impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client = procwarp.Client(daemon.socket_path)
        os.rename(daemon.socket_path, daemon.socket_path + ".moved")
        impostor.bind(daemon.socket_path)
        impostor.listen(16)
        impostor.setblocking(False)
        assert client.status().daemon_pid == daemon.process.pid
        with pytest.raises(BlockingIOError):
            impostor.accept()
        client.close()
    finally:
        impostor.close()
        assert daemon.stop() == 0
        shutil.rmtree(directory, ignore_errors=True)


def test_a_refused_client_leaves_other_clients_alone(daemon):
    # A refused Client opened (and closed) a pinned fd; when the refused
    # object is collected later, it must not close that fd number again: by
    # then it is the next Client's pinned socket.
    directory = make_temp_dir()
    try:
        not_a_socket = os.path.join(directory, "procwarpd.sock")
        open(not_a_socket, "w").close()
        try:
            procwarp.Client(not_a_socket)
        except procwarp.FailedPrecondition as error:
            refused = error  # its traceback keeps the refused object alive
        with procwarp.Client(daemon.socket_path) as client:
            del refused
            gc.collect()
            assert client.status().daemon_pid == daemon.process.pid
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_new_client_never_reuses_a_closed_ones_connection(daemon):
    # The pinned socket's fd number is the gRPC address: a Client made after
    # another closed may get the same number for another daemon's socket,
    # and must reach that daemon, not a connection grpcio kept for the old.
    directory = make_temp_dir()
    other = start_daemon(directory)
    try:
        first = procwarp.Client(daemon.socket_path)
        assert first.status().daemon_pid == daemon.process.pid
        first_address = first._connection.pinned.address
        first.close()
        with procwarp.Client(other.socket_path) as second:
            assert second._connection.pinned.address == first_address
            assert second.status().daemon_pid == other.process.pid
    finally:
        assert other.stop() == 0
        shutil.rmtree(directory, ignore_errors=True)


# As uid 65534: every way of acting on root's process argv[2] is refused with
# PERMISSION_DENIED; prints one "name CODE" line per attempt.
NOBODY_ON_ROOTS_PROCESS = textwrap.dedent("""
    import sys
    import procwarp
    client = procwarp.Client(sys.argv[1])
    pid = int(sys.argv[2])
    attempts = {
        "attach_thread": lambda: client.attach_thread(pid),
        "call": lambda: client.call(pid, "getpid"),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            print(name, "OK")
        except procwarp.Error as error:
            print(name, error.code.name)
""")


def test_permission_denied_for_nobody_on_roots_process(daemon, package_copy):
    target = subprocess.Popen(["/bin/sleep", "1000"])
    try:
        result = run_as_nobody(package_copy, NOBODY_ON_ROOTS_PROCESS,
                               daemon.socket_path, str(target.pid))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "attach_thread PERMISSION_DENIED",
            "call PERMISSION_DENIED",
        ]
        assert target.poll() is None
    finally:
        target.send_signal(signal.SIGKILL)
        target.wait()
