"""A TCP proxy that a test can cut, heal, pause and resume: the network between an SDK client
and a real server.

It runs its own asyncio loop in a background thread, so it keeps moving bytes while the test
blocks (a sync test, ``subprocess.run``...), and its controls are plain blocking methods that
return once the change is in effect:

- ``cut()``: every connection is reset (RST) and the port refuses new ones, as when a cable is
  pulled or a NAT forgets its table. Bytes held by a pause are dropped, never delivered.
- ``heal()``: the port listens again (the same port) and bytes flow.
- ``pause()``: connections stay up and new ones are accepted, but no byte moves either way (a
  black hole: requests hang). ``resume()`` lets the held bytes through.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"
CHUNK = 65536


class TcpProxy:
    """Forwards ``host:port`` to ``127.0.0.1:upstream_port`` (see the module docstring).

    ``host`` is another loopback address (127.0.0.2...) to give one device a network of its own:
    a proxy there may take the server's own port number, as the server listens on 127.0.0.1."""

    def __init__(self, upstream_port: int, port: int = 0, host: str = HOST) -> None:
        self.upstream_port = upstream_port
        self.host = host
        self.port = port  # 0: a free one, fixed at start()
        self.accepted = 0  # connections taken since start
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}

    # --- controls (blocking, from any thread but the proxy's own) --------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`heal`."""
        self._call(self._cut())

    def heal(self) -> None:
        """Listen again on the same port; bytes flow (a pause ends too)."""
        self._call(self._heal())

    def pause(self) -> None:
        """Hold every byte (both ways) on open and new connections until :meth:`resume`."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._cut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # --- on the proxy's loop ---------------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, reuse_address=True
            )
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()  # refuse: nothing listens on the port any more
            self._server = None
        tasks = list(self._connections)
        for task in tasks:
            for writer in self._writers.get(task, []):
                _reset(writer)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _heal(self) -> None:
        await self._listen()
        await self._set_flowing(True)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.accepted += 1
        self._connections.add(task)
        self._writers[task] = [client_w]
        try:
            try:
                upstream_r, upstream_w = await asyncio.open_connection(HOST, self.upstream_port)
            except OSError:  # the server is down: the client sees its connection reset
                _reset(client_w)
                return
            self._writers[task].append(upstream_w)
            await asyncio.gather(
                self._pump(client_r, upstream_w, client_w),
                self._pump(upstream_r, client_w, upstream_w),
            )
        finally:
            for writer in self._writers.pop(task):
                writer.close()  # after a cut or an error: already reset, so a no-op
            self._connections.discard(task)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, src_w: asyncio.StreamWriter
    ) -> None:
        """Copy src to dst; an end of stream is passed on (half-close), an error resets both."""
        assert self._flowing is not None
        try:
            while data := await src.read(CHUNK):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()
        except OSError:
            _reset(dst)
            _reset(src_w)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), dropping anything unsent: a cut, not a goodbye."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
