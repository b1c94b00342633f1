"""What Process and Thread handles share: the connection they were made on
and the daemon's last record of them (``info``, a ProcessInfo or
ThreadInfo, both of which carry the handle's id and pid)."""

from __future__ import annotations

from typing import Any

from procwarp import _connection


class Handle:
    def __init__(self, connection: _connection.Connection, info: Any):
        self._connection = connection
        self.info = info

    @property
    def id(self) -> str:
        """The daemon's unguessable id for the handle."""
        return self.info.id

    @property
    def pid(self) -> int:
        """The process id, in the daemon's pid namespace."""
        return self.info.pid

    def __repr__(self) -> str:
        return f"<procwarp.{type(self).__name__} id={self.id} pid={self.pid}>"
