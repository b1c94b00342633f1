"""Errors: every failed call raises a procwarp.Error carrying the gRPC code.

The daemon answers bad requests, unknown ids, refused authority and so on
with a gRPC status (docs/architecture.md, "The path of a request"); the
client raises it as an exception of the class for its code, so callers can
write ``except procwarp.NotFound:``. What the client finds wrong itself
before any call (no daemon at the socket, an untrusted daemon) is raised the
same way, with the code the C++ client gives it.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class Error(Exception):
    """A procwarp call failed. ``code`` is the grpc.StatusCode, ``details``
    the daemon's message (a sentence a person can act on)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"


class Cancelled(Error):
    code = grpc.StatusCode.CANCELLED


class InvalidArgument(Error):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(Error):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(Error):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(Error):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(Error):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(Error):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(Error):
    code = grpc.StatusCode.ABORTED


class OutOfRange(Error):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(Error):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(Error):
    code = grpc.StatusCode.INTERNAL


class Unavailable(Error):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(Error):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[Error]] = {
    cls.code: cls
    for cls in (Cancelled, InvalidArgument, DeadlineExceeded, NotFound,
                AlreadyExists, PermissionDenied, ResourceExhausted,
                FailedPrecondition, Aborted, OutOfRange, Unimplemented,
                Internal, Unavailable, Unauthenticated)
}


def error_for(code: grpc.StatusCode, details: str) -> Error:
    """The exception for gRPC status ``code``: its subclass where there is
    one, else a plain Error carrying the code (UNKNOWN, DATA_LOSS)."""
    cls = _BY_CODE.get(code)
    return cls(details) if cls is not None else Error(details, code)


def from_rpc_error(error: grpc.RpcError) -> Error:
    """Converts what grpcio raises for a failed call (a grpc.Call)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for(code, details or code.name)
