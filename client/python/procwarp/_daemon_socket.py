"""Finding procwarpd's unix socket and checking who serves it.

The same rules as the C++ client (client/cc/socket_path.h,
client/cc/daemon_peer.h; README, "Which daemon a Client talks to"):

- Where: $PROCWARP_SOCKET, else /run/procwarp/procwarpd.sock for root, else
  $XDG_RUNTIME_DIR/procwarp/procwarpd.sock (/run/user/EUID when unset).
- Who: whatever serves the socket receives the caller's requests
  (environments, code to run in its processes), so nothing is sent before
  SO_PEERCRED says the listener is root, the caller itself (when its real,
  effective and saved uids agree) or $PROCWARP_DAEMON_UID.

grpcio cannot run a channel on a socket we connected ourselves (the C++
client's way), and checking one connection and then letting gRPC connect
to the path again would let the path be swapped in between. So the socket
*file* is pinned first with an O_PATH descriptor, and both the check and
gRPC connect through /proc/self/fd/N: a path that names the inode we
opened, whatever happens to the original path. A socket inode belongs to
the one socket bound to it, so every connection gRPC makes (including
reconnects) reaches the listener that was checked, or fails; a daemon
restarted at the same path is a new inode and needs a new Client.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from typing import Optional, Set

from procwarp import _errors

SOCKET_ENV = "PROCWARP_SOCKET"
DAEMON_UID_ENV = "PROCWARP_DAEMON_UID"
SYSTEM_SOCKET_PATH = "/run/procwarp/procwarpd.sock"

# How long the trust probe waits for room in a full listen backlog (as the
# C++ client's ProbeSocket): a blocking connect() would wait for ever.
_CONNECT_TIMEOUT_S = 10.0


def default_socket_path() -> str:
    """Where the CLI and the C++ client look for the daemon by default."""
    configured = os.environ.get(SOCKET_ENV)
    if configured:
        return configured
    euid = os.geteuid()
    if euid == 0:
        return SYSTEM_SOCKET_PATH
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{euid}"
    return f"{runtime_dir}/procwarp/procwarpd.sock"


def not_running_error(path: str) -> _errors.Error:
    """The UNAVAILABLE error for no daemon at ``path``, worded as the CLI's."""
    return _errors.Unavailable(
        f"procwarpd is not running at {path} (start it with: sudo procwarpd, "
        "or systemctl start procwarpd.socket)")


def parse_uid(text: str, what: str) -> int:
    """``text`` as a uid: a decimal number other than (uid_t)-1."""
    if text.isdigit() and text.isascii():
        uid = int(text)
        if uid < 0xFFFFFFFF:
            return uid
    raise _errors.InvalidArgument(f"{what} is not a uid: {text!r}")


def trusted_uids(daemon_uid: Optional[int]) -> Set[int]:
    """The uids that may serve the daemon's socket for this process."""
    ruid, euid, suid = os.getresuid()
    uids = {0}
    # A setuid program (uids differ) trusts neither its invoker's daemon nor
    # its invoker's environment (the C++ client reads it with secure_getenv).
    if ruid == euid == suid:
        uids.add(euid)
        if daemon_uid is None and os.environ.get(DAEMON_UID_ENV):
            daemon_uid = parse_uid(os.environ[DAEMON_UID_ENV], DAEMON_UID_ENV)
    if daemon_uid is not None:
        uids.add(daemon_uid)
    return uids


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            return comm.read().strip().decode("utf-8", "backslashreplace")
    except OSError:
        return "?"


def _connect_error(path: str, error: OSError) -> _errors.Error:
    """Separates the cases a person fixes differently, as the C++ client."""
    if error.errno in (errno.ENOENT, errno.ECONNREFUSED):
        return not_running_error(path)
    if error.errno in (errno.EACCES, errno.EPERM):
        return _errors.PermissionDenied(
            f"no permission to connect to procwarpd at {path} (ask to be put "
            "in the procwarp group)")
    if error.errno in (errno.EAGAIN, errno.ETIMEDOUT) or isinstance(
            error, socket.timeout):
        return _errors.Unavailable(
            f"procwarpd at {path} is too busy to accept connections")
    return _errors.Unavailable(f"cannot connect to procwarpd at {path}: "
                               f"{error.strerror or error}")


class PinnedSocket:
    """The daemon's socket file, opened O_PATH and checked: connect to
    ``address`` (unix:/proc/self/fd/N) to reach the listener that was
    checked. Owns the descriptor; close() releases it."""

    def __init__(self, path: str, daemon_uid: Optional[int] = None):
        self.path = path
        self._fd = -1
        trusted = trusted_uids(daemon_uid)
        try:
            self._fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as error:
            raise _connect_error(path, error) from None
        try:
            if not stat.S_ISSOCK(os.fstat(self._fd).st_mode):
                raise _errors.FailedPrecondition(
                    f"{path} is not a socket, so not procwarpd's")
            self.peer_pid, self.peer_uid = self._check_peer(trusted)
        except BaseException:
            self.close()
            raise
        self.address = f"unix:{self._pinned_path()}"

    def _pinned_path(self) -> str:
        return f"/proc/self/fd/{self._fd}"

    def _check_peer(self, trusted: Set[int]):
        """Connects once, sending nothing, and reads SO_PEERCRED."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(_CONNECT_TIMEOUT_S)
            try:
                probe.connect(self._pinned_path())
            except OSError as error:
                raise _connect_error(self.path, error) from None
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                     struct.calcsize("3i"))
        finally:
            probe.close()
        pid, uid, _gid = struct.unpack("3i", creds)
        uid &= 0xFFFFFFFF
        if uid not in trusted:
            raise _errors.PermissionDenied(
                f"refusing to talk to {self.path}: it is served by uid {uid} "
                f"(pid {pid}, {_command_of(pid)!r}), not by root or you; "
                f"set {DAEMON_UID_ENV}={uid} to trust that account's daemon")
        return pid, uid

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # Only once the Connection owning the channel is gone too.
        self.close()
