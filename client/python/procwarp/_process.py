"""Process: a handle on a process the daemon spawned (Processes service)."""

from __future__ import annotations

import contextlib
import signal as signals
from typing import Iterator, Optional, Union

from procwarp import _connection, _handle
from procwarp.v1 import processes_pb2


def returncode(status: processes_pb2.ProcessInfo) -> Optional[int]:
    """subprocess's convention for a process record: None while it runs, its
    exit code, or -N when signal N killed it."""
    if status.state != processes_pb2.PROCESS_STATE_EXITED:
        return None
    how = status.exit_status.WhichOneof("how")
    if how == "signal":
        return -status.exit_status.signal
    return status.exit_status.code


class Process(_handle.Handle):
    """A managed process. The handle owns nothing: the process runs on, and
    its record stays in the daemon, until remove() (``procwarp rm``)."""

    info: processes_pb2.ProcessInfo

    @property
    def returncode(self) -> Optional[int]:
        """As of the last refresh()/wait(): see procwarp.returncode."""
        return returncode(self.info)

    def refresh(self) -> processes_pb2.ProcessInfo:
        """Fetches the daemon's current record."""
        self.info = _connection.call(
            self._connection.processes.Get,
            processes_pb2.GetProcessRequest(id=self.id)).process
        return self.info

    def wait(self, timeout: Optional[float] = None) -> processes_pb2.ProcessInfo:
        """Blocks until the process exits and returns its record (exit_status
        set). With ``timeout`` seconds, procwarp.DeadlineExceeded after it."""
        self.info = _connection.call(
            self._connection.processes.Wait,
            processes_pb2.WaitRequest(id=self.id), timeout).process
        return self.info

    def kill(self, signal: Union[int, signals.Signals] = signals.SIGTERM) -> None:
        """Sends ``signal`` (SIGTERM by default)."""
        _connection.call(self._connection.processes.Signal,
                         processes_pb2.SignalRequest(id=self.id,
                                                     signal=int(signal)))

    def remove(self, force: bool = False) -> None:
        """Forgets the exited process (``force``: kills it first)."""
        _connection.call(self._connection.processes.Remove,
                         processes_pb2.RemoveProcessRequest(id=self.id,
                                                            force=force))

    def output(self, stdin: Optional[bytes] = None,
               replay: bool = True) -> Iterator[processes_pb2.OutputChunk]:
        """Streams the process's stdout/stderr (spawned with pipes or a pty)
        until it exits, in the order it wrote them; output written before the
        call comes first unless ``replay`` is False. ``stdin``, when given,
        is written to the process and its stdin then closed. When the
        iteration ends, ``info`` holds the exit status."""
        requests = [processes_pb2.AttachRequest(id=self.id, no_replay=not replay)]
        if stdin is not None:
            requests.append(
                processes_pb2.AttachRequest(stdin=stdin, close_stdin=True))
        # Half-closing the request stream ends only our stdin: the daemon
        # keeps sending output until the exit status.
        responses = self._connection.processes.Attach(iter(requests))
        with contextlib.closing(_connection.stream(responses)) as stream:
            for response in stream:
                if response.HasField("output"):
                    yield response.output
                elif response.HasField("exit"):
                    break
        self.refresh()
