"""The CPython transports: HTTP over ``httpx.AsyncClient`` and the socket over ``websockets``.

Thin: they move bytes and translate foreign errors at this boundary (``raise TransportError(...)
from exc``; an ``{"error": ...}`` answer becomes the matching :class:`ServerError`). What the
bytes mean is the core's business (``examsync.engine``, ``examsync.connection``). Pass an
``httpx.AsyncClient`` built on ``httpx.MockTransport`` to test without a server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .._validate import frozen_map, get_str, require_object
from ..exceptions import (
    ChecksumMismatch,
    RemoteProtocolError,
    ServerError,
    TransportError,
)
from ..messages import parse_error
from ..protocol import decode_json
from ..receipts import parse_public_keys
from .files import write_atomically

__all__ = ["HttpTransport", "Package", "Session", "SocketTransport"]


@dataclass(frozen=True, slots=True)
class Session:
    """What ``POST /api/v1/sessions`` answered: the token, the socket URL, and the rest."""

    token: str
    socket_url: str
    plan_id: str
    candidate_id: str
    server_time: str
    raw: Mapping[str, Any] = field(default_factory=dict)  # stages, plan config, progress...

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", frozen_map(self.raw))

    @classmethod
    def from_wire(cls, obj: object) -> Session:
        m = require_object(obj, "")
        return cls(
            token=get_str(m, "token", ""),
            socket_url=get_str(m, "socketUrl", ""),
            plan_id=get_str(m, "planId", ""),
            candidate_id=get_str(m, "candidateId", ""),
            server_time=str(m.get("serverTime", "")),
            raw=m,
        )


@dataclass(frozen=True, slots=True)
class Package:
    """The exam package on local disk, verified: ``sha256`` is its content's digest."""

    path: Path
    sha256: str
    from_cache: bool  # True when the server said 304 or could not be reached


def _map_httpx(exc: httpx.HTTPError, what: str) -> TransportError:
    return TransportError(
        f"{what}: {type(exc).__name__}: {exc}", timeout=isinstance(exc, httpx.TimeoutException)
    )


def _error_for(response: httpx.Response) -> ServerError:
    try:
        body: object = decode_json(response.content) if response.content else None
    except RemoteProtocolError:
        body = None  # a proxy's HTML page: the status alone decides
    return parse_error(response.status_code, body)


class HttpTransport:
    """The candidate API over HTTP (DESIGN §4): login, save, restore, keys, package."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self.token: str | None = None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        try:
            return await self._client.request(
                method, self.base_url + path, json=json_body, content=content, headers=all_headers
            )
        except httpx.HTTPError as exc:
            raise _map_httpx(exc, f"{method} {path}") from exc

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        if not response.is_success:
            raise _error_for(response)
        return decode_json(response.content)

    async def login(
        self,
        plan_id: str,
        *,
        candidate_id: str | None = None,
        auth_code: str | None = None,
        key: str | None = None,
    ) -> Session:
        """Web login (candidate id + auth code) or key login; keeps the token for later calls."""
        if key is not None:
            body: dict[str, str] = {"planId": plan_id, "key": key}
        elif candidate_id is not None and auth_code is not None:
            body = {"planId": plan_id, "candidateId": candidate_id, "authCode": auth_code}
        else:
            raise ValueError("pass key=, or candidate_id= and auth_code=")
        self.token = None
        session = Session.from_wire(await self._json("POST", "/api/v1/sessions", json_body=body))
        self.token = session.token
        return session

    async def save(self, body: bytes) -> tuple[int, bytes]:
        """POST a save; the status and raw body go to the engine, which judges them."""
        response = await self._request("POST", "/api/v1/answers", content=body)
        return response.status_code, response.content

    async def me(self) -> Mapping[str, Any]:
        """The candidate's progress now (``GET /api/v1/me``: status, current stage, deadline),
        as the session's ``progress`` had it at login."""
        return require_object(await self._json("GET", "/api/v1/me"), "")

    async def events(self, after: str | None) -> bytes:
        """The raw answer of ``GET /api/v1/events`` (the core parses it); non-2xx raises
        ServerError."""
        query = f"?{urlencode({'after': after})}" if after is not None else ""
        response = await self._request("GET", f"/api/v1/events{query}")
        if not response.is_success:
            raise _error_for(response)
        return response.content

    async def restore(self, exam_code: str) -> bytes:
        """The raw restore body (the engine validates it); non-2xx raises ServerError."""
        response = await self._request("GET", f"/api/v1/answers/{quote(exam_code, safe='')}")
        if not response.is_success:
            raise _error_for(response)
        return response.content

    async def keys(self) -> Mapping[str, bytes]:
        """The server's receipt-signing public keys by key id (``GET /api/v1/keys``)."""
        return parse_public_keys(await self._json("GET", "/api/v1/keys"))

    async def package(self, plan_id: str, cache_dir: Path) -> Package:
        """Download the exam package into ``cache_dir``, or use the cached copy.

        The content must hash to the ``ETag`` (and ``X-Content-SHA256`` when sent), else
        :class:`ChecksumMismatch` and the cache is left as it was. A cached copy (itself checked
        against its recorded digest) is sent as ``If-None-Match`` and used on 304, or when the
        server cannot be reached or answers 5xx: the exam can start offline.
        """
        zip_path = cache_dir / "package.zip"
        sha_path = cache_dir / "package.sha256"
        cached = _read_cached(zip_path, sha_path)
        headers = {"If-None-Match": f'"{cached}"'} if cached else {}
        try:
            response = await self._request(
                "GET", f"/api/v1/plans/{quote(plan_id, safe='')}/package", headers=headers
            )
            if response.status_code == 304 and cached:
                return Package(zip_path, cached, from_cache=True)
            if not response.is_success:
                raise _error_for(response)
        except (TransportError, ServerError) as exc:
            retryable = isinstance(exc, TransportError) or (
                isinstance(exc, ServerError) and exc.status >= 500
            )
            if cached and retryable:
                return Package(zip_path, cached, from_cache=True)
            raise
        data = response.content
        digest = hashlib.sha256(data).hexdigest()
        etag = response.headers.get("ETag", "").removeprefix("W/").strip('"')
        for claimed in (etag, response.headers.get("X-Content-SHA256", "")):
            if claimed and claimed.lower() != digest:
                raise ChecksumMismatch(expected=digest, actual=claimed)
        if not etag:
            raise RemoteProtocolError("package without an ETag", path="ETag")
        write_atomically(zip_path, data)
        write_atomically(sha_path, digest.encode())
        return Package(zip_path, digest, from_cache=False)


def _read_cached(zip_path: Path, sha_path: Path) -> str | None:
    try:
        recorded = sha_path.read_text().strip()
        data = zip_path.read_bytes()
    except OSError:
        return None
    return recorded if hashlib.sha256(data).hexdigest() == recorded else None


def socket_url_with_token(url: str, token: str, last_position: str | None = None) -> str:
    """``url`` with ``token=`` (and ``lastPosition=``, to resume) set in its query; other query
    parameters are kept."""
    ours = {"token": token}
    if last_position is not None:
        ours["lastPosition"] = last_position
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ours] + list(ours.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class SocketTransport:
    """One open WebSocket to ``{socketUrl}?token=…``. Build it with :meth:`connect`.

    The library's own keepalive pings are off: the app-level heartbeat of
    ``examsync.connection`` is the one that decides when a connection is dead.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

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
        """Open the socket (resuming after ``last_position`` when given); raises
        TransportError, or ServerError when the handshake is refused."""
        try:
            ws = await connect(
                socket_url_with_token(url, token, last_position),
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
        return cls(ws)

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send(frame)
        except (ConnectionClosed, OSError) as exc:
            raise TransportError(f"socket send: {exc}") from exc

    async def recv(self) -> str | bytes:
        """The next message; TransportError once the socket is closed."""
        try:
            return await self._ws.recv()
        except (ConnectionClosed, OSError) as exc:
            raise TransportError(f"socket closed: {exc}") from exc

    def abort(self) -> None:
        """Drop the connection at once (a dead peer would never finish a closing handshake)."""
        self._ws.transport.abort()

    async def close(self) -> None:
        try:
            await self._ws.close()
        except (ConnectionClosed, OSError):
            pass
