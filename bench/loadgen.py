"""The load generator's HTTP client: keep-alive HTTP/1.1 POSTs over plain asyncio streams.

The load runs on the same two cores as the server, so every microsecond it spends is taken
from the server being measured: a prebuilt request head and a minimal response reader spend a
fraction of what aiohttp or httpx would (CHANGELOG). It speaks only what the benchmark needs:
POST with Content-Length, responses with Content-Length.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpError(Exception):
    """The connection failed or the response could not be read."""


class RawHttp:
    def __init__(self, base: str, connections: int) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(connections)

    def head(self, path: str, headers: dict[str, str]) -> bytes:
        """The request line and headers up to Content-Length's value, built once per caller."""
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode()

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        async with self._slots:
            if self._idle:
                try:
                    return await self._exchange(self._idle.pop(), head, body)
                except HttpError:
                    pass  # the server closed it while idle (keep-alive timeout): a new one
            return await self._exchange(await self._connect(), head, body)

    async def _exchange(self, conn: Connection, head: bytes, body: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        try:
            writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            status, length = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            data = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise HttpError(type(exc).__name__) from exc
        self._idle.append(conn)
        return status, data

    async def _connect(self) -> Connection:
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError(type(exc).__name__) from exc

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise HttpError("a response without Content-Length")
