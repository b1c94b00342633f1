"""Thread: a remote thread driven syscall by syscall (Threads service).

Either a procwarp-agent process the daemon started as the caller
(Client.create_thread) or a thread of an existing process attached with
ptrace (Client.attach_thread); docs/architecture.md, "The Thread interface".
A failed syscall is a result carrying its errno, not an exception, unless
``check=True`` asks for OSError.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Iterable, Iterator, Sequence, Union

from procwarp import _connection, _errors, _handle, _syscall_table
from procwarp.v1 import threads_pb2

SyscallName = Union[int, str]
# One syscall for Thread.execute: (number or name, arg, arg, ...).
SyscallSpec = Sequence[Union[int, str]]


def syscall_number(name: SyscallName) -> int:
    """``name`` ("getpid") or a number, as the x86-64 syscall number."""
    if isinstance(name, int):
        return name
    number = _syscall_table.NUMBERS.get(name)
    if number is None:
        raise _errors.InvalidArgument(f"unknown syscall name {name!r}")
    return number


def _int64(value: int) -> int:
    """An argument as the int64 the API carries: pointers and flags above
    2**63 (uint64 in the target) wrap as two's complement."""
    if not -(1 << 63) <= value < (1 << 64):
        raise _errors.InvalidArgument(f"syscall argument {value} does not fit 64 bits")
    return value - (1 << 64) if value >= (1 << 63) else value


def _syscall_message(name: SyscallName, args: Iterable[int]) -> threads_pb2.Syscall:
    return threads_pb2.Syscall(number=syscall_number(name),
                               args=[_int64(int(a)) for a in args])


def check_result(name: SyscallName, result: threads_pb2.SyscallResult) -> int:
    """The syscall's value, or OSError(errno) when it failed."""
    if result.error:
        raise OSError(result.error, f"{name}: {os.strerror(result.error)}")
    return result.value


class Thread(_handle.Handle):
    """A remote thread. ``with`` ends it on leaving the block (exit()):
    an agent exits, an attached process is detached, never killed."""

    info: threads_pb2.ThreadInfo

    def __enter__(self) -> "Thread":
        return self

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(_errors.NotFound):
            self.exit()

    def syscall(self, name: SyscallName, *args: int, check: bool = False,
                stop_all_threads: bool = False) -> threads_pb2.SyscallResult:
        """Runs one syscall, by name ("getpid") or number, with up to six
        integer arguments (pointers are addresses in the thread). Returns the
        result (``value``; ``error``/``error_name`` when it failed), or with
        ``check`` raises OSError for a failed call."""
        result = _connection.call(
            self._connection.threads.Syscall,
            threads_pb2.SyscallRequest(thread_id=self.id,
                                       syscall=_syscall_message(name, args),
                                       stop_all_threads=stop_all_threads)).result
        if check:
            check_result(name, result)
        return result

    def execute(self, syscalls: Iterable[SyscallSpec],
                batch_size: int = 64) -> Iterator[threads_pb2.SyscallResult]:
        """Runs many syscalls through the pipelined Execute stream, yielding
        their results in order: ``syscalls`` is consumed lazily, in batches of
        ``batch_size``, while earlier batches' results come back."""
        # grpcio reads the requests on a thread of its own and answers an
        # exception there (a bad spec) by cancelling the call: keep it, to
        # raise it instead of the CANCELLED.
        bad_spec = []

        def requests() -> Iterator[threads_pb2.ExecuteRequest]:
            specs = iter(syscalls)
            while True:
                batch = list(itertools.islice(specs, batch_size))
                if not batch:
                    return
                try:
                    messages = [_syscall_message(s[0], s[1:]) for s in batch]
                except Exception as error:
                    bad_spec.append(error)
                    raise
                yield threads_pb2.ExecuteRequest(thread_id=self.id,
                                                 syscalls=messages)

        responses = self._connection.threads.Execute(requests())
        try:
            with contextlib.closing(_connection.stream(responses)) as stream:
                for response in stream:
                    yield from response.results
        except _errors.Error:
            if bad_spec:
                raise bad_spec[0] from None
            raise

    def refresh(self) -> threads_pb2.ThreadInfo:
        """Fetches the daemon's current record (state, exit status)."""
        self.info = _connection.call(
            self._connection.threads.GetThread,
            threads_pb2.GetThreadRequest(id=self.id)).thread
        return self.info

    def exit(self, code: int = 0) -> threads_pb2.ThreadInfo:
        """Ends the thread (an agent exits with ``code``; an attached process
        is detached) and releases the handle."""
        self.info = _connection.call(
            self._connection.threads.ExitThread,
            threads_pb2.ExitThreadRequest(id=self.id, exit_code=code)).thread
        return self.info

