"""The candidate HTTP API (DESIGN §4) once, over whatever sends the requests.

:class:`HttpApi` knows the paths, bodies and answers of login, save, restore, keys and the
package; an adapter subclasses it with one method, :meth:`HttpApi._send`, that moves bytes
(httpx on CPython, ``fetch`` in the browser) and turns its own errors into
:class:`TransportError`. The same split as httpcore's transports: swap the sender, keep the API.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from .._validate import frozen_map, get_str, require_object
from ..devices import ActiveDevice, read_active_device
from ..exceptions import (
    ChecksumMismatch,
    ExamSyncError,
    RemoteProtocolError,
    ServerError,
    TransportError,
)
from ..messages import parse_error
from ..protocol import decode_json
from ..receipts import parse_public_keys
from ..storage import Upload

__all__ = [
    "CachedPackage",
    "HttpApi",
    "PackageCache",
    "Response",
    "Session",
    "error_for",
]


@dataclass(frozen=True, slots=True)
class Session:
    """What ``POST /api/v1/sessions`` answered: the token, the socket URL, and the rest.

    The device fields (docs/protocol.md, "Several devices") are read leniently: a server from
    before them leaves ``device_id`` and ``device_policy`` empty and the others None.
    """

    token: str
    socket_url: str
    plan_id: str
    candidate_id: str
    server_time: str
    raw: Mapping[str, Any] = field(default_factory=dict)  # stages, plan config, progress...
    device_id: str = ""  # the device the token carries
    device_policy: str = ""  # "single" or "merge"
    active_device: ActiveDevice | None = None  # as it stands after this sign-in
    replaced_device: str | None = None  # the device this sign-in took over from

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", frozen_map(self.raw))

    @classmethod
    def from_wire(cls, obj: object) -> Session:
        m = require_object(obj, "")
        policy = m.get("devicePolicy")
        policy = policy if policy in ("single", "merge") else ""
        device_id, replaced = m.get("deviceId"), m.get("replacedDevice")
        return cls(
            token=get_str(m, "token", ""),
            socket_url=get_str(m, "socketUrl", ""),
            plan_id=get_str(m, "planId", ""),
            candidate_id=get_str(m, "candidateId", ""),
            server_time=str(m.get("serverTime", "")),
            raw=m,
            device_id=device_id if isinstance(device_id, str) else "",
            device_policy=policy,
            active_device=read_active_device(m.get("activeDevice"), policy),
            replaced_device=replaced if isinstance(replaced, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer as the API needs it; header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class CachedPackage:
    """The exam package's bytes and their SHA-256 (hex), checked against each other."""

    data: bytes
    sha256: str
    from_cache: bool  # True when the server said 304 or could not be reached


class PackageCache(Protocol):
    """Where an adapter keeps the last verified package (a directory, IndexedDB)."""

    async def load(self) -> CachedPackage | None:
        """The cached package, if there is one that still hashes to its recorded digest."""
        ...

    async def save(self, package: CachedPackage) -> None: ...


def error_for(response: Response) -> ServerError:
    """The typed error of a non-2xx answer (its ``{"error": ...}`` body, or the status alone)."""
    try:
        body: object = decode_json(response.content) if response.content else None
    except RemoteProtocolError:
        body = None  # a proxy's HTML page: the status alone decides
    return parse_error(response.status, body)


# The 401 codes a new sign-in answers: the session expired, or was revoked (a person removed
# from the plan then fails that sign-in with invalid_credentials, which stands).
SIGN_IN_AGAIN = frozenset({"token_expired", "session_revoked"})


class HttpApi(ABC):
    """Login, save, restore, keys and package over :meth:`_send`; keeps the session token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token: str | None = None
        # The login body, kept to log in again when the server says the session expired: an
        # exam outlasting the session must not turn into failed saves.
        self._credentials: dict[str, Any] | None = None
        # Told of every session a sign-in returns (login, renewal, takeover): the client
        # learns from each which device is active.
        self.on_session: Callable[[Session], None] | None = None

    @abstractmethod
    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        """Send one request; raise TransportError (``from`` the cause) when no answer came."""

    async def aclose(self) -> None:  # noqa: B027 (a hook with a do-nothing default)
        """Release what the sender holds (a connection pool)."""

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        signed: bool = True,
    ) -> Response:
        """Send with the session's token (unless not ``signed``: a sign-in), renewing it once
        when the session expired or was revoked. A renewal that fails raises what it met
        (TransportError, ServerError) and keeps the old token, so the next request renews
        again: the caller retries later (the outbox with its backoff)."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        for renewed in (False, True):
            if signed and self.token is not None:
                all_headers["Authorization"] = f"Bearer {self.token}"
            response = await self._send(method, self.base_url + path, body, all_headers)
            if not signed or renewed or not self._expired(response) or self._credentials is None:
                return response
            await self.renew()
        raise AssertionError("unreachable")

    @staticmethod
    def _expired(response: Response) -> bool:
        return response.status == 401 and error_for(response).code in SIGN_IN_AGAIN

    async def renew(self) -> bool:
        """Log in again as the first login did (the session expired), with ``activate:
        false``: a renewal never takes the exam back from another device. False without a
        login to repeat."""
        if self._credentials is None:
            return False
        await self._sign_in({**self._credentials, "activate": False})
        return True

    def use_device(self, device_id: str) -> None:
        """Sign in from ``device_id`` from now on (renewals and takeovers); no-op before any
        login."""
        if self._credentials is not None:
            self._credentials = {**self._credentials, "deviceId": device_id}

    async def take_over(self, device_id: str | None = None) -> Session:
        """Sign in again with the login's credentials, making this device the active one
        (from ``device_id`` from now on, when given). ExamSyncError before any login."""
        if self._credentials is None:
            raise ExamSyncError("log in first")
        if device_id is not None:
            self.use_device(device_id)
        return await self._sign_in(self._credentials)

    async def _sign_in(self, body: Mapping[str, Any]) -> Session:
        """``POST /api/v1/sessions``; keep the new token, tell :attr:`on_session`. The old
        token is kept until a new one arrives (a failed renewal must not leave none)."""
        encoded = json.dumps(body, ensure_ascii=False).encode()
        answer = await self._json("POST", "/api/v1/sessions", encoded, signed=False)
        session = Session.from_wire(answer)
        self.token = session.token
        if self.on_session is not None:
            self.on_session(session)
        return session

    async def _json(
        self, method: str, path: str, body: bytes | None = None, *, signed: bool = True
    ) -> Any:
        response = await self._request(method, path, body=body, signed=signed)
        if not response.is_success:
            raise error_for(response)
        return decode_json(response.content)

    async def login(
        self,
        plan_id: str,
        *,
        candidate_id: str | None = None,
        auth_code: str | None = None,
        key: str | None = None,
        device_id: str | None = None,
    ) -> Session:
        """Web login (candidate id + auth code) or key login from ``device_id`` (which
        becomes the active device); keeps the token for later calls.

        The credentials are kept for renewals and :meth:`take_over`, also when the server
        could not be reached (TransportError): an offline start signs in later with them.
        """
        if key is not None:
            body: dict[str, Any] = {"planId": plan_id, "key": key}
        elif candidate_id is not None and auth_code is not None:
            body = {"planId": plan_id, "candidateId": candidate_id, "authCode": auth_code}
        else:
            raise ValueError("pass key=, or candidate_id= and auth_code=")
        if device_id is not None:
            body["deviceId"] = device_id
        try:
            session = await self._sign_in(body)
        except TransportError:
            self._credentials = body
            raise
        self._credentials = body
        return session

    async def save(self, body: bytes) -> tuple[int, bytes]:
        """POST a save; the status and raw body go to the engine, which judges them."""
        response = await self._request("POST", "/api/v1/answers", body=body)
        return response.status, response.content

    async def upload(self, upload: Upload) -> Response:
        """POST a capture or a log batch with its SHA-256; the queue judges the answer."""
        digest = {"X-Content-SHA256": hashlib.sha256(upload.body).hexdigest()}
        if upload.kind == "capture":
            query = urlencode({**upload.params, "captureId": upload.upload_id})
            headers = {**digest, "Content-Type": upload.content_type}
            return await self._request(
                "POST", f"/api/v1/captures?{query}", body=upload.body, headers=headers
            )
        return await self._request("POST", "/api/v1/logs", body=upload.body, headers=digest)

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
            raise error_for(response)
        return response.content

    async def restore(self, exam_code: str) -> bytes:
        """The raw restore body (the engine validates it); non-2xx raises ServerError."""
        response = await self._request("GET", f"/api/v1/answers/{quote(exam_code, safe='')}")
        if not response.is_success:
            raise error_for(response)
        return response.content

    async def keys(self) -> Mapping[str, bytes]:
        """The server's receipt-signing public keys by key id (``GET /api/v1/keys``)."""
        return parse_public_keys(await self._json("GET", "/api/v1/keys"))

    async def fetch_package(self, plan_id: str, cache: PackageCache) -> CachedPackage:
        """The exam package, downloaded and verified, or the cached copy.

        The content must hash to the ``ETag`` (and ``X-Content-SHA256`` when sent), else
        :class:`ChecksumMismatch` and the cache is left as it was. A cached copy is sent as
        ``If-None-Match`` and used on 304, or when the server cannot be reached or answers 5xx:
        the exam can start offline.
        """
        cached = await cache.load()
        if cached is not None:
            cached = replace(cached, from_cache=True)
        headers = {"If-None-Match": f'"{cached.sha256}"'} if cached else {}
        try:
            response = await self._request(
                "GET", f"/api/v1/plans/{quote(plan_id, safe='')}/package", headers=headers
            )
            if response.status == 304 and cached:
                return cached
            if not response.is_success:
                raise error_for(response)
        except (TransportError, ServerError) as exc:
            retryable = isinstance(exc, TransportError) or (
                isinstance(exc, ServerError) and exc.status >= 500
            )
            if cached and retryable:
                return cached
            raise
        data = response.content
        digest = hashlib.sha256(data).hexdigest()
        etag = response.headers.get("etag", "").removeprefix("W/").strip('"')
        for claimed in (etag, response.headers.get("x-content-sha256", "")):
            if claimed and claimed.lower() != digest:
                raise ChecksumMismatch(expected=digest, actual=claimed)
        if not etag:
            raise RemoteProtocolError("package without an ETag", path="ETag")
        package = CachedPackage(data, digest, from_cache=False)
        await cache.save(package)
        return package
