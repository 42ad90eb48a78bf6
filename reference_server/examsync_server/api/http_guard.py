"""What every HTTP response and request body goes through, before Quart or the raw save route.

- **Security headers** on every response (pages, assets, API): built once here, so the save
  route adds a precomputed list and does no per-request work (docs/server.md, "Secrets").
- **Body limits by route**: each route takes the body it needs (a login a few KiB, a plan import
  its megabytes, admin only). A declared `Content-Length` over the route's limit is answered 413
  before a byte of the body is read, with `Connection: close` so the server does not read the
  rest either; a chunked body is counted by Quart's `Body` against the same limit
  (`BoundedRequest`) and cut when it passes (docs/server.md, "The HTTP port's limits").
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from quart import Quart, Request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

from ..config import Limits
from ..errors import ApiError, error_headers
from ..media.candidate_logs import MAX_LOG_BATCH_BYTES
from ..media.captures import MAX_CAPTURE_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# The pages run the SDK in Pyodide: compiling its WebAssembly needs 'wasm-unsafe-eval' (not
# 'unsafe-eval'); the socket server is on its own port, so `connect-src` names the ws schemes.
def _policy(script_src: str) -> str:
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {script_src}",
            "connect-src 'self' ws: wss:",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CONTENT_SECURITY_POLICY = _policy("'self' 'wasm-unsafe-eval'")
# The candidate page alone: the SDK's Pyodide adapter evaluates its two JavaScript helpers
# (IndexedDB, Web Locks) with `pyodide.code.run_js`, which is eval (docs/server.md, "Secrets").
CANDIDATE_PAGE_POLICY = _policy("'self' 'wasm-unsafe-eval' 'unsafe-eval'")
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
RAW_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS
)

BODY_LIMIT = "examsync.body_limit"  # the scope key BoundedRequest reads

# The routes with a limit of their own (endpoint names); every other route takes
# `max_small_body_bytes`. The save route (api/save_route.py) holds `max_save_bytes` itself.
# Bodies bigger than a login's are taken only from who may send them: the token is checked
# before Quart starts reading (SENDERS).
_ROUTE_LIMITS: dict[str, Callable[[Limits], int]] = {
    "candidate.login": lambda limits: limits.max_login_body_bytes,
    "admin.put_plan": lambda limits: limits.max_json_body_bytes,
    "admin.put_package": lambda limits: limits.max_package_bytes,
    "media.capture": lambda limits: MAX_CAPTURE_BYTES,
    "media.logs": lambda limits: MAX_LOG_BATCH_BYTES,
}


# Who may send a route's body: the admin's plans and packages, a session's captures and logs.
Sender = Literal["admin", "session"]
SENDERS: dict[str, Sender] = {
    "admin.put_plan": "admin",
    "admin.put_package": "admin",
    "media.capture": "session",
    "media.logs": "session",
}


class BodyLimits:
    """The body limit of each route of `app`, looked up by the request's method and path."""

    def __init__(self, app: Quart, limits: Limits) -> None:
        self._app = app
        self.by_endpoint = {name: limit(limits) for name, limit in _ROUTE_LIMITS.items()}
        self.default = limits.max_small_body_bytes
        self.largest = max(self.default, *self.by_endpoint.values())
        self._adapter: MapAdapter | None = None

    def of(self, scope: Scope) -> tuple[int, Sender | None]:
        """The route's body limit, and who alone may send it (None: anyone)."""
        if self._adapter is None:  # bound on first use: every blueprint is registered by then
            self._adapter = self._app.url_map.bind("examsync")
        try:
            rule, _ = self._adapter.match(scope["path"], scope["method"], return_rule=True)
        except HTTPException:  # 404, 405, a redirect: Quart answers those; no body is needed
            return self.default, None
        endpoint = str(rule.endpoint)
        return self.by_endpoint.get(endpoint, self.default), SENDERS.get(endpoint)


class BoundedRequest(Request):
    """A Quart request whose body is limited to its route's limit (set in the scope by the app),
    not the app-wide MAX_CONTENT_LENGTH: Quart reads the body beside the handler, so the limit
    must be in place before the handler runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        scope = kwargs.get("scope", args[7] if len(args) > 7 else {})
        limit = scope.get(BODY_LIMIT)
        if limit is not None:
            kwargs["max_content_length"] = limit
        super().__init__(*args, **kwargs)
        if limit is not None:
            self.max_content_length = limit


def header(scope: Scope, wanted: bytes) -> bytes | None:
    """A request header's value (`wanted` in lower case), straight off the scope."""
    for name, value in scope["headers"]:
        if name.lower() == wanted:
            return bytes(value)
    return None


def declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length`, if it declares a valid one."""
    value = header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the body is larger than {limit} bytes", {"limit": limit}
    )


CLOSE = (("Connection", "close"),)


def response_headers(error: ApiError, close: bool = False) -> list[tuple[str, str]]:
    """An error's extra headers; a 413 (or `close`) also closes the connection, so the server
    does not go on reading a body it refused."""
    extra = error_headers(error)
    return [*extra, *CLOSE] if close or error.status == 413 else extra


async def send_json(send: Send, status: int, data: bytes, extra: list[tuple[str, str]]) -> None:
    """A complete JSON response straight through ASGI (the save route, a refused body)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *RAW_SECURITY_HEADERS,
                *((name.encode(), value.encode()) for name, value in extra),
            ],
        }
    )
    # `more_body` may be left out by the ASGI spec, but Quart 0.23's test client reads it.
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def send_error(send: Send, error: ApiError, close: bool = False) -> None:
    data = json.dumps(error.to_body(), ensure_ascii=False, separators=(",", ":")).encode()
    await send_json(send, error.status, data, response_headers(error, close))


__all__ = [
    "BODY_LIMIT",
    "CANDIDATE_PAGE_POLICY",
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "BodyLimits",
    "BoundedRequest",
    "Sender",
    "declared_length",
    "header",
    "response_headers",
    "send_error",
    "send_json",
    "too_large",
]
