"""The CPython transports: HTTP over ``httpx.AsyncClient`` and the socket over ``websockets``.

Thin: they move bytes and translate foreign errors at this boundary (``raise TransportError(...)
from exc``; an ``{"error": ...}`` answer becomes the matching :class:`ServerError`). What the
bytes mean is the core's business (``examsync.engine``, ``examsync.connection``). Pass an
``httpx.AsyncClient`` built on ``httpx.MockTransport`` to test without a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..driver.api import HttpApi, Response, Session
from ..driver.socket_auth import authenticate
from ..exceptions import RemoteProtocolError, TransportError
from ..messages import parse_error
from ..protocol import decode_json
from ._local import PackageFiles

__all__ = ["HttpTransport", "Package", "Session", "SocketTransport"]


@dataclass(frozen=True, slots=True)
class Package:
    """The exam package on local disk, verified: ``sha256`` is its content's digest."""

    path: Path
    sha256: str
    from_cache: bool  # True when the server said 304 or could not be reached


class HttpTransport(HttpApi):
    """The candidate API (:class:`~examsync.driver.api.HttpApi`) over ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(base_url)
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        try:
            response = await self._client.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{method} {url}: {type(exc).__name__}: {exc}",
                timeout=isinstance(exc, httpx.TimeoutException),
            ) from exc
        # httpx.Headers is case-insensitive; the API reads lower-case names.
        headers_out = {k.lower(): v for k, v in response.headers.items()}
        return Response(response.status_code, headers_out, response.content)

    async def package(self, plan_id: str, cache_dir: Path) -> Package:
        """Download the exam package into ``cache_dir`` (``package.zip`` + ``package.sha256``),
        or use the cached copy (the rules: :meth:`~examsync.driver.api.HttpApi.fetch_package`).
        """
        files = PackageFiles(cache_dir)
        package = await self.fetch_package(plan_id, files)
        return Package(files.zip_path, package.sha256, package.from_cache)


class SocketTransport:
    """One open, authenticated WebSocket to ``{socketUrl}``. Build it with :meth:`connect`.

    The library's own keepalive pings are off: the app-level heartbeat of
    ``examsync.connection`` is the one that decides when a connection is dead.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._welcome: str | bytes | None = None  # read by connect(), handed out by recv()

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        last_position: str | None = None,
        open_timeout: float = 10.0,
        max_size: int = 1 << 20,
    ) -> SocketTransport:
        """Open the socket and authenticate with ``token`` in the first frame (resuming after
        ``last_position`` when given); raises TransportError, or ServerError when the handshake
        or the token is refused. The URL carries no secret."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + open_timeout
        try:
            ws = await connect(
                url,
                open_timeout=open_timeout,
                ping_interval=None,
                close_timeout=1.0,
                max_size=max_size,
                compression=None,
            )
        except InvalidStatus as exc:
            body: object = None
            try:
                body = decode_json(bytes(exc.response.body or b""))
            except RemoteProtocolError:
                pass
            error = parse_error(exc.response.status_code, body)
            header = exc.response.headers.get("Retry-After", "")
            if header.isdigit() and error.retry_after is None:
                error.details = {**error.details, "retryAfter": int(header)}
            raise error from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise TransportError(
                f"socket connect: {type(exc).__name__}: {exc}",
                timeout=isinstance(exc, TimeoutError),
            ) from exc
        self = cls(ws)
        left = max(0.0, deadline - loop.time())
        self._welcome = await authenticate(self, token, last_position, left)
        return self

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send(frame)
        except (ConnectionClosed, OSError) as exc:
            raise TransportError(f"socket send: {exc}") from exc

    async def recv(self) -> str | bytes:
        """The next message (the welcome first); TransportError once the socket is closed."""
        if self._welcome is not None:
            welcome, self._welcome = self._welcome, None
            return welcome
        try:
            return await self._ws.recv()
        except (ConnectionClosed, OSError) as exc:
            raise TransportError(f"socket closed: {exc}") from exc

    def abort(self) -> None:
        """Drop the connection at once (a dead peer would never finish a closing handshake)."""
        self._welcome = None  # nothing more is read after our own abort or close
        self._ws.transport.abort()

    async def close(self) -> None:
        self._welcome = None
        try:
            await self._ws.close()
        except (ConnectionClosed, OSError):
            pass
