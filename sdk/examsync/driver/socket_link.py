"""The client's socket: opening it, reading its frames, and the saves waiting for an ack on it.

The :class:`~examsync.connection.Connection` machine decides when to connect, what to send and
when to drop; :class:`SocketLink` does that I/O and reports back to the machine. Frames go to
the client (``on_frame``); it routes them, so the socket's frames and a poll's are handled alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..connection import Connection, ConnectionState
from ..events import Alert
from ..exceptions import ExamSyncError, RemoteProtocolError, ServerError, TransportError
from ..frames import Frame, save_frame
from ..sync_report import SYNC_STATE_FEATURE, SyncReporter
from .interfaces import Socket

__all__ = ["SocketLink"]

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class SocketLink:
    """At most one open socket, its reader task, and the saves sent over it (by request id)."""

    def __init__(
        self,
        conn: Connection,
        open_socket: Callable[[str | None], Awaitable[Socket]],
        *,
        monotonic: Callable[[], float],
        spawn: Spawn,
        wake: Callable[[], None],
        on_frame: Callable[[Frame], None],
        publish: Callable[[list[Any]], None],
        save_failed: Callable[[int, TransportError], None],
    ) -> None:
        self._conn = conn
        self._open_socket = open_socket  # (last position) -> an open socket
        self._mono = monotonic
        self._spawn, self._wake = spawn, wake
        self._on_frame, self._publish, self._save_failed = on_frame, publish, save_failed
        self._socket: Socket | None = None
        self._pending: dict[str, int] = {}  # socket request id -> engine batch id
        self.reporter = SyncReporter()  # answers waiting here, told to the supervisors
        self.closing = False

    @property
    def is_open(self) -> bool:
        return self._socket is not None

    @property
    def reports_sync(self) -> bool:
        """The open socket's server takes ``sync_state`` reports (its welcome says so)."""
        welcome = self._conn.welcome
        return (
            self._conn.state is ConnectionState.OPEN
            and welcome is not None
            and SYNC_STATE_FEATURE in welcome.features
        )

    async def connect(self, last_position: str | None) -> None:
        try:
            socket = await self._open_socket(last_position)
        except ExamSyncError as exc:
            if isinstance(exc, ServerError) and not exc.retryable:  # a bad token...: say so
                self._publish([Alert(exc, "socket")])
            wait = exc.retry_after if isinstance(exc, ServerError) else None
            self._conn.connect_failed(str(exc), self._mono(), wait)
            self._wake()
            return
        if self.closing or self._conn.state is not ConnectionState.CONNECTING:
            await socket.close()
            return
        self._socket = socket
        self.reporter.socket_opened()
        self._conn.connection_made(self._mono())
        self._spawn(self._read(socket), "socket")
        self._wake()

    async def _read(self, socket: Socket) -> None:
        while True:
            try:
                data = await socket.recv()
            except TransportError as exc:
                if socket is self._socket:  # not dropped by us: the peer or network closed it
                    self._socket = None
                    self._conn.connection_lost(str(exc), self._mono())
                    self._fail_saves(exc)
                self._wake()
                return
            try:
                frame = self._conn.receive_frame(data, self._mono())
            except RemoteProtocolError as exc:
                self._publish([Alert(exc, "socket")])
                continue
            finally:
                self._wake()  # a frame may have queued a pong or changed the channel
            self._on_frame(frame)

    def send(self, frame: str) -> None:
        """Send a frame if a socket is open (a lost one is reported by the reader, once)."""
        if self._socket is not None:
            self._spawn(self._send(self._socket, frame), "socket")

    @staticmethod
    async def _send(socket: Socket, frame: str) -> None:
        try:
            await socket.send(frame)
        except TransportError:
            pass  # the reader sees the closed socket and reports it once

    async def send_save(self, batch_id: int, body: bytes) -> bool:
        """Send a save; False if no socket is open. Its ack comes back as a frame."""
        socket = self._socket
        if socket is None:
            return False
        request_id = str(batch_id)
        self._pending[request_id] = batch_id
        try:
            await socket.send(save_frame(request_id, body))
        except TransportError as exc:
            self._pending.pop(request_id, None)
            self._save_failed(batch_id, exc)
        return True

    def answered(self, request_id: str | None) -> int | None:
        """The batch a save ack or error answers (None: not a save of ours, or answered)."""
        return self._pending.pop(request_id or "", None)

    def drop(self, error: TransportError) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.abort()
        self._fail_saves(error)

    async def close(self) -> None:
        self.closing = True
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    def _fail_saves(self, error: TransportError) -> None:
        pending, self._pending = self._pending, {}
        for batch in pending.values():
            self._save_failed(batch, error)
