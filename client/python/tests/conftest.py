"""Fixtures: a real procwarpd on a temporary socket, as the C++ integration
tests' DaemonHarness (tests/integration/daemon_harness.h) starts it, and
helpers to run code as uid 65534 and to start real Python targets.

The paths of the daemon, the agent and the package come from the
environment set by client/python/pytest_test.sh (Bazel runfiles).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import pytest

import procwarp

NOBODY = 65534
# /usr/bin/python3 has python3-grpcio; other pythons on PATH (pyenv) do not.
PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 30


def _runfile(env_name: str) -> str:
    path = os.environ.get(env_name)
    if not path:
        pytest.fail(f"{env_name} is not set: run through "
                    "bazel test //client/python:pytest_test")
    return os.path.abspath(path)


def make_temp_dir() -> str:
    """A fresh 0755 directory under /tmp (unix socket paths must stay under
    108 bytes, and uid 65534 must reach sockets and files in it)."""
    path = tempfile.mkdtemp(prefix="procwarp_py.", dir="/tmp")
    os.chmod(path, 0o755)
    return path


@dataclass
class Daemon:
    process: subprocess.Popen
    dir: str
    socket_path: str

    def stop(self) -> int:
        """SIGTERM; returns the exit code (0 for a clean shutdown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait()


def start_daemon(directory: str, flags: Sequence[str] = ()) -> Daemon:
    """Starts procwarpd on DIR/procwarpd.sock (with extra ``flags``) and
    returns once it sent
    READY=1 on NOTIFY_SOCKET (no polling of the socket), or fails the test
    if it exits or stays silent for READY_TIMEOUT_S."""
    socket_path = os.path.join(directory, "procwarpd.sock")
    notify_path = os.path.join(directory, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    env = {"NOTIFY_SOCKET": notify_path, "PATH": "/usr/bin:/bin"}
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                 "GRPC_VERBOSITY", "GRPC_TRACE"):
        if name in os.environ:
            env[name] = os.environ[name]
    log = open(os.path.join(directory, "daemon.log"), "wb")
    process = subprocess.Popen(
        [_runfile("PROCWARP_TEST_DAEMON"), "--socket", socket_path,
         "--socket_mode", "0666", "--agent_path",
         _runfile("PROCWARP_TEST_AGENT"), *flags],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        while True:
            readable, _, _ = select.select([notify], [], [], READY_TIMEOUT_S)
            if not readable:
                process.kill()
                process.wait()
                pytest.fail(f"procwarpd did not become ready in {READY_TIMEOUT_S} s")
            message = notify.recv(4096)
            if b"READY=1" in message.split(b"\n"):
                break
            if process.poll() is not None:
                pytest.fail(f"procwarpd exited during start-up: {process.returncode}")
    finally:
        notify.close()
    return Daemon(process, directory, socket_path)


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    """One daemon for the session; it must shut down cleanly (exit 0)."""
    directory = make_temp_dir()
    started = start_daemon(directory)
    yield started
    code = started.stop()
    with open(os.path.join(directory, "daemon.log"), "rb") as log:
        sys.stderr.write(log.read().decode(errors="replace")[-4000:])
    shutil.rmtree(directory, ignore_errors=True)
    assert code == 0, "procwarpd did not exit cleanly on SIGTERM"


@pytest.fixture
def client(daemon: Daemon) -> Iterator[procwarp.Client]:
    with procwarp.Client(daemon.socket_path) as connected:
        yield connected


@pytest.fixture(scope="session")
def package_copy() -> Iterator[str]:
    """The procwarp package copied where uid 65534 can import it (Bazel's
    runfiles are symlinks into root's home): the directory for PYTHONPATH."""
    directory = make_temp_dir()
    source = os.path.dirname(os.path.dirname(os.path.abspath(procwarp.__file__)))
    shutil.copytree(os.path.join(source, "procwarp"),
                    os.path.join(directory, "procwarp"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def run_as_nobody(package_dir: str, script: str, *args: str,
                  env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Runs ``script`` in a fresh /usr/bin/python3 as uid/gid 65534 (no
    supplementary groups) that can import procwarp; returns its output."""
    script_dir = make_temp_dir()
    try:
        path = os.path.join(script_dir, "script.py")
        with open(path, "w") as out:
            out.write(script)
        os.chmod(path, 0o644)
        child_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": package_dir,
                     "HOME": "/nonexistent", **(env or {})}
        return subprocess.run(
            [PYTHON, path, *args], env=child_env, user=NOBODY, group=NOBODY,
            extra_groups=[], cwd="/", capture_output=True, text=True,
            timeout=120)
    finally:
        shutil.rmtree(script_dir, ignore_errors=True)


class PythonTarget:
    """A /usr/bin/python3 program procwarp did not spawn (the attach
    backend refuses procwarpd's own children), started from source text.
    It must print a line starting with "ready" once set up; stdin is a pipe
    the test holds, stdout a pipe read with readline()."""

    def __init__(self, source: str, user: Optional[int] = None,
                 env: Optional[dict] = None):
        self.dir = make_temp_dir()
        self.script = os.path.join(self.dir, "target.py")
        with open(self.script, "w") as out:
            out.write(source)
        os.chmod(self.script, 0o644)
        extra = {} if user is None else {"user": user, "group": user,
                                          "extra_groups": []}
        self.process = subprocess.Popen(
            [PYTHON, "-u", self.script], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.dir,
            env={"PATH": "/usr/bin:/bin", **(env or {})}, **extra)
        ready = self.readline()
        if not ready.startswith("ready"):
            self.close()
            pytest.fail(f"python target did not start: {ready!r}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def readline(self) -> str:
        return self.process.stdout.readline().decode()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout,
                       self.process.stderr):
            stream.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def python_target() -> Iterator:
    """A factory of PythonTargets, all killed at the end of the test."""
    targets: List[PythonTarget] = []

    def start(source: str, **kwargs) -> PythonTarget:
        targets.append(PythonTarget(source, **kwargs))
        return targets[-1]

    yield start
    for target in targets:
        target.close()


def skip_if_unimplemented(error: procwarp.Error, what: str) -> None:
    """The daemon side of Exec.RunPython / Snapshots.PythonStack is being
    written separately; until it is merged they answer UNIMPLEMENTED."""
    if isinstance(error, procwarp.Unimplemented):
        pytest.skip(f"daemon lacks {what}")
