"""Client: a connection to procwarpd and the calls made on it."""

from __future__ import annotations

import os
import signal as signals
from typing import Iterator, List, Mapping, Optional, Sequence, Union

import grpc

from procwarp import _connection, _daemon_socket, _errors, _target
from procwarp._process import Process
from procwarp._target import TlsOptions
from procwarp._thread import Thread
from procwarp.exec.v1 import exec_pb2
from procwarp.snapshots.v1 import snapshots_pb2
from procwarp.v1 import admin_pb2, processes_pb2, threads_pb2

_STDIO_KINDS = {
    "null": processes_pb2.STDIO_KIND_NULL,
    "pipe": processes_pb2.STDIO_KIND_PIPE,
    "pty": processes_pb2.STDIO_KIND_PTY,
}

# What identifies a process to the calls that take one.
ProcessRef = Union[str, Process, processes_pb2.ProcessInfo]
Stdio = Union[str, processes_pb2.StdioSpec]


def _process_id(process: ProcessRef) -> str:
    return process if isinstance(process, str) else process.id


def _stdio(spec: Stdio) -> processes_pb2.StdioSpec:
    if isinstance(spec, processes_pb2.StdioSpec):
        return spec
    kind = _STDIO_KINDS.get(spec)
    if kind is None:
        raise _errors.InvalidArgument(
            f"stdio must be one of {sorted(_STDIO_KINDS)} or a StdioSpec, "
            f"not {spec!r}")
    return processes_pb2.StdioSpec(kind=kind)


def _env_list(env: Union[Mapping[str, str], Sequence[str]]) -> List[str]:
    if isinstance(env, Mapping):
        return [f"{name}={value}" for name, value in env.items()]
    return list(env)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as pem:
            return pem.read()
    except OSError as error:
        raise _errors.InvalidArgument(
            f"cannot read {path}: {error.strerror}") from None


class Client:
    """A connection to procwarpd.

    ``Client()`` talks to the daemon the CLI would: a context of the CLI's
    config file or PROCWARP_HOST when set (see procwarp._target), else the
    socket $PROCWARP_SOCKET, else /run/procwarp/procwarpd.sock for root,
    else $XDG_RUNTIME_DIR/procwarp/procwarpd.sock. Pass a socket path to
    choose another, "tls://HOST:PORT" (with ``tls=TlsOptions(...)`` or
    PROCWARP_CA/CERT/KEY) for a remote daemon, or ``context`` to pick a
    context by name. A local daemon must be served by root, by you, or by
    ``daemon_uid`` / $PROCWARP_DAEMON_UID (checked before anything is
    sent): procwarp.PermissionDenied otherwise, procwarp.Unavailable when
    none runs.

    Use it as a context manager (or call close()); threads and other handles
    that are not persistent end with the connection. Every failed call
    raises a procwarp.Error subclass carrying the gRPC code.
    """

    def __init__(self, target: Optional[str] = None, *,
                 tls: Optional[TlsOptions] = None,
                 context: Optional[str] = None,
                 daemon_uid: Optional[int] = None):
        resolved = _target.resolve(target, tls, context, os.environ)
        self.context = resolved.context
        if resolved.host:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(resolved.tls.ca),
                private_key=_read(resolved.tls.key),
                certificate_chain=_read(resolved.tls.cert))
            channel = grpc.secure_channel(resolved.host, credentials,
                                          _connection.CHANNEL_OPTIONS)
            self._connection = _connection.Connection(
                _target.TLS_PREFIX + resolved.host, channel, True)
            return
        path = resolved.socket_path or _daemon_socket.default_socket_path()
        pinned = _daemon_socket.PinnedSocket(path, daemon_uid)
        channel = grpc.insecure_channel(pinned.address,
                                        _connection.CHANNEL_OPTIONS)
        self._connection = _connection.Connection(path, channel, False, pinned)

    @property
    def target(self) -> str:
        """The unix socket path, or the "tls://HOST:PORT" target."""
        return self._connection.target

    def close(self) -> None:
        """Closes the connection: the daemon ends the threads made on it
        that are not persistent, and handles made from this Client can no
        longer be used."""
        self._connection.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Admin ---------------------------------------------------------------

    def status(self) -> admin_pb2.GetStatusResponse:
        """Uptime, counts, and who the daemon says we are (``caller``)."""
        return _connection.call(self._connection.admin.GetStatus,
                                admin_pb2.GetStatusRequest())

    def version(self) -> admin_pb2.GetVersionResponse:
        return _connection.call(self._connection.admin.GetVersion,
                                admin_pb2.GetVersionRequest())

    # Processes -------------------------------------------------------------

    def spawn(self, argv: Union[Sequence[str], processes_pb2.SpawnRequest], *,
              env: Union[None, Mapping[str, str], Sequence[str]] = None,
              cwd: Optional[str] = None,
              stdin: Stdio = "null", stdout: Stdio = "pipe",
              stderr: Stdio = "pipe",
              labels: Optional[Mapping[str, str]] = None) -> Process:
        """Starts a process running as you, like ``procwarp run -d``.

        ``env`` (a mapping or "NAME=value" strings) is the child's whole
        environment; None passes ours, as subprocess does. ``cwd`` None means
        ours for a local daemon. stdin/stdout/stderr: "null", "pipe" (read
        with Process.output()), "pty", or a StdioSpec (files). For anything
        else (rlimits, namespaces, umask) pass a SpawnRequest as ``argv``.
        """
        if isinstance(argv, processes_pb2.SpawnRequest):
            request = argv
        else:
            if isinstance(argv, str):
                raise _errors.InvalidArgument(
                    "argv is a list of strings, not one string")
            request = processes_pb2.SpawnRequest(
                argv=list(argv),
                env=_env_list(os.environ if env is None else env),
                cwd=cwd if cwd is not None else (
                    "" if self._connection.remote else os.getcwd()),
                stdin=_stdio(stdin), stdout=_stdio(stdout),
                stderr=_stdio(stderr), labels=dict(labels or {}))
        response = _connection.call(self._connection.processes.Spawn, request)
        return Process(self._connection, response.process)

    def process(self, process: ProcessRef) -> Process:
        """A handle on an existing process, by id."""
        return Process(self._connection, self.get(process))

    def get(self, process: ProcessRef) -> processes_pb2.ProcessInfo:
        """The daemon's record of a process."""
        return _connection.call(
            self._connection.processes.Get,
            processes_pb2.GetProcessRequest(id=_process_id(process))).process

    def wait(self, process: ProcessRef,
             timeout: Optional[float] = None) -> processes_pb2.ProcessInfo:
        """Blocks until the process exits; returns its record (exit_status;
        procwarp.returncode() gives subprocess's number)."""
        return _connection.call(
            self._connection.processes.Wait,
            processes_pb2.WaitRequest(id=_process_id(process)), timeout).process

    def kill(self, process: ProcessRef,
             signal: Union[int, signals.Signals] = signals.SIGTERM) -> None:
        """Sends ``signal`` (SIGTERM by default) to a managed process."""
        _connection.call(
            self._connection.processes.Signal,
            processes_pb2.SignalRequest(id=_process_id(process),
                                        signal=int(signal)))

    def remove(self, process: ProcessRef, force: bool = False) -> None:
        """Forgets an exited process (``force``: kills it first)."""
        _connection.call(
            self._connection.processes.Remove,
            processes_pb2.RemoveProcessRequest(id=_process_id(process),
                                               force=force))

    def list(self, all: bool = False) -> List[processes_pb2.ProcessInfo]:
        """Your managed processes (``all``: everyone's; admins only), by id."""
        return list(self._pages(
            self._connection.processes.List,
            lambda token: processes_pb2.ListProcessesRequest(
                all=all, page_token=token),
            "processes"))

    def events(self) -> Iterator[processes_pb2.ProcessEvent]:
        """Process events (started / exited / removed) as they happen, for
        every process you may see, from the moment this returns; leaving
        the loop (or close() on the iterator) ends the stream."""
        responses = self._connection.processes.Events(
            processes_pb2.EventsRequest())
        # The daemon sends its initial metadata once the subscription is
        # live: after this, no later event can be missed.
        responses.initial_metadata()
        return _connection.stream(responses)

    # Threads ---------------------------------------------------------------

    def create_thread(self, *, persistent: bool = False,
                      namespaces: Optional[processes_pb2.Namespaces] = None,
                      labels: Optional[Mapping[str, str]] = None) -> Thread:
        """Starts an agent thread running as you, optionally in new
        namespaces; it ends with this connection unless ``persistent``."""
        request = threads_pb2.CreateThreadRequest(
            persistent=persistent, labels=dict(labels or {}),
            launch=threads_pb2.LaunchThread(namespaces=namespaces))
        response = _connection.call(self._connection.threads.CreateThread,
                                    request)
        return Thread(self._connection, response.thread)

    def attach_thread(self, pid: int, tid: Optional[int] = None, *,
                      persistent: bool = False) -> Thread:
        """Attaches (ptrace) to a process you could ptrace yourself (admins:
        any but procwarpd's own), or to its thread ``tid``: the same Thread
        as create_thread's. Leaving it detaches; the process runs on."""
        request = threads_pb2.AttachThreadRequest(pid=pid, tid=tid,
                                                  persistent=persistent)
        response = _connection.call(self._connection.threads.AttachThread,
                                    request)
        return Thread(self._connection, response.thread)

    def thread(self, thread_id: str) -> Thread:
        """A handle on an existing thread of yours, by id (e.g. persistent)."""
        info = _connection.call(self._connection.threads.GetThread,
                                threads_pb2.GetThreadRequest(id=thread_id))
        return Thread(self._connection, info.thread)

    def threads(self, all: bool = False) -> List[threads_pb2.ThreadInfo]:
        """Your threads (``all``: everyone's; admins only), by id."""
        return list(self._pages(
            self._connection.threads.ListThreads,
            lambda token: threads_pb2.ListThreadsRequest(all=all,
                                                         page_token=token),
            "threads"))

    # Exec and Snapshots ----------------------------------------------------

    def call(self, pid: int, function: str, *args: int) -> exec_pb2.CallResponse:
        """Calls ``function`` ("libc.so.6:getpid", "getpid", an address
        "0x7f...") in process ``pid`` with up to 6 integer arguments
        (``procwarp call``); a crash in the callee is in ``crash``."""
        request = exec_pb2.CallRequest(target=exec_pb2.Target(pid=pid),
                                       function=function, args=list(args))
        return _connection.call(self._connection.exec.Call, request,
                                _connection.EXEC_CALL_TIMEOUT_S)

    def python_exec(self, pid: int, code: str, *, eval: bool = False,
                    timeout: Optional[float] = None,
                    main_thread_only: bool = False, no_wait: bool = False,
                    override_opt_out: bool = False) -> exec_pb2.RunPythonResponse:
        """Runs ``code`` inside the live Python program ``pid`` at a safe
        point (``procwarp py exec``) and returns what it printed
        (``stdout``, ``stderr``), ``value_repr`` when ``eval`` (one
        expression), and ``exception`` (type, message, traceback) if it
        raised: code that raises is a result, not a procwarp.Error.
        ``timeout`` seconds bound the run (the daemon's default when None).
        """
        request = exec_pb2.RunPythonRequest(
            target=exec_pb2.Target(pid=pid), code=code,
            mode=exec_pb2.PYTHON_MODE_EVAL if eval else exec_pb2.PYTHON_MODE_EXEC,
            timeout_ms=int(timeout * 1000) if timeout is not None else 0,
            main_thread_only=main_thread_only, no_wait=no_wait,
            override_opt_out=override_opt_out)
        # The daemon ends the run at its own timeout; ours only covers a
        # daemon that stops answering.
        deadline = _connection.EXEC_CALL_TIMEOUT_S + (timeout or 0)
        return _connection.call(self._connection.exec.RunPython, request,
                                deadline)

    def python_stack(self, pid: int, *, locals: bool = False,
                     native: bool = False,
                     consistent: bool = False) -> snapshots_pb2.PythonStackResponse:
        """Every Python thread's frames in process ``pid``, outermost first
        (``procwarp py stack``), read without running code in it; with
        ``locals``, each frame's local variables; ``consistent`` stops the
        target for the read; ``native`` stops it too and adds each thread's
        native (C) frames: merged into ``frames`` (``is_native`` set) when
        ``native_stack`` is NATIVE_STACK_MERGED, else in ``native_frames``
        (``native_note`` says why)."""
        request = snapshots_pb2.PythonStackRequest(
            pid=pid, locals=locals, native=native, consistent=consistent)
        return _connection.call(self._connection.snapshots.PythonStack,
                                request, _connection.EXEC_CALL_TIMEOUT_S)

    # ---------------------------------------------------------------------

    @staticmethod
    def _pages(method, make_request, field: str) -> Iterator:
        """Follows next_page_token until the last page."""
        token = ""
        while True:
            response = _connection.call(method, make_request(token))
            yield from getattr(response, field)
            token = response.next_page_token
            if not token:
                return
