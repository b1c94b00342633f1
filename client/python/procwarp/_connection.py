"""The channel and stubs one Client and every handle made from it share,
and the one place where grpcio's errors become procwarp.Error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, TypeVar

import grpc

from procwarp import _daemon_socket, _errors
from procwarp.exec.v1 import exec_pb2_grpc
from procwarp.snapshots.v1 import snapshots_pb2_grpc
from procwarp.v1 import admin_pb2_grpc, processes_pb2_grpc, threads_pb2_grpc

# Deadline for calls that should answer promptly (everything but Wait, the
# streams and the Python calls), as the C++ client's kShortCallTimeout: a
# wedged daemon gives DEADLINE_EXCEEDED, not a hang.
SHORT_CALL_TIMEOUT_S = 30.0
# Calls that run code in a target: the daemon caps one operation at its
# exec_operation_timeout_ms (60 s by default) anyway.
EXEC_CALL_TIMEOUT_S = 60.0

T = TypeVar("T")


def call(method: Callable[..., T], request: Any,
         timeout: Optional[float] = SHORT_CALL_TIMEOUT_S) -> T:
    """Runs a unary RPC, raising procwarp.Error on failure."""
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as error:
        raise _errors.from_rpc_error(error) from None


def stream(responses: Iterator[T]) -> Iterator[T]:
    """Iterates a server stream, raising procwarp.Error on failure."""
    try:
        yield from responses
    except grpc.RpcError as error:
        raise _errors.from_rpc_error(error) from None
    finally:
        # Leaving the loop early (break, an exception in the caller's loop,
        # garbage collection of the generator) ends the call in the daemon.
        cancel = getattr(responses, "cancel", None)
        if cancel is not None:
            cancel()


# Each Client is one connection of its own, as in the C++ client: the
# daemon ends a connection's threads with it, and a Client's address
# ("unix:/proc/self/fd/N") names its own pinned socket only while that fd is
# open. So no connection is shared through grpcio's process-wide subchannel
# pool, which matches channels by address and arguments.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Connection:
    """One gRPC channel and a stub per service. For a local daemon it owns
    the pinned socket file the channel connects through, which must stay
    open as long as the channel may connect (its fd number is the address)."""

    target: str
    channel: grpc.Channel
    remote: bool
    pinned: Optional[_daemon_socket.PinnedSocket] = None

    def __post_init__(self) -> None:
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.processes = processes_pb2_grpc.ProcessesStub(self.channel)
        self.threads = threads_pb2_grpc.ThreadsStub(self.channel)
        self.exec = exec_pb2_grpc.ExecStub(self.channel)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(self.channel)

    def close(self) -> None:
        """Closes the channel, then the pinned socket file."""
        self.channel.close()
        if self.pinned is not None:
            self.pinned.close()
