"""procwarp: a Python client for procwarpd (README, "Python client").

    import procwarp

    with procwarp.Client() as client:            # the CLI's default socket
        p = client.spawn(["/bin/echo", "hello"])
        for chunk in p.output():                 # stdout/stderr until exit
            print(chunk.data.decode(), end="")
        print(p.returncode)                      # 0

        with client.create_thread() as t:        # a remote thread, as you
            print(t.syscall("getpid").value)     # == t.pid

        r = client.python_exec(4242, "print(len(sys.modules))")
        stack = client.python_stack(4242, locals=True)

Messages are the protobuf types generated from proto/ (procwarp.v1,
procwarp.exec.v1, procwarp.snapshots.v1). Failed calls raise procwarp.Error
subclasses carrying the gRPC code (``.code``).
"""

from procwarp._client import Client
from procwarp._target import TlsOptions
from procwarp._daemon_socket import default_socket_path
from procwarp._errors import (Aborted, AlreadyExists, Cancelled,
                              DeadlineExceeded, Error, FailedPrecondition,
                              Internal, InvalidArgument, NotFound, OutOfRange,
                              PermissionDenied, ResourceExhausted,
                              Unauthenticated, Unavailable, Unimplemented)
from procwarp._process import Process, returncode
from procwarp._thread import Thread, syscall_number

__all__ = [
    "Aborted", "AlreadyExists", "Cancelled", "Client", "DeadlineExceeded",
    "Error", "FailedPrecondition", "Internal", "InvalidArgument", "NotFound",
    "OutOfRange", "PermissionDenied", "Process", "ResourceExhausted",
    "Thread", "TlsOptions", "Unauthenticated", "Unavailable", "Unimplemented",
    "default_socket_path", "returncode", "syscall_number",
]
