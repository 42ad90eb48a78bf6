"""uvicorn's httptools protocol with the limits uvicorn lacks: a header timeout, a body idle
timeout, and a cap on open connections answered in our JSON error shape.

uvicorn only times out an idle keep-alive connection (`timeout_keep_alive`): a client that
sends half its headers, or trickles its body, holds a connection (and a file descriptor) for
ever. Here each connection has one timer, armed lazily: every phase sets a deadline, the timer
re-arms itself for the rest when it fires early, so a request costs no timer churn.

    connected / response sent --(headers complete)--> body --(body complete)--> app running
       deadline: header timeout      deadline: body idle timeout     no deadline (a save may
                                     (moved on by every chunk)       wait for its commit)

The body idle timeout is at this level, not in the app, so the raw save route pays nothing
for it and a cut connection is closed rather than left to the app.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..api.http_guard import RAW_SECURITY_HEADERS
from ..config import HttpPort
from ..errors import ApiError


def _raw_response(error: ApiError, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, in the API's shape."""
    body = json.dumps(error.to_body(), separators=(",", ":")).encode()
    reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[error.status]
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (error.status, reason),
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            *(b"%s: %s\r\n" % header for header in RAW_SECURITY_HEADERS),
            extra,
            b"connection: close\r\n\r\n",
            body,
        )
    )


BODY_TIMEOUT_RESPONSE = _raw_response(
    ApiError(408, "body_timeout", "the request body stopped arriving")
)
TOO_MANY_CONNECTIONS_RESPONSE = _raw_response(
    ApiError(503, "too_many_connections", "this server process is at its connection limit"),
    b"retry-after: 1\r\n",
)


def guarded_protocol(limits: HttpPort) -> type[HttpToolsProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`, holding `limits`."""

    class GuardedProtocol(HttpToolsProtocol):
        _deadline: float | None = None  # None: nothing is awaited from the client
        _in_body = False
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            # Counted before this one is added: `connections` holds the open ones.
            if len(self.connections) >= limits.max_connections:
                transport.write(TOO_MANY_CONNECTIONS_RESPONSE)
                transport.close()
                return
            super().connection_made(transport)
            self._expect(limits.header_timeout_seconds, in_body=False)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:  # refused in connection_made: nothing was set up
                return
            self._expect(None, in_body=False)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            # A request without a body completes its message at once (on_message_complete).
            self._expect(limits.body_idle_timeout_seconds, in_body=True)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            if self._in_body:
                self._deadline = self.loop.time() + limits.body_idle_timeout_seconds

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._expect(None, in_body=False)

        def on_response_complete(self) -> None:
            # A pipelined request already read whole starts now: nothing is awaited for it.
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                self._expect(limits.header_timeout_seconds, in_body=False)

        def _expect(self, within: float | None, *, in_body: bool) -> None:
            self._in_body = in_body
            if within is None:
                self._deadline = None
                return
            self._deadline = self.loop.time() + within
            if self._timer is None:
                self._timer = self.loop.call_at(self._deadline, self._check)

        def _check(self) -> None:
            self._timer = None
            if self._deadline is None or self.transport.is_closing():
                return
            if self.loop.time() < self._deadline:  # moved on since the timer was set
                self._timer = self.loop.call_at(self._deadline, self._check)
                return
            if self._in_body and self.cycle is not None and not self.cycle.response_started:
                # The app still waits for the body: it is told the client went away.
                self.transport.write(BODY_TIMEOUT_RESPONSE)
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

    return GuardedProtocol


__all__ = ["BODY_TIMEOUT_RESPONSE", "TOO_MANY_CONNECTIONS_RESPONSE", "guarded_protocol"]
